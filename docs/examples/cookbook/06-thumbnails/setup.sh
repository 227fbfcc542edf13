#!/bin/sh
# Recipe 6: a 256-px thumbnail of every picture for anyone, logged in or not; the
# original for its owner (the pictures of user NAME are in the folder NAME/).
set -e
export IMAGEGUARD_DB="$DATA/state/06-thumbnails.db"
imageguard init
imageguard grant '**' anyone thumb
imageguard grant '{user}/**' authenticated full
