#!/bin/sh
# Recipe 9 by hand: a link anyone may use for ten minutes, then the same link altered.
BASE=${BASE:-http://127.0.0.1:8080}
export IMAGEGUARD_DB="$DATA/state/09-share-link.db"
show() { curl -s -o /dev/null -w "%{http_code} $2\n" "$BASE$1"; }
link=$(imageguard share press/launch.jpg --level preview --expires 10m --url-path /shared \
    --root "$DATA/09-share-link/images" --secret-file "$DATA/state/secrets")
show /shared/press/launch.jpg "no link"
show "$link" "the link"
show "$(echo "$link" | sed 's/ig_lvl=preview/ig_lvl=full/; s/v=preview/v=full/')" "level raised"
show "$(echo "$link" | sed 's|press/launch.jpg|press/draft.jpg|')" "another image"
imageguard share-revoke "$link" >/dev/null
show "$link" "revoked"
