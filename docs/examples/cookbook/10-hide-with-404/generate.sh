#!/bin/sh
# Recipe 10: imageguard's block with deny_status 404, and recipe 7's login page (a
# browser that is not logged in is still sent there). Logins: recipes 3 and 7.
# DATA: the folder serve_cookbook.py keeps its files in; OUT: where to write.
imageguard --db "$DATA/state/10-hide-with-404.db" apache-conf \
    --root "$DATA/10-hide-with-404/images" --url-path /hidden \
    --session-type FileSession --session-dir "$DATA/state/sessions" \
    --deny-status 404 --login-url /account/login \
    > "$OUT/imageguard.conf"
