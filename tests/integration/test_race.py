"""The bytes sent are the bytes of the file that was checked, while someone who can write
in one folder of the tree swaps names between the check and the send.

A swapper thread exchanges, as fast as it can:

* ``race/race.jpg`` between a JPEG that bob may see and a symbolic link to a file he
  may not: another user's image (``private/secret.jpg``) or the ticket secret file,
  which Apache's user can read;
* the folder ``race/dir`` between a real folder holding an image bob may see and a
  link to ``private/`` (the file asked for then is ``private/secret.jpg``).

Eight clients ask for both names as bob the whole time. Every 200 must carry exactly
the bytes of the image bob may see; anything else must be a refusal that carries none
of the other files' bytes. The run lasts ``IMAGEGUARD_RACE_SECONDS`` (30 by default)
for each MPM and configuration.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

from .conftest import Site
from .httpfetch import fetch

pytestmark = pytest.mark.apache

SECONDS = float(os.environ.get("IMAGEGUARD_RACE_SECONDS", "30"))
CLIENTS = 8
RENAME_EXCHANGE = 2  # renameat2() flag: swap two names atomically
AT_FDCWD = -100
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def exchange(first: Path, second: Path) -> None:
    """Swap two names in one step (renameat2 with RENAME_EXCHANGE)."""
    done = _libc.renameat2(
        AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE
    )
    if done != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno), str(first))


@dataclass
class Tally:
    """What the clients saw."""

    statuses: Counter[int] = field(default_factory=Counter)
    leaks: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, status: int, leak: str = "") -> None:
        with self.lock:
            self.statuses[status] += 1
            if leak:
                self.leaks.append(leak)


def race_tree(site: Site) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Lay out the race folder; returns the allowed bytes and the (name, bytes) of
    every file a swap can point at that must never be sent."""
    race = site.root / "race"
    race.mkdir()
    allowed_path = race / ".allowed.jpg"  # hidden: never served under this name
    Image.new("RGB", (40, 30), (12, 200, 99)).save(allowed_path, "JPEG", quality=95)
    allowed = allowed_path.read_bytes()
    os.link(allowed_path, race / "race.jpg")
    (race / "dir").mkdir()
    os.link(allowed_path, race / "dir" / "secret.jpg")
    (race / "race.jpg.link").symlink_to(site.root / "private" / "secret.jpg")
    (race / "dir.link").symlink_to(site.root / "private")
    for path in (race, race / "dir"):
        path.chmod(0o755)
    forbidden = [
        ("private/secret.jpg", (site.root / "private" / "secret.jpg").read_bytes()),
        ("the secret file", site.secrets.read_bytes()),
    ]
    return allowed, forbidden


def swap(site: Site, stop: threading.Event, counts: Counter[str]) -> None:
    race = site.root / "race"
    secret_link = race / "secrets.link"
    secret_link.symlink_to(site.secrets)
    targets = [race / "race.jpg.link", secret_link]
    turn = 0
    while not stop.is_set():
        link = targets[turn % 2]
        exchange(race / "race.jpg", link)  # race.jpg is now a link...
        exchange(race / "dir", race / "dir.link")  # ...and dir leads to private/
        exchange(race / "race.jpg", link)  # both back
        exchange(race / "dir", race / "dir.link")
        counts["swaps"] += 2
        turn += 1


def ask(
    site: Site, cookie: str, stop: threading.Event, allowed: bytes, forbidden: list, tally: Tally
) -> None:
    paths = ["/images/race/race.jpg", "/images/race/dir/secret.jpg"]
    turn = 0
    while not stop.is_set():
        path = paths[turn % 2]
        turn += 1
        try:
            status, _, body = fetch(site.server.port, path, headers={"Cookie": cookie})
        except OSError as exc:
            tally.record(-1, f"{path}: connection failed: {exc}")
            continue
        leak = ""
        if status == 200 and body != allowed:
            leak = f"{path}: 200 with {len(body)} bytes that are not the allowed image"
        for name, data in forbidden:
            if data and data[:64] in body:
                leak = f"{path}: {status} carrying {name}"
        if status >= 500:
            leak = leak or f"{path}: {status}"
        tally.record(status, leak)


def test_no_swap_between_check_and_send_leaks_a_byte(site: Site) -> None:
    allowed, forbidden = race_tree(site)
    cookie = site.cookie_for("bob")
    assert (
        fetch(site.server.port, "/images/race/race.jpg", headers={"Cookie": cookie})[2] == allowed
    )
    assert (
        fetch(site.server.port, "/images/private/secret.jpg", headers={"Cookie": cookie})[0] == 403
    )
    stop = threading.Event()
    tally = Tally()
    counts: Counter[str] = Counter()
    swapper = threading.Thread(target=swap, args=(site, stop, counts))
    clients = [
        threading.Thread(target=ask, args=(site, cookie, stop, allowed, forbidden, tally))
        for _ in range(CLIENTS)
    ]
    for thread in [swapper, *clients]:
        thread.start()
    time.sleep(SECONDS)
    stop.set()
    for thread in [swapper, *clients]:
        thread.join()
    total = sum(tally.statuses.values())
    print(  # the figures of the closing note: pytest -s shows them
        f"\nrace {site.mpm}/{site.mode}: {total} responses in {SECONDS:.0f} s, "
        f"{counts['swaps']} swaps, statuses {dict(sorted(tally.statuses.items()))}, "
        f"leaks {len(tally.leaks)}"
    )
    assert tally.leaks == [], tally.leaks[:10]
    # The race was run both ways: files were sent, and swaps were caught.
    assert tally.statuses[200] > 100 and counts["swaps"] > 1000
    assert sum(n for status, n in tally.statuses.items() if status != 200) > 0
