#!/bin/sh
# Recipe 11: imageguard's block for the server behind the proxy, with no Alias (the
# back-end virtual host maps the URL). Tickets are bound to the client's address, which
# mod_remoteip recovers from X-Forwarded-For.
# DATA: the folder serve_cookbook.py keeps its files in; OUT: where to write.
imageguard --db "$DATA/state/11-reverse-proxy.db" apache-conf \
    --root "$DATA/11-reverse-proxy/images" --url-path "" \
    --session auth_tkt --secret-file "$DATA/state/secrets" --tkt-bind-ip \
    --max-age 300 \
    > "$OUT/imageguard.conf"
