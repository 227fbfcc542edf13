#!/bin/sh
# Recipe 5: imageguard's block; logins come from recipe 3's application.
# DATA: the folder serve_cookbook.py keeps its files in; OUT: where to write.
imageguard --db "$DATA/state/05-owner-folders.db" apache-conf \
    --root "$DATA/05-owner-folders/images" --url-path /owners \
    --session-type FileSession --session-dir "$DATA/state/sessions" \
    > "$OUT/imageguard.conf"
