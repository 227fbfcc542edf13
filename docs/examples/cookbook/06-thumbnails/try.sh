#!/bin/sh
# Recipe 6 by hand: what arrives, and its size, for a visitor and for alice.
BASE=${BASE:-http://127.0.0.1:8080}
jar=$(mktemp)
show() {
    curl -s -o "$jar.img" -b "$jar" -w "%{http_code} %{content_type} $1 " "$BASE$1"
    python3 -c 'import sys; from PIL import Image; print("%dx%d" % Image.open(sys.argv[1]).size)' "$jar.img"
}
show /photos/alice/sunrise.jpg
show /photos/bob/lake.png
curl -s -o /dev/null -c "$jar" -d user=alice -d password=alice-secret "$BASE/myapp/login"
show /photos/alice/sunrise.jpg
show /photos/alice/sunrise.jpg?v=thumb
show /photos/bob/lake.png
rm -f "$jar" "$jar.img"
