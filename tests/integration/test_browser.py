"""The demo in a real browser: Debian's chromium, headless, driven through Selenium.

Each demo user logs in through the demo's HTML form, and the test reads what chromium
itself made of every ``<img>`` of the gallery: a picture of the expected size (the
original, bob's thumbnail, carol's watermarked preview) or nothing at all (a refused
image: ``naturalWidth`` 0, and the page's padlock card over it). The demo does not turn
on ``imageguard.placeholder``, so a refusal carries no picture. Then the user logs out
with the page's button, and the pictures must be gone: on Back, on a fresh load and on
a reload, each asked of Apache again and refused there (Resource Timing gives the
status chromium got, and whether a cache answered instead of Apache).

What chromium does, seen here: the images' ``Cache-Control: private, max-age=0`` makes
a load or a reload ask Apache again (a 401 once logged out), but Back does not: it
restores the logged-in page from the back/forward cache, or loads the page again and
takes the pictures from memory. The demo page reloads itself after Back for that;
both ways are tested.

One chromium serves the whole module, users one after the other, as on a shared
computer: its caches carry over from one user to the next, and must never hand one
viewer's picture to another. One demo Apache per MPM.
"""

from __future__ import annotations

import os
import shutil
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from imageguard_devtools.browser import Browser, BrowserError, ImageState, unavailable_reason
from imageguard_devtools.demo.site import DemoSite, build_demo
from imageguard_devtools.localserver import make_workdir

from .test_demo import ALL_IMAGES, EXPECTED, GALLERY, PUBLIC

_MISSING = unavailable_reason()
pytestmark = [
    pytest.mark.apache,
    pytest.mark.skipif(_MISSING is not None, reason=_MISSING or ""),
]

# The demo's sample pictures are 1280 x 960; imageguard's renditions keep the aspect ratio
# within 256 px (thumb) and 1024 px (preview).
ORIGINAL = (1280, 960)
THUMB = (256, 192)
PREVIEW = (1024, 768)
#: What each user's gallery/ pictures arrive as: alice is staff (originals), bob has a
#: rule of his own (thumbnails), carol is only logged in (watermarked previews).
GALLERY_SIZE = {"alice": ORIGINAL, "bob": THUMB, "carol": PREVIEW}

_CARDS_JS = """
return Array.from(document.querySelectorAll("figure.card"), function (figure) {
  var img = figure.querySelector("img");
  var lock = figure.querySelector(".lock");
  return {src: img.getAttribute("src"), state: figure.classList.contains("allowed") ?
            "allowed" : figure.classList.contains("denied") ? "denied" : "",
          verdict: figure.querySelector(".verdict").textContent,
          lock: getComputedStyle(lock).display !== "none",
          img: getComputedStyle(img).visibility};
});
"""


@dataclass(frozen=True)
class Card:
    """One picture of the gallery as chromium shows it."""

    image: ImageState
    state: str  # "allowed" or "denied", set by the page from the img's onload/onerror
    verdict: str  # the label under the picture: width x height, or "refused"
    lock_shown: bool
    img_visibility: str
    status: int  # the HTTP status chromium got for it (Resource Timing), 0 if unknown
    delivery: str  # "cache" when one of chromium's caches answered without asking Apache


@pytest.fixture(scope="module", params=["event", "prefork"])
def demo(request: pytest.FixtureRequest) -> Iterator[DemoSite]:
    workdir = make_workdir(f"imageguard-browser-{request.param}-")
    try:
        site = build_demo(workdir, 0, request.param)
        with site.server:
            yield site
    finally:
        if not os.environ.get("IMAGEGUARD_KEEP_WORKDIR"):
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with Browser() as browser:
        yield browser


@pytest.fixture(scope="module")
def chromium_without_bfcache() -> Iterator[Browser]:
    with Browser(extra_flags=["--disable-features=BackForwardCache"]) as browser:
        yield browser


