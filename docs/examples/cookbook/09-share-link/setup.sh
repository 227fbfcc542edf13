#!/bin/sh
# Recipe 9: only alice may see the press folder; others need a share link.
set -e
export IMAGEGUARD_DB="$DATA/state/09-share-link.db"
imageguard init
imageguard grant 'press/' user:alice full
