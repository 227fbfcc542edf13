#!/bin/sh
# Recipe 3 by hand: log in with the application, then ask for an image.
BASE=${BASE:-http://127.0.0.1:8080}
jar=$(mktemp)
show() { curl -s -o /dev/null -b "$jar" -w "%{http_code} $1\n" "$BASE$1"; }
show /members/harbour.jpg
curl -s -o /dev/null -c "$jar" -d user=bob -d password=bob-secret \
    -w "%{http_code} login\n" "$BASE/myapp/login"
show /members/harbour.jpg
curl -s -o /dev/null -b "$jar" -c "$jar" -X POST -w "%{http_code} logout\n" "$BASE/myapp/logout"
show /members/harbour.jpg
rm -f "$jar"
