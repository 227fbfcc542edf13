#!/bin/sh
# Build the talk's slides: docs/talk/deck.md -> deck.html and deck.pdf, with Marp CLI.
#
#   docs/talk/build.sh          (or: make slides)
#
# Marp CLI comes from npm at the version package-lock.json pins, installed into
# docs/talk/node_modules with `npm ci` when it is missing. The PDF is printed by the
# system's chromium (CHROME_PATH, default /usr/bin/chromium): Marp uses puppeteer-core,
# which never downloads a browser, and PUPPETEER_SKIP_DOWNLOAD makes sure of it.
# As root, chromium only starts without its sandbox: CHROME_NO_SANDBOX=1 tells Marp so.
#
# An image the deck names but that does not exist (yet) is reported; the deck is built
# all the same, with that image missing, and the script exits with status 3 afterwards
# so that a build with holes is never mistaken for a complete one.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

say() { printf 'build.sh: %s\n' "$*" >&2; }

command -v node >/dev/null 2>&1 || { say "node is missing (Debian: apt-get install nodejs npm)"; exit 1; }
command -v npm >/dev/null 2>&1 || { say "npm is missing (Debian: apt-get install npm)"; exit 1; }

CHROME_PATH=${CHROME_PATH:-/usr/bin/chromium}
[ -x "$CHROME_PATH" ] || { say "no browser at $CHROME_PATH (Debian: apt-get install chromium)"; exit 1; }
export CHROME_PATH
export PUPPETEER_SKIP_DOWNLOAD=1
if [ "$(id -u)" = 0 ]; then
    export CHROME_NO_SANDBOX=1
fi

marp=node_modules/.bin/marp
stamp=node_modules/.installed-from-package-lock.json
if [ ! -x "$marp" ] || ! cmp -s package-lock.json "$stamp" 2>/dev/null; then
    # The stamp is the lock file the tree was installed from: a changed lock file (a new
    # Marp version) installs again.
    say "installing Marp CLI from package-lock.json (npm ci)"
    npm ci --no-audit --no-fund --loglevel=error
    cp package-lock.json "$stamp"
fi

# Every local image the deck references, as written in ![...](path).
missing=0
for image in $(sed -n 's/.*!\[[^]]*\](\([^)]*\)).*/\1/p' deck.md | sed 's/ .*//'); do
    case "$image" in
        http:* | https:*) continue ;;
    esac
    if [ ! -f "$image" ]; then
        say "missing image: docs/talk/$image (the deck is built without it)"
        missing=1
    fi
done

start=$(date +%s)
"$marp" --no-config-file --html --allow-local-files deck.md -o deck.html
"$marp" --no-config-file --html --allow-local-files --pdf --pdf-notes --pdf-outlines \
    deck.md -o deck.pdf
end=$(date +%s)

say "built docs/talk/deck.html ($(wc -c < deck.html) bytes) and docs/talk/deck.pdf ($(wc -c < deck.pdf) bytes) in $((end - start)) s"
if [ "$missing" -ne 0 ]; then
    say "some images were missing: build again once they exist"
    exit 3
fi
