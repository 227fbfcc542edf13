#!/bin/sh
# Recipe 2: what the split starts from, both printed by the generator.
# DATA: the folder serve_cookbook.py keeps its files in; OUT: where to write.
imageguard --db "$DATA/state/02-split-phases.db" apache-conf --three-phases \
    --root "$DATA/02-split-phases/images" --url-path /split \
    --session-type FileSession --session-dir "$DATA/state/sessions" \
    > "$OUT/imageguard.conf"
imageguard apache-conf --htaccess --root "$DATA/02-split-phases/images" \
    > "$OUT/imageguard.htaccess"
