#!/bin/sh
# Recipe 3: imageguard's block, with the application's session options.
# DATA: the folder serve_cookbook.py keeps its files in; OUT: where to write.
imageguard --db "$DATA/state/03-app-session.db" apache-conf \
    --root "$DATA/03-app-session/images" --url-path /members \
    --session-type FileSession --session-dir "$DATA/state/sessions" \
    > "$OUT/imageguard.conf"
