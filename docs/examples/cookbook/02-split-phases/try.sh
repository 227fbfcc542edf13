#!/bin/sh
# Recipe 2 by hand: the .htaccess gate answers before any login is looked at; the
# server's authorization handler decides the rest.
BASE=${BASE:-http://127.0.0.1:8080}
jar=$(mktemp)
show() { curl -s -o /dev/null -b "$jar" -X "$1" -w "%{http_code} $1 $2\n" "$BASE$2"; }
show GET /split/notes.txt
show GET /split/harbour.jpg
curl -s -o /dev/null -c "$jar" -d user=bob -d password=bob-secret "$BASE/myapp/login"
show GET /split/harbour.jpg
show DELETE /split/harbour.jpg
rm -f "$jar"
