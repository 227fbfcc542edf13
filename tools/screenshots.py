"""Take the docs' screenshots of the demo in Debian's chromium, headless.

    .venv/bin/python tools/screenshots.py              # write them into docs/images/
    .venv/bin/python tools/screenshots.py --out DIR    # somewhere else

It builds the demo (:func:`imageguard_devtools.demo.site.build_demo`) in a fresh directory
under /tmp, starts its Apache on a free port of 127.0.0.1, and drives chromium through
:mod:`imageguard_devtools.browser` (the same driver as tests/integration/test_browser.py):

* ``demo-login.png``: the login page, a demo user's name and password typed in;
* ``demo-alice.png``, ``demo-bob.png``, ``demo-carol.png``: the gallery of each demo user,
  logged in through the form, once every picture has loaded or been refused;
* ``demo-logged-out.png``: the gallery after carol pressed "Log out".

Each is a PNG 1280 pixels wide, as tall as needed to show the whole gallery grid. The
script stops the browser and Apache and removes the demo's directory when it is done, or
when it fails or is interrupted.
"""

from __future__ import annotations

import argparse
import io
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from imageguard_devtools.browser import Browser, BrowserError
from imageguard_devtools.demo.site import USERS, DemoError, DemoSite, build_demo
from imageguard_devtools.localserver import ApacheError, make_workdir

PROJECT = Path(__file__).resolve().parents[1]
OUTPUT = PROJECT / "docs" / "images"
SIZE = (1280, 900)
#: The elements each gallery shot must show in full (the grid of pictures).
GALLERY_PARTS = (".grid",)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def save_png(browser: Browser, path: Path, below: Sequence[str] = ()) -> Path:
    """A screenshot, written again by Pillow with ``optimize`` (smaller, same pixels)."""
    browser.screenshot(path, below=below)
    with Image.open(path) as shot:
        shot.load()
        width, height = shot.size
        out = io.BytesIO()
        shot.save(out, "PNG", optimize=True)
    path.write_bytes(out.getvalue())
    print(f"wrote {path} ({width}x{height}, {path.stat().st_size // 1024} KiB)", flush=True)
    return path


def take(site: DemoSite, browser: Browser, out: Path) -> list[Path]:
    written = []
    shown = USERS[0]
    browser.get(site.server.url("/login"))
    browser.driver.find_element("name", "user").send_keys(shown.name)
    browser.driver.find_element("name", "password").send_keys(shown.password)
    written.append(save_png(browser, out / "demo-login.png"))

    for user in USERS:
        browser.login(site.url, user.name, user.password)
        browser.wait_for_gallery()
        written.append(save_png(browser, out / f"demo-{user.name}.png", GALLERY_PARTS))
        browser.logout()

    browser.get(site.server.url("/gallery"))
    browser.wait_for_gallery()
    if "pysid" in browser.cookies():
        raise BrowserError("still logged in after pressing Log out")
    written.append(save_png(browser, out / "demo-logged-out.png", GALLERY_PARTS))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=OUTPUT, help=f"where to write the PNGs (default: {OUTPUT})"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    workdir = make_workdir("imageguard-screenshots-")
    try:
        site = build_demo(workdir, 0, "event")
        with site.server, Browser(size=SIZE) as browser:
            take(site, browser, args.out)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (BrowserError, DemoError, ApacheError, OSError) as exc:
        print(f"screenshots: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
