"""The mod_python adapters' glue, with a stand-in for mod_python (unit level only).

What Apache does with the statuses is proven in tests/integration; here, only that every
path returns an explicit status, that errors fail closed, and that log lines stay single.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from imageguard.store import AclStore


def sent(req: FakeRequest) -> str:
    """The real path of the file a handler handed to Apache (by its descriptor)."""
    assert req.filename.startswith("/proc/self/fd/"), req.filename
    return os.readlink(req.filename)


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
        "APLOG_WARNING": 4,
        "APLOG_INFO": 6,
    }
    for name, value in constants.items():
        setattr(apache, name, value)

    def stat(path: str, wanted: int) -> types.SimpleNamespace:
        # mod_python's finfo: filetype 0 (APR_NOFILE) for a missing file, whole seconds.
        try:
            st = os.stat(path)
        except OSError:
            return types.SimpleNamespace(fname=path, filetype=0, inode=None, device=None)
        return types.SimpleNamespace(
            fname=path,
            filetype=1 if Path(path).is_file() else 2,
            inode=st.st_ino,
            device=st.st_dev,
            size=st.st_size,
            mtime=int(st.st_mtime),
        )

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
    for name in ("imageguard.handlers", "imageguard.apache.adapters"):
        sys.modules.pop(name, None)
    yield importlib.import_module("imageguard.handlers")
    for name in ("imageguard.handlers", "imageguard.apache.adapters"):
        sys.modules.pop(name, None)


class FakeRequest:
    def __init__(self, root: Path, rel: str, options: dict[str, str], **kw: object) -> None:
        self.filename = str(root / rel)
        self.uri = "/images/" + rel
        self.unparsed_uri = self.uri
        self.path_info = ""
        self.method = "GET"
        self.prev = kw.pop("prev", None)  # the request an internal redirect came from
        self.main = kw.pop("main", None)  # the request a subrequest was made for
        self.user: str | None = None
        self.headers_in = Table(kw.pop("headers", {}))  # type: ignore[arg-type]
        self.headers_out = Table()
        self.err_headers_out = Table()
        self.hlist = types.SimpleNamespace(directory=str(root) + "/")
        self.server = types.SimpleNamespace(server_hostname="images.example.org")
        self.finfo: object = sys.modules["mod_python.apache"].stat(self.filename, 0)  # Apache's
        self.status = 200
        self.useragent_ip = "127.0.0.1"
        self.args: str | None = None
        self.subprocess_env = Table()
        self.notes = Table()  # the access log's %{...}n
        self.logged: list[tuple[str, int]] = []
        self._options = options
        self.allowed: list[str] = []
        self.content_type: str | None = None
        self.handler: str | None = None
        self.added: list[tuple[str, str]] = []
        self.cleanups: list[tuple[object, object]] = []
        for key, value in kw.items():
            setattr(self, key, value)

    def add_handler(self, phase: str, handler: str) -> None:
        self.added.append((phase, handler))

    def register_cleanup(self, function: object, data: object) -> None:
        self.cleanups.append((function, data))

    def end(self) -> None:
        """What Apache does when the request's pool goes: run the cleanups."""
        for function, data in self.cleanups:
            function(data)  # type: ignore[operator]
        self.cleanups = []

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


def test_facts_are_gathered_from_the_request(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]]
) -> None:
    """What the adapters hand the policy (tests/unit/test_decision.py tests the policy)."""
    adapters = importlib.import_module("imageguard.apache.adapters")
    root, options = site
    headers = {"Accept": ["text/html", "*/*"], "Cookie": ["a=1", "pysid=x"], "X-Y": "z"}
    req = FakeRequest(root, "a.jpg", options, headers=headers, args="v=thumb")
    req.unparsed_uri = "/images/a.jpg?v=thumb"
    facts = adapters._facts(req, adapters._runtime(req))
    assert (facts.method, facts.filename, facts.path_info, facts.query) == (
        "GET",
        str(root / "a.jpg"),
        "",
        "v=thumb",
    )
    assert facts.uri == "/images/a.jpg?v=thumb" and facts.cookies == ("a=1", "pysid=x")
    assert facts.accept == "text/html, */*" and facts.navigation
    assert facts.headers.get("X-Y") == "z" and facts.headers.get("X-None") is None
    assert (facts.client_ip, facts.host, facts.cookie_note) == (
        "127.0.0.1",
        "images.example.org",
        None,
    )
    st = os.stat(root / "a.jpg")
    assert facts.file == (st.st_dev, st.st_ino, st.st_size, int(st.st_mtime))
    missing = FakeRequest(root, "gone.jpg", options)
    assert adapters._facts(missing, adapters._runtime(missing)).file is None


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
    assert handlers.accesshandler(req) == 0  # the gate: a file named like an image
    assert handlers.authzhandler(req) == 415  # verified once the viewer may see it
    assert "page.jpg: file is not a JPEG image" in req.logged[0][0]


