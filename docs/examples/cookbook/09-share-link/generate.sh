#!/bin/sh
# Recipe 9: imageguard's block; share links are signed with the secret file's first
# line, and thumb or preview links need the rendition cache. Logins (for links made
# for one user) come from recipe 3's application.
# DATA: the folder serve_cookbook.py keeps its files in; OUT: where to write.
imageguard --db "$DATA/state/09-share-link.db" apache-conf \
    --root "$DATA/09-share-link/images" --url-path /shared \
    --session-type FileSession --session-dir "$DATA/state/sessions" \
    --secret-file "$DATA/state/secrets" --cache-dir "$DATA/state/cache" \
    > "$OUT/imageguard.conf"
