"""Concurrency against a real Apache: the first requests of a fresh server, and load.

mod_python's importer hands out a module from ``sys.modules`` without waiting for its
import to finish; many simultaneous first requests used to meet a half-imported
``imageguard.handlers`` and got 500s. These tests start a fresh server per MPM and fire
the first image requests all at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import SITE_IDS, SITE_PARAMS, Site, build_site

pytestmark = pytest.mark.apache


@pytest.fixture(scope="module", params=SITE_PARAMS, ids=SITE_IDS)
def fresh_site(request: pytest.FixtureRequest) -> Iterator[Site]:
    yield from build_site(*request.param)


def test_simultaneous_first_requests_all_succeed(fresh_site: Site) -> None:
    cookie = fresh_site.login("alice")  # through the application's interpreter only
    paths = ["/images/gallery/cat.jpg", "/images/private/secret.jpg", "/images/gallery/dog.png"]

    def fetch(index: int) -> int:
        return fresh_site.request(paths[index % len(paths)], cookie=cookie)[0]

    with ThreadPoolExecutor(max_workers=48) as pool:
        statuses = Counter(pool.map(fetch, range(144)))
    assert statuses == Counter({200: 144}), fresh_site.error_log()[-3000:]
    assert "contains no" not in fresh_site.error_log()


def test_mixed_load_gives_only_expected_answers(fresh_site: Site) -> None:
    alice = fresh_site.login("alice")
    bob = fresh_site.login("bob")
    cases = [
        ("/images/private/secret.jpg", alice, 200),
        ("/images/private/secret.jpg", bob, 403),
        ("/images/gallery/cat.jpg", None, 401),
        ("/images/gallery/public.jpg", None, 200),
        ("/images/gate/notes.txt", alice, 403),
    ]

    def fetch(index: int) -> tuple[int, int]:
        path, cookie, expected = cases[index % len(cases)]
        return fresh_site.request(path, cookie=cookie)[0], expected

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(fetch, range(500)))
    wrong = [(got, expected) for got, expected in results if got != expected]
    assert wrong == []


def test_simultaneous_first_renditions_all_succeed(fresh_site: Site) -> None:
    # Different renditions made at once by the first requests of fresh children: each
    # thread meets the same interpreter (see apacheconf: PythonImport), so a refusal
    # or a rendition never meets classes of another one (which made 500s).
    cookie = fresh_site.login("alice")
    paths = [
        f"/images/{rel}?v={variant}"
        for rel in ("gallery/cat.jpg", "gallery/dog.png", "private/secret.jpg", "NOTES.JPG")
        for variant in ("thumb", "preview")
    ]

    def fetch(index: int) -> int:
        return fresh_site.request(paths[index % len(paths)], cookie=cookie)[0]

    with ThreadPoolExecutor(max_workers=32) as pool:
        statuses = Counter(pool.map(fetch, range(96)))
    assert statuses == Counter({200: 96}), fresh_site.error_log()[-3000:]
    assert "internal error" not in fresh_site.error_log()
