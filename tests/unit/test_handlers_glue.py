"""The mod_python adapters' glue, with a stand-in for mod_python (unit level only).

What Apache does with the statuses is proven in tests/integration; here, only that every
path returns an explicit status, that errors fail closed, and that log lines stay single.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from imageguard.store import AclStore


class Table(dict):
    def add(self, key: str, value: str) -> None:
        self[key] = f"{self[key]}, {value}" if key in self else value


def fake_apache() -> types.ModuleType:
    apache = types.ModuleType("mod_python.apache")
    constants = {
        "OK": 0,
        "HTTP_MOVED_TEMPORARILY": 302,
        "HTTP_UNAUTHORIZED": 401,
        "HTTP_FORBIDDEN": 403,
        "HTTP_NOT_FOUND": 404,
        "HTTP_METHOD_NOT_ALLOWED": 405,
        "HTTP_BAD_REQUEST": 400,
        "HTTP_UNSUPPORTED_MEDIA_TYPE": 415,
        "HTTP_INTERNAL_SERVER_ERROR": 500,
        "APR_FINFO_MIN": 0x7170,
        "APR_REG": 1,
        "APLOG_ERR": 3,
        "APLOG_INFO": 6,
    }
    for name, value in constants.items():
        setattr(apache, name, value)

    def stat(path: str, wanted: int) -> types.SimpleNamespace:
        # mod_python's finfo: filetype 0 (APR_NOFILE) for a missing file.
        return types.SimpleNamespace(fname=path, filetype=1 if Path(path).is_file() else 0)

    apache.stat = stat  # type: ignore[attr-defined]
    return apache


@pytest.fixture
def handlers(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    package = types.ModuleType("mod_python")
    package.apache = fake_apache()  # type: ignore[attr-defined]
    c_module = types.ModuleType("_apache")
    c_module._global_lock = lambda *a: None  # type: ignore[attr-defined]
    c_module._global_unlock = lambda *a: None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mod_python", package)
    monkeypatch.setitem(sys.modules, "mod_python.apache", package.apache)
    monkeypatch.setitem(sys.modules, "_apache", c_module)
    for name in ("imageguard.handlers", "imageguard.adapters"):
        sys.modules.pop(name, None)
    yield importlib.import_module("imageguard.handlers")
    for name in ("imageguard.handlers", "imageguard.adapters"):
        sys.modules.pop(name, None)


class FakeRequest:
    def __init__(self, root: Path, rel: str, options: dict[str, str], **kw: object) -> None:
        self.filename = str(root / rel)
        self.uri = "/images/" + rel
        self.unparsed_uri = self.uri
        self.path_info = ""
        self.method = "GET"
        self.user: str | None = None
        self.headers_in = Table(kw.pop("headers", {}))  # type: ignore[arg-type]
        self.headers_out = Table()
        self.err_headers_out = Table()
        self.hlist = types.SimpleNamespace(directory=str(root) + "/")
        self.server = types.SimpleNamespace(server_hostname="images.example.org")
        self.finfo: object = None
        self.status = 200
        self.useragent_ip = "127.0.0.1"
        self.args: str | None = None
        self.subprocess_env = Table()
        self.logged: list[tuple[str, int]] = []
        self._options = options
        self.allowed: list[str] = []
        for key, value in kw.items():
            setattr(self, key, value)

    def get_options(self) -> dict[str, str]:
        return self._options

    def log_error(self, message: str, level: int) -> None:
        self.logged.append((message, level))

    def allow_methods(self, methods: list[str], reset: int = 0) -> None:
        self.allowed = methods


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "images"
    root.mkdir()
    Image.new("RGB", (40, 30), "red").save(root / "a.jpg")
    Image.new("RGB", (40, 30), "blue").save(root / "open.jpg")
    (root / "page.jpg").write_text("<html>not a picture</html>")
    Image.new("RGB", (800, 600), "green").save(root / "small.jpg")
    cache = tmp_path / "cache"
    cache.mkdir()
    db = tmp_path / "acl.db"
    with AclStore.create(db) as store:
        store.grant("open.jpg", "anyone", "full")
        store.grant("page.jpg", "anyone", "full")
        store.grant("small.jpg", "anyone", "thumb")
    options = {
        "imageguard.cache_dir": str(cache),
        "imageguard.acl_db": str(db),
        "mod_python.session.session_type": "FileSession",
        "mod_python.file_session.database_directory": str(tmp_path / "sessions"),
    }
    return root, options


def test_access_ok_and_refusals(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]]
) -> None:
    root, options = site
    assert handlers.accesshandler(FakeRequest(root, "a.jpg", options)) == 0
    req = FakeRequest(root, "a.jpg", options, method="POST")
    assert handlers.accesshandler(req) == 405 and req.allowed == ["GET", "HEAD"]
    req = FakeRequest(root, "a.jpg", options, path_info="/x.jpg")
    assert handlers.accesshandler(req) == 403
    assert len(req.logged) == 1 and req.logged[0][1] == 3


def test_anonymous_flow(handlers: types.ModuleType, site: tuple[Path, dict[str, str]]) -> None:
    root, options = site
    req = FakeRequest(root, "open.jpg", options)
    assert handlers.authenhandler(req) == 0 and req.user == ""
    assert handlers.authzhandler(req) == 0
    assert req.headers_out["Cache-Control"] == "private, max-age=0"
    req = FakeRequest(root, "a.jpg", options)
    assert handlers.authenhandler(req) == 401
    html = {"Accept": "text/html"}
    req = FakeRequest(
        root, "a.jpg", {**options, "imageguard.login_url": "/login?x=1"}, headers=html
    )
    assert handlers.authenhandler(req) == 302
    assert req.err_headers_out["Location"] == "/login?x=1&back=%2Fimages%2Fa.jpg"


def test_authz_alone_denies_without_grant(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]]
) -> None:
    root, options = site
    req = FakeRequest(root, "a.jpg", {**options, "imageguard.deny_status": "404"})
    assert handlers.authzhandler(req) == 404
    assert req.err_headers_out["Cache-Control"] == "private, no-store"


@pytest.mark.parametrize("phase", ["accesshandler", "authenhandler", "authzhandler"])
def test_unexpected_errors_fail_closed(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]], phase: str
) -> None:
    root, options = site

    class Exploding(FakeRequest):
        def get_options(self) -> dict[str, str]:
            raise RuntimeError("boom\nsecond line")

    req = Exploding(root, "open.jpg", options)
    assert getattr(handlers, phase)(req) == 500
    ((message, level),) = req.logged
    assert level == 3 and "\n" not in message
    assert "internal error RuntimeError: boom\\nsecond line" in message


@pytest.mark.parametrize(
    ("options", "text"),
    [
        ({"imageguard.deny_status": "200"}, "403 or 404"),
        ({"imageguard.acl_db": "/nonexistent/acl.db"}, "does not exist"),
        ({"imageguard.acl_db": ""}, "imageguard.acl_db is not set"),
    ],
)
def test_config_and_store_errors_are_500(
    handlers: types.ModuleType,
    site: tuple[Path, dict[str, str]],
    options: dict[str, str],
    text: str,
) -> None:
    root, base = site
    req = FakeRequest(root, "open.jpg", {**base, **options})
    assert handlers.authzhandler(req) == 500
    assert any(text in message for message, _ in req.logged)


def test_log_lines_escape_hostile_names(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]]
) -> None:
    root, options = site
    req = FakeRequest(root, "x\r\nFAKE: line.txt", options)
    assert handlers.accesshandler(req) == 403
    assert req.logged
    assert all("\n" not in m and "\r" not in m for m, _ in req.logged)


def test_content_that_is_not_an_image_is_415(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]]
) -> None:
    root, options = site
    req = FakeRequest(root, "page.jpg", options)
    assert handlers.accesshandler(req) == 415
    assert "page.jpg: file is not a JPEG image" in req.logged[0][0]


def test_thumb_level_swaps_in_the_rendition(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]]
) -> None:
    root, options = site
    req = FakeRequest(root, "small.jpg", options)
    assert handlers.authzhandler(req) == 0
    assert req.filename.startswith(options["imageguard.cache_dir"])
    assert req.finfo.fname == req.filename  # type: ignore[attr-defined]
    assert Image.open(req.filename).size == (256, 192)
    assert req.headers_out["Cache-Control"] == "private, max-age=0"


def test_unknown_variant_is_400(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]]
) -> None:
    root, options = site
    req = FakeRequest(root, "open.jpg", options, args="v=poster")
    assert handlers.authzhandler(req) == 400
    assert "unknown variant 'poster'" in req.logged[0][0]


def test_placeholder_is_sent_with_the_deny_status(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]]
) -> None:
    root, options = site
    strict = {**options, "imageguard.placeholder": "on"}
    req = FakeRequest(root, "a.jpg", strict)
    assert handlers.authzhandler(req) == 0  # Apache sends the padlock file...
    assert req.status == 403  # ...with the deny status
    assert req.filename.endswith("locked-v1.png")
    page = FakeRequest(root, "a.jpg", strict, headers={"Accept": "text/html"})
    assert handlers.authzhandler(page) == 403 and page.filename.endswith("a.jpg")
    no_downgrade = {**strict, "imageguard.downgrade": "off"}
    req = FakeRequest(root, "small.jpg", no_downgrade)
    assert handlers.authzhandler(req) == 0 and req.status == 403
    assert any("imageguard.downgrade off" in message for message, _ in req.logged)


def test_placeholder_with_404_is_a_config_error(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]]
) -> None:
    root, options = site
    hiding = {**options, "imageguard.placeholder": "on", "imageguard.deny_status": "404"}
    req = FakeRequest(root, "a.jpg", hiding)
    assert handlers.accesshandler(req) == 500
    assert "placeholder on needs imageguard.deny_status 403" in req.logged[0][0]


def test_gatekeeper_does_all_three_phases(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]]
) -> None:
    gatekeeper = importlib.import_module("imageguard.gatekeeper")
    root, options = site
    req = FakeRequest(root, "open.jpg", options)
    assert gatekeeper.accesshandler(req) == 0
    assert req.user == "" and req.subprocess_env["IMAGEGUARD_ADMITTED"] == "1"
    assert req.headers_out["Cache-Control"] == "private, max-age=0"
    req = FakeRequest(root, "a.jpg", options)  # no rule for anyone, nobody logged in
    assert gatekeeper.accesshandler(req) == 401 and "IMAGEGUARD_ADMITTED" not in req.subprocess_env
    req = FakeRequest(root, "a.jpg", options, method="POST")
    assert gatekeeper.accesshandler(req) == 405 and "IMAGEGUARD_ADMITTED" not in req.subprocess_env
    req = FakeRequest(root, "small.jpg", options)  # thumb for anyone: the rendition
    assert gatekeeper.accesshandler(req) == 0
    assert req.filename.startswith(options["imageguard.cache_dir"])
    req = FakeRequest(root, "a.jpg", {**options, "imageguard.placeholder": "on"})
    assert gatekeeper.accesshandler(req) == 401  # anonymous: asked to log in, no padlock
    assert req.filename.endswith("a.jpg")


def test_gatekeeper_fails_closed(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]]
) -> None:
    gatekeeper = importlib.import_module("imageguard.gatekeeper")
    root, options = site
    req = FakeRequest(root, "open.jpg", {**options, "imageguard.acl_db": "/nonexistent.db"})
    assert gatekeeper.accesshandler(req) == 500
    assert "IMAGEGUARD_ADMITTED" not in req.subprocess_env
    assert any("gatekeeper: ACL store" in message for message, _ in req.logged)


def test_a_rendition_that_cannot_be_found_after_making_is_500(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from imageguard.runtime import Runtime

    root, options = site
    monkeypatch.setattr(Runtime, "make_rendition", lambda self, planned: None)  # made nothing
    req = FakeRequest(root, "small.jpg", options)
    assert handlers.authzhandler(req) == 500
    assert req.filename.endswith("small.jpg")  # the original was not swapped in
    assert any("vanished before it could be sent" in message for message, _ in req.logged)
