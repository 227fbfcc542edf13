#!/bin/sh
# Recipe 8 by hand: log in to the Pyramid application, then ask Apache for images.
BASE=${BASE:-http://127.0.0.1:8080}
jar=$(mktemp)
show() { curl -s -o /dev/null -b "$jar" -w "%{http_code} $1\n" "$BASE$1"; }
show /tickets/lobby.jpg
curl -s -o /dev/null -c "$jar" -d user=bob -d password=bob-secret \
    -w "%{http_code} bob logs in\n" "$BASE/pyramid/login"
show /tickets/lobby.jpg
show /tickets/team/roadmap.jpg
curl -s -o /dev/null -c "$jar" -d user=alice -d password=alice-secret \
    -w "%{http_code} alice logs in\n" "$BASE/pyramid/login"
show /tickets/team/roadmap.jpg
# A ticket signed with another secret (as a forger would have to) is refused.
umask 077  # a secret file must not be readable by others
printf 'a-secret-that-is-not-the-sites-0123\n' > "$jar.secret"
forged=$(imageguard ticket alice --group staff --secret-file "$jar.secret")
curl -s -o /dev/null -b "auth_tkt=$forged" -w "%{http_code} forged ticket\n" \
    "$BASE/tickets/team/roadmap.jpg"
rm -f "$jar" "$jar.secret"
