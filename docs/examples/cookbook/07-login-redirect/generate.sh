#!/bin/sh
# Recipe 7: imageguard's block, naming the login page.
# DATA: the folder serve_cookbook.py keeps its files in; OUT: where to write.
imageguard --db "$DATA/state/07-login-redirect.db" apache-conf \
    --root "$DATA/07-login-redirect/images" --url-path /private \
    --session-type FileSession --session-dir "$DATA/state/sessions" \
    --login-url /account/login \
    > "$OUT/imageguard.conf"
