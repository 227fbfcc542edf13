#!/bin/sh
# Recipe 7: every logged-in user may see every image.
set -e
export IMAGEGUARD_DB="$DATA/state/07-login-redirect.db"
imageguard init
imageguard grant '**' authenticated full
