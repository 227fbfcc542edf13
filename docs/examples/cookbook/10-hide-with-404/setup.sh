#!/bin/sh
# Recipe 10: only alice may see the case files.
set -e
export IMAGEGUARD_DB="$DATA/state/10-hide-with-404.db"
imageguard init
imageguard grant 'cases/' user:alice full
