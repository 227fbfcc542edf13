#!/bin/sh
# Recipe 8: staff (a token in the ticket) see team/, any logged-in user the lobby.
set -e
export IMAGEGUARD_DB="$DATA/state/08-tickets-pyramid.db"
imageguard init
imageguard grant 'team/' group:staff full
imageguard grant lobby.jpg authenticated full
