#!/bin/sh
# Recipe 7 by hand: a browser's round trip, one step at a time.
BASE=${BASE:-http://127.0.0.1:8080}
jar=$(mktemp)
step() { curl -s -o /dev/null -b "$jar" -c "$jar" -w "%{http_code} [%header{location}]\n" "$@"; }
# 1. A page navigation (Accept: text/html) is sent to the login page, with back=.
step -H 'Accept: text/html' "$BASE/private/sea.jpg"
# 2. An <img> (Accept: image/*) is not redirected: 401.
step -H 'Accept: image/*' "$BASE/private/sea.jpg"
# 3. The form posts back= with the password, and is sent back to the image...
step -d user=carol -d password=carol-secret -d back=/private/sea.jpg "$BASE/account/login"
# 4. ...which now opens.
step -H 'Accept: text/html' "$BASE/private/sea.jpg"
# A back= leading to another site is not followed.
step -d user=carol -d password=carol-secret -d back=//evil.example/ "$BASE/account/login"
rm -f "$jar"
