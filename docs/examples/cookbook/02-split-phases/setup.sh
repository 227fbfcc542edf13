#!/bin/sh
# Recipe 2: the ACL store. Every logged-in user may see every image.
set -e
export IMAGEGUARD_DB="$DATA/state/02-split-phases.db"
imageguard init
imageguard grant '**' authenticated full
