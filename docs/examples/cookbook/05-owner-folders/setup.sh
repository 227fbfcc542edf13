#!/bin/sh
# Recipe 5: everyone sees their own folder users/NAME/; moderators see them all.
set -e
export IMAGEGUARD_DB="$DATA/state/05-owner-folders.db"
imageguard init
imageguard grant 'users/{user}/**' authenticated full
imageguard grant 'users/' group:moderators full
imageguard group add moderators carol