def test_thumb_level_swaps_in_the_rendition(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]]
) -> None:
    root, options = site
    req = FakeRequest(root, "small.jpg", options)
    assert handlers.authzhandler(req) == 0
    assert sent(req).startswith(options["imageguard.cache_dir"])
    cached = os.stat(sent(req))
    assert (req.finfo.inode, req.finfo.size) == (cached.st_ino, cached.st_size)  # type: ignore[attr-defined]
    assert req.content_type == "image/jpeg"
    assert Image.open(req.filename).size == (256, 192)
    assert req.headers_out["Cache-Control"] == "private, max-age=0"
    req.end()


def test_placeholder_is_sent_with_the_deny_status(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]]
) -> None:
    root, options = site
    strict = {**options, "imageguard.placeholder": "on"}
    req = FakeRequest(root, "a.jpg", strict)
    assert handlers.authzhandler(req) == 0  # Apache sends the padlock file...
    assert req.status == 403  # ...with the deny status
    assert sent(req).endswith("locked-v1.png") and req.content_type == "image/png"
    page = FakeRequest(root, "a.jpg", strict, headers={"Accept": "text/html"})
    assert handlers.authzhandler(page) == 403 and page.filename.endswith("a.jpg")
    assert handlers.fixuphandler(req) == 0  # sent as it was handed over
    req.end()


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
    assert sent(req).startswith(options["imageguard.cache_dir"])
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
    from imageguard.apache.runtime import Runtime

    root, options = site
    monkeypatch.setattr(
        Runtime, "make_rendition", lambda self, planned, fd=-1: None
    )  # made nothing
    req = FakeRequest(root, "small.jpg", options)
    assert handlers.authzhandler(req) == 500
    assert req.filename.endswith("small.jpg")  # the original was not swapped in
    assert any("cannot be opened: No such file" in message for message, _ in req.logged)


# --------------------------------------------------------------------------- the fixup


def test_every_handler_schedules_the_fixup_once(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]]
) -> None:
    root, options = site
    req = FakeRequest(root, "open.jpg", options)
    for phase in ("accesshandler", "authenhandler", "authzhandler"):
        assert getattr(handlers, phase)(req) == 0
    assert req.added == [("PythonFixupHandler", "imageguard.handlers::fixuphandler")]


def test_fixup_passes_what_was_admitted_as_it_was_admitted(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]]
) -> None:
    root, options = site
    req = FakeRequest(root, "open.jpg", options)
    assert handlers.authzhandler(req) == 0
    assert sent(req) == str(root / "open.jpg") and req.content_type == "image/jpeg"
    assert handlers.fixuphandler(req) == 0
    req.filename = "/srv/other.jpg"  # the configured copy, run right after: not a second look
    assert handlers.fixuphandler(req) == 0 and len(req.logged) == 0
    req.end()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"handler": "type-map"}, "handler 'type-map' would serve the image"),
        ({"handler": "cgi-script"}, "handler 'cgi-script' would serve the image"),
        ({"content_type": "text/html"}, "Content-Type changed to 'text/html'"),
        ({"filename": "/srv/other.jpg"}, "file name changed"),
    ],
)
def test_fixup_refuses_what_changed_after_admission(
    handlers: types.ModuleType,
    site: tuple[Path, dict[str, str]],
    change: dict[str, str],
    message: str,
) -> None:
    root, options = site
    req = FakeRequest(root, "open.jpg", options)
    assert handlers.authzhandler(req) == 0
    for name, value in change.items():
        setattr(req, name, value)
    assert handlers.fixuphandler(req) == 500
    assert message in req.logged[-1][0]
    req.end()


def test_fixup_refuses_what_no_handler_admitted(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]]
) -> None:
    root, options = site
    req = FakeRequest(root, "open.jpg", options)
    assert handlers.accesshandler(req) == 0  # an ACL store is set: authz must admit
    assert handlers.fixuphandler(req) == 500  # ...and never ran
    assert "authorization did not run" in req.logged[-1][0]


