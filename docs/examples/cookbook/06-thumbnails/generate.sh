#!/bin/sh
# Recipe 6: imageguard's block with a rendition cache (thumbnails are made there once,
# then sent by Apache like any file); logins come from recipe 3's application.
# DATA: the folder serve_cookbook.py keeps its files in; OUT: where to write.
imageguard --db "$DATA/state/06-thumbnails.db" apache-conf \
    --root "$DATA/06-thumbnails/images" --url-path /photos \
    --session-type FileSession --session-dir "$DATA/state/sessions" \
    --cache-dir "$DATA/state/cache" --max-age 600 \
    > "$OUT/imageguard.conf"