@pytest.fixture
def browser(chromium: Browser, demo: DemoSite) -> Browser:
    """The shared chromium, logged out (its cache is kept on purpose)."""
    chromium.driver.delete_all_cookies()
    return chromium


def url(site: DemoSite, path: str) -> str:
    return site.server.url(path)


def rel_of(src: str) -> str:
    assert src.startswith("/images/"), src
    return urllib.parse.unquote(src.removeprefix("/images/"))


def gallery_cards(browser: Browser) -> dict[str, Card]:
    """Every picture of the gallery page shown, by path below the image root."""
    browser.wait_for_gallery()
    images = {image.src: image for image in browser.images()}
    resources = {
        urllib.parse.urlsplit(entry["name"]).path: entry for entry in browser.resources()
    }
    cards: dict[str, Card] = {}
    for raw in browser.run(_CARDS_JS):
        src = str(raw["src"])
        timing: dict[str, Any] = resources.get(src, {})
        cards[rel_of(src)] = Card(
            image=images[src],
            state=str(raw["state"]),
            verdict=str(raw["verdict"]),
            lock_shown=bool(raw["lock"]),
            img_visibility=str(raw["img"]),
            status=int(timing.get("status", 0)),
            delivery=str(timing.get("delivery", "")),
        )
    assert set(cards) == ALL_IMAGES
    return cards


def assert_shown(card: Card, size: tuple[int, int], rel: str) -> None:
    assert card.image.complete, rel
    assert card.image.size == size, (rel, card)
    assert card.state == "allowed", (rel, card)
    assert card.verdict == f"{size[0]}\u00d7{size[1]}", (rel, card)
    assert not card.lock_shown and card.img_visibility == "visible", (rel, card)


def assert_refused(card: Card, statuses: set[int], rel: str) -> None:
    """Refused: chromium finished with it, decoded nothing, and the page shows the lock."""
    assert card.image.complete, rel
    assert card.image.size == (0, 0), (rel, card)
    assert card.state == "denied", (rel, card)
    assert card.verdict == "refused", (rel, card)
    assert card.lock_shown and card.img_visibility == "hidden", (rel, card)
    # The refusal came from Apache just now, not from a cache.
    assert card.status in statuses, (rel, card)
    assert card.delivery != "cache", (rel, card)


def assert_anonymous_view(browser: Browser, what: str) -> None:
    """The gallery as nobody: the public pictures in full, every other one asked for and
    refused with 401 (a session that still counted would give 200 or 403)."""
    assert browser.path == "/gallery", what
    assert "pysid" not in browser.cookies(), what
    cards = gallery_cards(browser)
    for rel, card in cards.items():
        if rel in PUBLIC:
            assert_shown(card, ORIGINAL, rel)
        else:
            assert_refused(card, {401}, f"{what}: {rel}")
    assert browser.run("return document.querySelector('h1').textContent") == (
        "Gallery: what anyone may see"
    ), what


def back_after_logout(browser: Browser) -> None:
    """Press Back on the page logging out led to, and check the gallery it shows again.

    Chromium either restores the logged-in page from its back/forward cache, pictures and
    all, or loads it again from Apache but takes its pictures from memory without asking
    (whatever their Cache-Control; seen with no-store too). The demo page reloads itself
    in both cases; without that, this fails and names the pictures still shown.
    """
    browser.driver.back()
    try:
        browser.wait_until(
            "window.igBeforeLogout === undefined && location.pathname === '/gallery' &&"
            " performance.getEntriesByType('navigation')[0].type === 'reload'",
            "the gallery to load again after Back",
            timeout=10,
        )
    except BrowserError:
        still = sorted(rel_of(i.src) for i in browser.images() if i.loaded)
        pytest.fail(f"Back after logging out showed pictures from memory: {still}")
    assert_anonymous_view(browser, "Back after logging out")


