#!/bin/sh
# Recipe 3: every logged-in user may see every image.
set -e
export IMAGEGUARD_DB="$DATA/state/03-app-session.db"
imageguard init
imageguard grant '**' authenticated full