@pytest.mark.parametrize(
    ("link", "parent", "said"),
    [
        # An ErrorDocument into the same directory: Apache ran no access check for it.
        ("prev", "secret.jpg", "internal redirect: Apache skipped its access checks"),
        # An SSI page's include of an image.
        ("main", "page.shtml", "admitted this subrequest: Apache skipped its access checks"),
    ],
    ids=["internal-redirect", "subrequest"],
)
def test_fixup_names_a_request_whose_checks_apache_skipped(
    handlers: types.ModuleType,
    site: tuple[Path, dict[str, str]],
    link: str,
    parent: str,
    said: str,
) -> None:
    root, options = site
    first = FakeRequest(root, parent, options)
    req = FakeRequest(root, "open.jpg", options, **{link: first})
    assert handlers.fixuphandler(req) == 500
    assert said in req.logged[-1][0]


def test_fixup_repeats_a_refusal_the_configuration_overrode(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]]
) -> None:
    root, options = site
    req = FakeRequest(root, "a.jpg", options, path_info="/x.jpg")
    assert handlers.accesshandler(req) == 403
    assert handlers.fixuphandler(req) == 403  # e.g. Satisfy Any let the request go on
    req = FakeRequest(root, "a.jpg", options)
    assert handlers.authenhandler(req) == 401
    assert handlers.fixuphandler(req) == 401


def test_access_handler_alone_sends_the_file(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]]
) -> None:
    root, _options = site
    gate_only = {"imageguard.root": str(root)}  # an .htaccess gate: no ACL store
    req = FakeRequest(root, "a.jpg", gate_only)
    assert handlers.accesshandler(req) == 0
    assert sent(req) == str(root / "a.jpg")
    assert handlers.fixuphandler(req) == 0
    req.end()
    assert handlers.accesshandler(FakeRequest(root, "page.jpg", gate_only)) == 415


def test_descriptors_are_closed_when_the_request_ends(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]]
) -> None:
    root, options = site
    req = FakeRequest(root, "open.jpg", options)
    assert handlers.authzhandler(req) == 0
    fd = int(req.filename.rsplit("/", 1)[1])
    os.fstat(fd)  # open until the request ends...
    req.end()
    with pytest.raises(OSError):
        os.fstat(fd)  # ...and closed then


