#!/bin/sh
# Recipe 4: imageguard's block; logins come from recipe 3's application.
# DATA: the folder serve_cookbook.py keeps its files in; OUT: where to write.
imageguard --db "$DATA/state/04-per-user.db" apache-conf \
    --root "$DATA/04-per-user/images" --url-path /albums \
    --session-type FileSession --session-dir "$DATA/state/sessions" \
    > "$OUT/imageguard.conf"
