#!/bin/sh
# Recipe 8: imageguard's block for auth_tkt tickets, signed with the secret file's first
# line; their lifetime and the login page are the application's.
# DATA: the folder serve_cookbook.py keeps its files in; OUT: where to write.
imageguard --db "$DATA/state/08-tickets-pyramid.db" apache-conf \
    --root "$DATA/08-tickets-pyramid/images" --url-path /tickets \
    --session auth_tkt --secret-file "$DATA/state/secrets" --tkt-timeout 30m \
    --login-url /pyramid/login \
    > "$OUT/imageguard.conf"
