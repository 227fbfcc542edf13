#!/bin/sh
# Recipe 11: every logged-in user may see every image.
set -e
export IMAGEGUARD_DB="$DATA/state/11-reverse-proxy.db"
imageguard init
imageguard grant '**' authenticated full
