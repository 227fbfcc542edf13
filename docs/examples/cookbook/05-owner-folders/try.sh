#!/bin/sh
# Recipe 5 by hand: alice, bob and carol (a moderator) ask for each folder's files.
BASE=${BASE:-http://127.0.0.1:8080}
for user in alice bob carol; do
    jar=$(mktemp)
    curl -s -o /dev/null -c "$jar" -d user=$user -d password=$user-secret "$BASE/myapp/login"
    for path in users/alice/cat.jpg users/bob/boat.jpg users/alice/boat.jpg; do
        curl -s -o /dev/null -b "$jar" -w "%{http_code} $user $path\n" "$BASE/owners/$path"
    done
    rm -f "$jar"
done