def test_a_file_swapped_after_the_check_is_looked_at_again(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate saw one file, the open finds another: the request starts over and the
    file sent is the one the second look checked."""
    from imageguard.files.gate import Gate

    root, options = site
    calls: list[str] = []
    real_open = Gate.open

    def swapping(gate: Gate, relpath: str, **options: bool) -> tuple[int, object]:
        calls.append(relpath)
        if len(calls) == 1:  # replaced between the gate's lstat and this open
            (root / "open.jpg").unlink()
            Image.new("RGB", (10, 10), "white").save(root / "open.jpg")
        return real_open(gate, relpath, **options)

    monkeypatch.setattr(Gate, "open", swapping)
    req = FakeRequest(root, "open.jpg", options)
    assert handlers.authzhandler(req) == 0
    assert calls == ["open.jpg", "open.jpg"]
    assert Image.open(req.filename).size == (10, 10)
    req.end()


def test_a_file_swapped_twice_is_refused(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from imageguard.files.gate import Gate

    root, options = site
    real_open = Gate.open

    def always_swapping(gate: Gate, relpath: str, **options: bool) -> tuple[int, object]:
        (root / "open.jpg").unlink()
        Image.new("RGB", (10, 10), "white").save(root / "open.jpg")
        return real_open(gate, relpath, **options)

    monkeypatch.setattr(Gate, "open", always_swapping)
    req = FakeRequest(root, "open.jpg", options)
    assert handlers.authzhandler(req) == 404
    assert "changed while it was being checked" in req.logged[-1][0]
    assert not req.filename.startswith("/proc/")


# --------------------------------------------------------------------------- bytes


class NotUTF8Request(FakeRequest):
    """A request whose listed attributes mod_python cannot decode (bytes not UTF-8)."""

    unreadable: tuple[str, ...] = ()

    def __getattribute__(self, name: str) -> object:
        if name in object.__getattribute__(self, "unreadable"):
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
        return object.__getattribute__(self, name)


class UnreadableTable(Table):
    def get(self, key: str, default: object = None) -> object:
        if key == "Cookie":
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
        return super().get(key, default)


@pytest.mark.parametrize(
    ("unreadable", "status"),
    [(("uri", "filename"), 404), (("filename",), 404), (("args",), 400)],
)
@pytest.mark.parametrize("phase", ["accesshandler", "authenhandler", "authzhandler"])
def test_request_bytes_that_are_not_utf8_are_refused_in_one_line(
    handlers: types.ModuleType,
    site: tuple[Path, dict[str, str]],
    unreadable: tuple[str, ...],
    status: int,
    phase: str,
) -> None:
    root, options = site
    req = NotUTF8Request(root, "open.jpg", options)
    req.unreadable = (*unreadable, "unparsed_uri") if "uri" in unreadable else unreadable
    assert getattr(handlers, phase)(req) == status
    ((message, level),) = req.logged
    assert level == 3 and "not UTF-8" in message
    assert handlers.fixuphandler(req) == status  # refused again, had Apache gone on


def test_a_foreign_cookie_does_not_hide_the_login(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """mod_python cannot read a Cookie header with a byte that is not UTF-8; the login
    cookie then comes from the SetEnvIf line of the generated configuration."""
    from imageguard.identity.tickets import issue_ticket

    root, options = site
    secrets = tmp_path / "secrets"
    secrets.write_text("glue-secret-0123456789\n")
    secrets.chmod(0o600)
    tickets = {
        **options,
        "imageguard.session": "auth_tkt",
        "imageguard.tkt_secret_file": str(secrets),
    }
    with AclStore(options["imageguard.acl_db"]) as store:
        store.grant("a.jpg", "user:bob", "full")
    ticket = issue_ticket("bob", [], "glue-secret-0123456789")
    req = FakeRequest(root, "a.jpg", tickets)
    req.headers_in = UnreadableTable()
    req.subprocess_env["IMAGEGUARD_LOGIN_COOKIE"] = ticket
    assert handlers.authenhandler(req) == 0 and req.user == "bob"
    assert handlers.authzhandler(req) == 0
    req.end()
    without = FakeRequest(root, "a.jpg", tickets)  # no SetEnvIf line: anonymous, logged
    without.headers_in = UnreadableTable()
    assert handlers.authenhandler(without) == 401
    assert any("IMAGEGUARD_LOGIN_COOKIE is not set" in m for m, _ in without.logged)


def test_failing_closed_never_raises(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]]
) -> None:
    root, options = site

    class Hopeless(FakeRequest):
        def get_options(self) -> dict[str, str]:
            raise RuntimeError("boom")

        def log_error(self, message: str, level: int) -> None:
            raise UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed")

    for phase in ("accesshandler", "authenhandler", "authzhandler", "fixuphandler"):
        assert getattr(handlers, phase)(Hopeless(root, "open.jpg", options)) == 500


def test_a_handler_module_that_cannot_load_refuses_with_500(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, options = site
    monkeypatch.setitem(sys.modules, "imageguard.apache.adapters", None)  # the import fails
    gatekeeper = importlib.import_module("imageguard.gatekeeper")
    for handler in (handlers.accesshandler, handlers.fixuphandler, gatekeeper.accesshandler):
        req = FakeRequest(root, "open.jpg", options)
        assert handler(req) == 500
        ((message, _),) = req.logged
        assert "its handlers cannot be loaded" in message


def test_apaches_own_finfo_is_kept_when_it_describes_the_file_sent(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The usual case costs no look-up: Apache's stat of the name asked for is the
    file's. A finfo of another file is replaced, looked up by path, or by descriptor
    when the path names another file by now."""
    apache = sys.modules["mod_python.apache"]
    looked_up: list[str] = []
    real_stat = apache.stat

    def counting(path: str, wanted: int) -> object:
        looked_up.append(path)
        return real_stat(path, wanted)

    monkeypatch.setattr(apache, "stat", counting)
    root, options = site
    req = FakeRequest(root, "open.jpg", options)  # with Apache's finfo of the name asked
    kept = req.finfo
    looked_up.clear()
    assert handlers.authzhandler(req) == 0
    assert req.finfo is kept and looked_up == []
    req.end()
    req = FakeRequest(root, "open.jpg", options)
    req.finfo = real_stat(str(root / "a.jpg"), 0)  # Apache saw another file
    looked_up.clear()
    assert handlers.authzhandler(req) == 0
    assert looked_up == [str(root / "open.jpg")]
    assert req.finfo.inode == os.stat(root / "open.jpg").st_ino  # type: ignore[attr-defined]
    req.end()
    looked_up.clear()
    req = FakeRequest(root, "open.jpg", options)
    req.finfo = real_stat(str(root / "a.jpg"), 0)

    def replacing(path: str, wanted: int) -> object:  # the name is another file by now
        looked_up.append(path)
        if path == str(root / "open.jpg"):
            return real_stat(str(root / "a.jpg"), wanted)
        return real_stat(path, wanted)

    monkeypatch.setattr(apache, "stat", replacing)
    looked_up.clear()
    assert handlers.authzhandler(req) == 0
    assert looked_up == [str(root / "open.jpg"), req.filename]
    assert req.finfo.inode == os.stat(sent(req)).st_ino  # type: ignore[attr-defined]
    req.end()


def test_a_rendition_is_made_from_the_file_the_gate_opened(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name replaced right after the gate opened the file: the content check and the
    rendition read the opened file (800x600), not the one now at its name (600x800)."""
    from imageguard.files.gate import Gate

    root, options = site
    real_open = Gate.open

    def open_then_swap(gate: Gate, relpath: str) -> tuple[int, object]:
        opened = real_open(gate, relpath)
        (root / "small.jpg").unlink()
        Image.new("RGB", (600, 800), "white").save(root / "small.jpg")
        return opened

    monkeypatch.setattr(Gate, "open", open_then_swap)
    req = FakeRequest(root, "small.jpg", options)
    assert handlers.authzhandler(req) == 0
    assert Image.open(req.filename).size == (256, 192)
    req.end()


# --------------------------------------------------------------------------- the log note


class UnwritableNotes(Table):
    """A notes table that refuses every value (mod_python's table takes str only)."""

    def __setitem__(self, key: str, value: str) -> None:
        raise TypeError("table values must be strings")


def three_phases(handlers: types.ModuleType, req: FakeRequest) -> int:
    """access, authen, authz and the fixup, as Apache runs them: the first refusal ends it."""
    for phase in ("accesshandler", "authenhandler", "authzhandler", "fixuphandler"):
        status = getattr(handlers, phase)(req)
        if status != 0:
            return int(status)
    return 0


@pytest.mark.parametrize(
    ("rel", "given", "status"),
    [
        ("open.jpg", {}, 0),  # admitted: still sent
        ("a.jpg", {}, 401),
        ("gone.jpg", {"imageguard.deny_status": "404"}, 404),
        ("a.jpg", {"imageguard.login_url": "/login"}, 302),
        ("page.jpg", {}, 415),
        ("a.jpg", {"imageguard.acl_db": "/nonexistent.db"}, 500),
    ],
)
def test_a_note_that_cannot_be_set_changes_no_answer(
    handlers: types.ModuleType,
    site: tuple[Path, dict[str, str]],
    rel: str,
    given: dict[str, str],
    status: int,
) -> None:
    gatekeeper = importlib.import_module("imageguard.gatekeeper")
    root, options = site
    headers = {"Accept": "text/html"}
    for run in (gatekeeper.accesshandler, lambda req: three_phases(handlers, req)):
        noted = FakeRequest(root, rel, {**options, **given}, headers=headers)
        unnoted = FakeRequest(root, rel, {**options, **given}, headers=headers)
        unnoted.notes = UnwritableNotes()
        assert run(noted) == status and "imageguard" in noted.notes
        assert run(unnoted) == status
        assert unnoted.filename == noted.filename or (status == 0 and sent(unnoted) == sent(noted))
        assert unnoted.logged == noted.logged  # no line about the note: the request's own
        noted.end()
        unnoted.end()
    req = FakeRequest(root, "open.jpg", options)  # a refusal of the fixup's own
    req.notes = UnwritableNotes()
    assert handlers.fixuphandler(req) == 500
    assert "authorization did not run" in req.logged[-1][0]


def test_an_error_keeps_its_status_when_the_viewer_cannot_be_named(
    handlers: types.ModuleType, site: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from imageguard.errors import StoreUnavailable
    from imageguard.policy import decision

    def unreachable(*args: object) -> object:
        raise StoreUnavailable("postgresql://db/acl", "connection refused")

    def unnamed(login: object) -> str:
        raise TypeError("a login source named a user that is not text")

    monkeypatch.setattr(decision, "_authorize", unreachable)  # after the login was read
    monkeypatch.setattr(decision.Login, "log_viewer", property(unnamed))
    root, options = site
    req = FakeRequest(root, "open.jpg", options)
    assert handlers.authzhandler(req) == 503
    assert req.notes["imageguard"] == "- error:store-unavailable"
