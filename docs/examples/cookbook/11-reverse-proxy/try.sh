#!/bin/sh
# Recipe 11 by hand: clients on 127.0.0.2 and 127.0.0.3 (loopback addresses that are
# not the proxy's), tickets bound to an address, and a forged X-Forwarded-For.
FRONT=${FRONT:-http://127.0.0.1:8081}
secrets="$DATA/state/secrets"
for_ip() { imageguard ticket alice --ip "$1" --secret-file "$secrets"; }
show() {
    curl -s -o /dev/null --interface "$1" -b "auth_tkt=$2" -H "X-Forwarded-For: $3" \
        -w "%{http_code} from $1, ticket for $4, X-Forwarded-For: $3\n" "$FRONT/photos/night.jpg"
}
show 127.0.0.2 "$(for_ip 127.0.0.2)" 198.51.100.1 127.0.0.2
show 127.0.0.3 "$(for_ip 127.0.0.2)" 127.0.0.2 127.0.0.2
show 127.0.0.2 "$(for_ip 203.0.113.9)" 203.0.113.9 203.0.113.9
show 127.0.0.2 "$(for_ip 127.0.0.1)" 127.0.0.1 127.0.0.1
curl -s -o /dev/null --interface 127.0.0.2 -b "auth_tkt=$(for_ip 127.0.0.2)" \
    -w "%{http_code} %header{cache-control} | %header{vary}\n" "$FRONT/photos/night.jpg"
