#!/bin/sh
# Recipe 10 by hand: an image that exists and one that does not, for each viewer.
BASE=${BASE:-http://127.0.0.1:8080}
jar=$(mktemp)
show() {
    curl -s -o /dev/null -b "$jar" -H "Accept: $1" \
        -w "%{http_code} $2 $3 [%header{location}]\n" "$BASE/hidden/cases/$3"
}
for name in smith.jpg jones.jpg; do
    show 'image/*' visitor $name
    show 'text/html' visitor $name
done
for user in bob alice; do
    curl -s -o /dev/null -c "$jar" -d user=$user -d password=$user-secret "$BASE/myapp/login"
    for name in smith.jpg jones.jpg readme.txt nothing.txt upload.jpg; do
        show 'image/*' $user $name
    done
done
rm -f "$jar"