@pytest.mark.parametrize("user", sorted(EXPECTED))
def test_user_sees_their_images_until_logging_out(
    browser: Browser, demo: DemoSite, user: str
) -> None:
    password, allowed = EXPECTED[user]
    browser.login(demo.url, user, password)  # types into the form and presses Log in
    assert browser.path == "/gallery"
    assert "pysid" in browser.cookies()
    assert browser.run("return document.querySelector('h1').textContent") == (
        f"Gallery for {user}"
    )

    cards = gallery_cards(browser)
    for rel, card in cards.items():
        if rel not in allowed:
            assert_refused(card, {403}, rel)
        elif rel in GALLERY:
            assert_shown(card, GALLERY_SIZE[user], rel)
        else:
            assert_shown(card, ORIGINAL, rel)
        if rel in allowed:
            assert card.status == 200, (rel, card)
    tally = browser.run("return document.getElementById('tally').textContent")
    refused = len(ALL_IMAGES) - len(allowed)
    assert tally == f"Apache sent you {len(allowed)} image(s) and refused {refused}."

    # What the gallery level means, pixel for pixel: every gallery picture of this user
    # arrived at the same size, originals only for alice, never above the preview bound
    # for carol, thumbnail-sized for bob.
    widths = {cards[rel].image.natural_width for rel in GALLERY}
    if user == "bob":
        assert widths == {256}
    elif user == "carol":
        assert widths == {1024} and max(widths) < ORIGINAL[0]
    else:
        assert widths == {ORIGINAL[0]}

    # Log out with the page's button: the demo ends the session and expires the cookie.
    browser.run("window.igBeforeLogout = true;")
    browser.logout()
    assert browser.path == "/login"
    assert "pysid" not in browser.cookies()

    back_after_logout(browser)

    # A fresh load of the gallery, then the reload button.
    browser.get(url(demo, "/gallery"))
    assert_anonymous_view(browser, "a fresh load after logging out")
    browser.reload()
    assert_anonymous_view(browser, "a reload after logging out")


def test_back_after_logout_without_the_back_forward_cache(
    chromium_without_bfcache: Browser, demo: DemoSite
) -> None:
    """The other way Back goes: chromium without its back/forward cache (as when it
    evicts a page) loads the gallery again, and would take its pictures from memory."""
    other = chromium_without_bfcache
    other.login(demo.url, "bob", EXPECTED["bob"][0])
    cards = gallery_cards(other)
    assert cards["gallery/forest.webp"].image.size == THUMB
    other.run("window.igBeforeLogout = true;")
    other.logout()
    back_after_logout(other)


def test_anonymous_visit(browser: Browser, demo: DemoSite) -> None:
    browser.get(demo.url)  # / leads to the gallery
    assert_anonymous_view(browser, "an anonymous visit")
    assert browser.driver.find_elements("css selector", 'form.inline-login[action="/login"]')


def test_direct_link_logs_in_and_comes_back(browser: Browser, demo: DemoSite) -> None:
    """Opening a protected picture's link: the login page, then the picture itself."""
    target = "/images/staff/roadmap.png"
    browser.get(url(demo, target))
    assert browser.path == "/login"
    back = urllib.parse.parse_qs(urllib.parse.urlsplit(browser.url).query)["back"]
    assert back == [target]
    browser.submit_login("alice", EXPECTED["alice"][0])
    assert browser.path == target  # chromium shows the image document itself
    browser.wait_for_images()
    (image,) = browser.images()
    assert image.size == ORIGINAL


def test_wrong_password_stays_on_the_form(browser: Browser, demo: DemoSite) -> None:
    with pytest.raises(BrowserError, match="refused the login"):
        browser.login(demo.url, "bob", EXPECTED["alice"][0])
    assert browser.path == "/login"
    assert "Wrong user name or password" in browser.run("return document.body.textContent")
    assert "pysid" not in browser.cookies()


def test_no_python_errors_logged(demo: DemoSite) -> None:
    log = demo.server.error_log_text()
    assert "Traceback" not in log, log[-3000:]
