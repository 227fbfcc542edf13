"""Drive Debian's chromium headless through Selenium: the demo's browser test and screenshots.

Nothing is downloaded, ever: the browser is ``/usr/bin/chromium`` (Debian's ``chromium``),
the driver ``/usr/bin/chromedriver`` (Debian's ``chromium-driver``), both given to Selenium
by path, and ``SE_OFFLINE=true`` keeps Selenium Manager from fetching anything should some
code path still call it. Each :class:`Browser` has its own profile directory under /tmp,
removed when it stops, so no cookie, cache entry or saved password outlives it.

Typical use::

    with Browser() as browser:
        browser.login(site_url, "alice", "wonderland")
        browser.wait_for_images()
        for image in browser.images():
            print(image.src, image.natural_width)
        browser.screenshot(Path("gallery.png"), below=".grid")
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - the test extra is missing
    webdriver = None  # type: ignore[assignment]

__all__ = [
    "CHROMEDRIVER",
    "CHROMIUM",
    "CHROMIUM_FLAGS",
    "Browser",
    "BrowserError",
    "BrowserUnavailable",
    "ImageState",
    "unavailable_reason",
]

#: Debian's chromium (package ``chromium``) and its driver (package ``chromium-driver``).
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: Headless, no sandbox (root in a container has none to give), and none of the background
#: traffic a fresh profile would start (updates, sync, metrics uploads, field trials).
CHROMIUM_FLAGS: tuple[str, ...] = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-extensions",
    "--disable-sync",
    "--metrics-recording-only",
    "--password-store=basic",
)
#: The viewport of screenshots and tests: wide enough for four gallery columns.
DEFAULT_SIZE = (1280, 900)


class BrowserError(RuntimeError):
    """The browser did not do what was asked (a page did not load, a form is missing...)."""


class BrowserUnavailable(BrowserError):
    """chromium, chromedriver or Selenium is not installed."""


def unavailable_reason() -> str | None:
    """Why :class:`Browser` cannot start here (a sentence naming what to install), or None."""
    missing = [
        f"{path} (Debian package {package})"
        for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver"))
        if not os.access(path, os.X_OK)
    ]
    if missing:
        return (
            f"the browser tests need {' and '.join(missing)}: "
            "apt-get install chromium chromium-driver (make test installs them)"
        )
    if webdriver is None:
        return "Selenium is not installed: pip install -e '.[test]' (make test installs it)"
    return None


@dataclass(frozen=True)
class ImageState:
    """What the browser knows about one ``<img>`` once it has settled."""

    #: The ``src`` attribute as written in the page (``/images/public/welcome.jpg``).
    src: str
    #: The decoded picture's size; 0 x 0 when nothing displayable arrived.
    natural_width: int
    natural_height: int
    #: True once the browser is done with it, whether it loaded or failed.
    complete: bool

    @property
    def loaded(self) -> bool:
        return self.complete and self.natural_width > 0

    @property
    def size(self) -> tuple[int, int]:
        return (self.natural_width, self.natural_height)


_IMAGES_JS = """
return Array.from(document.images, function (img) {
  return {src: img.getAttribute("src") || "", w: img.naturalWidth, h: img.naturalHeight,
          complete: img.complete};
});
"""
_SETTLED = (
    'document.readyState === "complete" && '
    "Array.from(document.images).every(function (img) { return img.complete; })"
)
_GALLERY_MARKED = (
    'document.querySelectorAll("figure.card").length > 0 && '
    'document.querySelectorAll("figure.card:not(.allowed):not(.denied)").length === 0'
)
_RESOURCES_JS = """
return performance.getEntriesByType("resource").map(function (e) {
  return {name: e.name, status: e.responseStatus || 0, transfer: e.transferSize,
          delivery: e.deliveryType || ""};
});
"""


class Browser:
    """One headless chromium with a private profile; a context manager that stops it."""

    def __init__(
        self,
        size: tuple[int, int] = DEFAULT_SIZE,
        timeout: float = 20,
        extra_flags: Sequence[str] = (),
    ) -> None:
        self.size = size
        self.timeout = timeout
        #: More chromium flags, after :data:`CHROMIUM_FLAGS`.
        self.extra_flags = tuple(extra_flags)
        self.profile: Path | None = None
        self._driver: Any = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Browser:
        reason = unavailable_reason()
        if reason is not None:
            raise BrowserUnavailable(reason)
        # Selenium Manager would fetch a browser or driver it thinks is missing: never.
        os.environ["SE_OFFLINE"] = "true"
        self.profile = Path(tempfile.mkdtemp(prefix="imageguard-chromium-", dir="/tmp"))
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (*CHROMIUM_FLAGS, *self.extra_flags):
            options.add_argument(flag)
        width, height = self.size
        options.add_argument(f"--window-size={width},{height}")
        options.add_argument(f"--user-data-dir={self.profile}")
        service = Service(executable_path=str(CHROMEDRIVER))
        try:
            self._driver = webdriver.Chrome(service=service, options=options)
            self._driver.set_page_load_timeout(self.timeout)
            # The viewport itself, not the window around it, is what screenshots show.
            self.cdp(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            )
        except WebDriverException as exc:
            self.stop()
            raise BrowserError(f"chromium did not start through chromedriver: {exc.msg}") from exc
        return self

    def stop(self) -> None:
        """Quit chromium and chromedriver and remove the profile (safe to call twice)."""
        driver, self._driver = self._driver, None
        try:
            if driver is not None:
                try:
                    driver.quit()
                except WebDriverException:
                    driver.service.stop()
        finally:
            if self.profile is not None:
                shutil.rmtree(self.profile, ignore_errors=True)
                self.profile = None

    def __enter__(self) -> Browser:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def driver(self) -> Any:
        """The Selenium WebDriver (for what the helpers here do not cover)."""
        if self._driver is None:
            raise BrowserError("the browser is not running: call start() first")
        return self._driver

    def cdp(self, command: str, params: dict[str, Any] | None = None) -> Any:
        """One Chrome DevTools Protocol command."""
        return self.driver.execute_cdp_cmd(command, params or {})

    # ------------------------------------------------------------------ pages

    @property
    def url(self) -> str:
        return str(self.driver.current_url)

    @property
    def path(self) -> str:
        """The path of the page shown (``/gallery``)."""
        return urllib.parse.urlsplit(self.url).path

    def get(self, url: str) -> None:
        self.driver.get(url)

    def reload(self) -> None:
        """What the reload button does: the page again, revalidating what it loads."""
        self.driver.refresh()

    def run(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait_until(self, condition: str, what: str, timeout: float | None = None) -> None:
        """Wait until the JavaScript expression *condition* is true."""
        try:
            WebDriverWait(self.driver, timeout or self.timeout, poll_frequency=0.05).until(
                lambda driver: bool(driver.execute_script(f"return ({condition});"))
            )
        except TimeoutException as exc:
            raise BrowserError(f"timed out waiting for {what} on {self.url}") from exc

    def wait_for_path(self, path: str, timeout: float | None = None) -> None:
        self.wait_until(f"location.pathname === {path!r}", f"the page {path}", timeout)

    def cookies(self) -> dict[str, str]:
        return {c["name"]: c["value"] for c in self.driver.get_cookies()}

    # ------------------------------------------------------------------ the demo's forms

    def login(self, site_url: str, user: str, password: str) -> None:
        """Log in through the demo's login page: type into its form and press its button.

        Returns once the browser has left ``/login`` (the demo then shows the gallery);
        a refused login stays there and raises :class:`BrowserError`.
        """
        self.get(urllib.parse.urljoin(site_url, "/login"))
        self.submit_login(user, password)

    def submit_login(self, user: str, password: str) -> None:
        """Fill in and send the login form of the page shown (as :meth:`login` does)."""
        form = self._one('form[action="/login"]', "the login form")
        form.find_element(By.NAME, "user").send_keys(user)
        form.find_element(By.NAME, "password").send_keys(password)
        form.find_element(By.CSS_SELECTOR, 'button[type="submit"]').click()
        self.wait_until(
            "location.pathname !== '/login' || document.querySelector('.error') !== null",
            "the login to finish",
        )
        if self.path == "/login":
            raise BrowserError(f"the demo refused the login of {user!r}")

    def logout(self) -> None:
        """Press the page's "Log out" button and wait for the page it leads to."""
        before = self.url
        self._one('form[action="/logout"] button', "the Log out button").click()
        self.wait_until(f"location.href !== {before!r}", "the logout to finish")
        self.wait_until("document.readyState === 'complete'", "the page after logging out")

    def _one(self, selector: str, what: str) -> Any:
        found = self.driver.find_elements(By.CSS_SELECTOR, selector)
        if not found:
            raise BrowserError(f"{what} ({selector}) is not on {self.url}")
        return found[0]

    # ------------------------------------------------------------------ images

    def wait_for_images(self, timeout: float | None = None) -> None:
        """Wait until the page has loaded and every ``<img>`` has loaded or failed."""
        self.wait_until(_SETTLED, "every image to load or fail", timeout)

    def wait_for_gallery(self, timeout: float | None = None) -> None:
        """Wait until the demo's gallery has settled: every image loaded or failed, and
        the page's own script has marked each picture's card allowed or denied."""
        self.wait_for_images(timeout)
        self.wait_until(_GALLERY_MARKED, "the gallery to mark every picture", timeout)

    def images(self) -> list[ImageState]:
        """Every ``<img>`` of the page, in document order."""
        return [
            ImageState(str(i["src"]), int(i["w"]), int(i["h"]), bool(i["complete"]))
            for i in self.run(_IMAGES_JS)
        ]

    def resources(self) -> list[dict[str, Any]]:
        """The page's resource timing entries: URL, HTTP status, bytes over the wire and
        ``delivery`` ("cache" when a browser cache answered, the server not asked)."""
        return list(self.run(_RESOURCES_JS))

    # ------------------------------------------------------------------ screenshots

    def screenshot(self, path: Path, below: Sequence[str] = (), margin: int = 24) -> Path:
        """Write a PNG of the page: the viewport, or taller so that the lowest element
        matching any CSS selector in *below* is wholly in it (plus *margin* pixels)."""
        width, height = self.size
        selectors = [below] if isinstance(below, str) else list(below)
        bottom = 0.0
        for selector in selectors:
            bottom = max(
                bottom,
                float(
                    self.run(
                        "var e = document.querySelectorAll(arguments[0]); var b = 0;"
                        "e.forEach(function (x) {"
                        "  b = Math.max(b, x.getBoundingClientRect().bottom + scrollY); });"
                        "return b;",
                        selector,
                    )
                ),
            )
        page_height = float(self.run("return document.documentElement.scrollHeight;"))
        clip_height = max(height, min(page_height, bottom + margin)) if bottom else height
        self.run("window.scrollTo(0, 0);")
        time.sleep(0.05)  # let a scroll or a late layout settle before painting
        shot = self.cdp(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": clip_height > height,
                "clip": {"x": 0, "y": 0, "width": width, "height": clip_height, "scale": 1},
            },
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path
