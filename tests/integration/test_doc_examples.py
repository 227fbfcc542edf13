"""Every example of docs/phases.md, proven on a real Apache 2.4 + mod_python.

The servers are built by ``docs/examples/serve_examples.py`` (the script readers run
by hand), with all example snippets mounted at their own URL paths; one server per MPM.
The assertions are the outputs docs/phases.md and docs/talk.md claim. The last tests
keep the documentation and the examples from drifting apart.
"""

from __future__ import annotations

import http.client
import importlib.util
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

from imageguard.apache.apacheconf import SiteConfig, directory_block
from imageguard_devtools.localserver import (
    ApacheConfig,
    ApacheError,
    LocalApache,
    make_workdir,
    prepare_readable,
    prepare_writable,
)

from .conftest import app_block, cli, login_cookie, needs_apache

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
PHASES_MD = ROOT / "docs" / "phases.md"
TALK_MD = ROOT / "docs" / "talk.md"
APPS = Path(__file__).parent / "apps"


def _load_serve_examples() -> ModuleType:
    """Import docs/examples/serve_examples.py (not a package) by its path."""
    spec = importlib.util.spec_from_file_location("serve_examples", EXAMPLES / "serve_examples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


serve_examples = _load_serve_examples()

pytestmark = needs_apache(*serve_examples.MODULES)

# Added to the examples' configuration by the tests only: traps phases.md describes.
EXTRA_BODY = """
# A URL that mod_alias maps: mod_alias answers the translate phase first.
Alias /trace/aliased "@DOCROOT@/trace"

# A Python handler in <Location>: under the DocumentRoot, req.filename stays None and
# files are not found. An Alias maps its URLs before mod_python gets a say.
<Location /located>
    PythonPath "['@EXAMPLES@'] + sys.path"
    PythonFixupHandler swap_file
</Location>
Alias /located-by-alias "@DOCROOT@/located"
# The file of location_trap.conf's <Location>, by a URL Apache maps itself.
Alias /located-trace-mapped "@DOCROOT@/located-trace"
<Location /located-by-alias>
    PythonPath "['@EXAMPLES@'] + sys.path"
    PythonFixupHandler swap_file
</Location>

# Filters are not allowed in .htaccess.
<Directory "@DOCROOT@/filter-ht">
    Require all granted
    AllowOverride All
</Directory>
"""

#: imageguard itself behind mod_cache (the shared-memory store cache_gate.conf sets up):
#: its own block, then the same with the overrides phases.md warns about.
IMAGEGUARD_CACHE_URLS = ("igcache", "igcache-public", "igcache-vary", "igcache-storeprivate")
IMAGEGUARD_CACHE_BODY = """
CacheEnable socache /igcache/
CacheEnable socache /igcache-public/
CacheEnable socache /igcache-vary/
CacheEnable socache /igcache-storeprivate/
<Location /igcache-public/>
    Header set Cache-Control "public, max-age=600"
</Location>
<Location /igcache-vary/>
    Header set Cache-Control "public, max-age=600"
    Header set Vary Accept-Encoding
</Location>
<Location /igcache-storeprivate/>
    CacheStorePrivate On
</Location>
"""

TRACE_OPEN = "post-read-request translate header-parser access fixups content"
TRACE_LOGIN = "post-read-request translate header-parser access authen authz fixups content"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Site:
    server: LocalApache
    docroot: Path
    #: The application's login cookie for each user, made once per server.
    cookies: dict[str, str] | None = None

    def request(
        self, path: str, headers: dict[str, str] | None = None, method: str = "GET"
    ) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        try:
            conn.request(method, path, headers=headers or {})
            response = conn.getresponse()
            body = response.read()
            found = {name.lower(): value for name, value in response.getheaders()}
            return Response(response.status, found, body)
        finally:
            conn.close()

    def file(self, relpath: str) -> bytes:
        return (self.docroot / relpath).read_bytes()

    def cookie(self, user: str) -> str:
        """A logged-in session cookie of the imageguard test application."""
        if self.cookies is None:
            self.cookies = {}
        if user not in self.cookies:

            def get(path: str) -> tuple[int, dict[str, str], bytes]:
                response = self.request(path)
                return response.status, response.headers, response.body

            self.cookies[user] = login_cookie(get, f"/igapp/login?user={user}")
        return self.cookies[user]

    def log_count(self, needle: str) -> int:
        """How many error log lines hold *needle* (the gate logs as it runs)."""
        return sum(needle in line for line in self.server.error_log_text().splitlines())

    def wait_for_log(self, *needles: str, timeout: float = 5) -> str:
        """The error log once it holds every needle (the log phase runs late)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.server.error_log_text()
            if all(needle in text for needle in needles) or time.monotonic() > deadline:
                return text
            time.sleep(0.05)


def _imageguard_behind_cache(workdir: Path) -> str:
    """imageguard's generated block for IMAGEGUARD_CACHE_URLS, mod_cache in front of
    them, and the test application that logs users in; the configuration to add."""
    root = workdir / "igroot"
    root.mkdir()
    Image.new("RGB", (64, 48), "black").save(root / "secret.jpg", "JPEG")
    past = time.time() - serve_examples.FILE_AGE
    os.utime(root / "secret.jpg", (past, past))
    state = workdir / "igstate"
    sessions = state / "sessions"
    sessions.mkdir(parents=True)
    db = state / "acl.db"
    cli(db, "init")
    (workdir / "igrules.txt").write_text("rule secret.jpg user:alice full\n")
    cli(db, "import", str(workdir / "igrules.txt"))
    (workdir / "igapp").symlink_to(APPS)
    blocks = []
    for url in IMAGEGUARD_CACHE_URLS:
        # One <Directory> per URL: each reaches the root through a link of its own.
        if url != "igcache":
            (workdir / url).symlink_to(root)
        site = SiteConfig(
            root=str(root if url == "igcache" else workdir / url),
            url_path=f"/{url}",
            acl_db=str(db),
            session_type="FileSession",
            session_directory=str(sessions),
        )
        blocks.append(directory_block(site))
    prepare_readable(root)
    prepare_writable(state)
    application = app_block(
        "/igapp",
        workdir / "igapp",
        "PythonOption mod_python.session.session_type FileSession",
        f"PythonOption mod_python.file_session.database_directory {sessions}",
    )
    return "\n".join([*blocks, IMAGEGUARD_CACHE_BODY, application])


def _start(config: ApacheConfig, docroot: Path) -> LocalApache:
    """Start the examples' server with the test-only additions."""
    config.body += serve_examples.substitute(EXTRA_BODY, docroot)
    config.body += _imageguard_behind_cache(docroot.parent)
    (docroot / "located").mkdir()
    shutil.copy(docroot / "swap" / "sunset.jpg", docroot / "located" / "sunset.jpg")
    (docroot / "filter-ht").mkdir()
    (docroot / "filter-ht" / "a.txt").write_text("text\n")
    (docroot / "filter-ht" / ".htaccess").write_text("PythonOutputFilter trace_phases TRACE\n")
    prepare_readable(docroot)
    return LocalApache(config).start()


@pytest.fixture(scope="module", params=["event", "prefork"])
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    workdir = make_workdir(f"igdoc-{request.param}-")
    server = None
    try:
        config = serve_examples.make_config(workdir, request.param)
        docroot = workdir / "docroot"
        server = _start(config, docroot)
        yield Site(server, docroot)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _trace_lines(body: bytes) -> dict[str, str]:
    """The trace body as {phase: rest of the line}."""
    lines = body.decode().splitlines()
    return dict(line.split(None, 1) for line in lines)


# --------------------------------------------------------------------------- trace_phases


def test_trace_phase_order_without_login(site: Site) -> None:
    trace_id = uuid.uuid4().hex
    response = site.request("/trace/hello.txt", {"X-Trace-Id": trace_id})
    assert response.status == 200, site.server.error_log_text()[-2000:]
    # Require all granted: no authen/authz. mod_mime answers the type checker first.
    assert response.headers["x-phases"] == TRACE_OPEN
    lines = _trace_lines(response.body)
    assert list(lines) == TRACE_OPEN.split()
    # Before the URL is mapped there is no file name; afterwards there is.
    assert lines["post-read-request"].startswith("filename=None")
    assert lines["translate"].startswith("filename=None")
    hello = str(site.docroot / "trace" / "hello.txt")
    for phase in ("header-parser", "access", "fixups", "content"):
        assert lines[phase] == f"filename={hello} path_info='' user=None"
    # The log phase and the cleanup run after the response, in that order.
    log_line = f"trace_phases {trace_id}: log, status 200, after: {TRACE_OPEN}"
    cleanup_line = f"trace_phases {trace_id}: cleanup"
    text = site.wait_for_log(log_line, cleanup_line)
    assert log_line in text
    assert cleanup_line in text
    assert text.index(log_line) < text.index(cleanup_line)


def test_trace_phase_order_with_login(site: Site) -> None:
    response = site.request("/trace/login/hello.txt")
    assert response.status == 200
    assert response.headers["x-phases"] == TRACE_LOGIN
    lines = _trace_lines(response.body)
    assert lines["authen"].endswith("user=None")
    assert lines["authz"].endswith("user=tracer")
    assert lines["content"].endswith("user=tracer")


def test_trace_shows_path_info(site: Site) -> None:
    response = site.request("/trace/hello.txt/extra/path")
    assert response.status == 200
    lines = _trace_lines(response.body)
    hello = site.docroot / "trace" / "hello.txt"
    assert lines["access"] == f"filename={hello} path_info='/extra/path' user=None"


def test_translate_handler_skipped_for_aliased_url(site: Site) -> None:
    response = site.request("/trace/aliased/hello.txt")
    assert response.status == 200
    assert response.headers["x-phases"] == TRACE_OPEN.replace("translate ", "")


class PythonFirstConfig(ApacheConfig):
    """Loads mod_python before every other module (its hooks then run first)."""

    def render(self) -> str:
        text = super().render()
        block = re.search(r"<IfModule !python_module>\n.*?\n</IfModule>\n", text, re.S)
        assert block is not None
        text = text.replace(block.group(0), "")
        first = text.index("<IfModule !mpm_")
        return text[:first] + block.group(0) + text[first:]


def test_type_checker_and_translate_run_when_mod_python_loads_first() -> None:
    workdir = make_workdir("igdoc-first-")
    try:
        docroot = workdir / "docroot"
        serve_examples.make_docroot(docroot)
        config = PythonFirstConfig(
            workdir=workdir / "apache",
            body=serve_examples.site_body(docroot)
            + serve_examples.substitute('Alias /trace/aliased "@DOCROOT@/trace"\n', docroot),
            python_path=[],
            extra_modules=serve_examples.MODULES,
        )
        with LocalApache(config) as server:
            probe = Site(server, docroot)
            expected = TRACE_OPEN.replace("access", "access type-checker")
            assert probe.request("/trace/hello.txt").headers["x-phases"] == expected
            # mod_alias no longer maps the URL before mod_python's translate handler.
            assert probe.request("/trace/aliased/hello.txt").headers["x-phases"] == expected
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- gate_by_extension


@pytest.mark.parametrize("directory", ["gate", "gate-ht"])
def test_gate_lets_images_through_and_refuses_the_rest(site: Site, directory: str) -> None:
    response = site.request(f"/{directory}/photo.jpg")
    assert response.status == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.body == site.file(f"{directory}/photo.jpg")
    assert site.request(f"/{directory}/notes.txt").status == 403
    # The file Apache mapped is notes.txt, whatever the URL ends with.
    assert site.request(f"/{directory}/notes.txt/x.jpg").status == 403
    # Extra path after an image is refused by the gate, even with AcceptPathInfo On.
    if directory == "gate":
        assert site.request(f"/{directory}/photo.jpg/x.jpg").status == 404


def test_uri_based_gate_leaks_the_text_file(site: Site) -> None:
    assert site.request("/gate-by-uri/notes.txt").status == 403
    response = site.request("/gate-by-uri/notes.txt/x.jpg")
    assert response.status == 200
    assert response.body == site.file("gate-by-uri/notes.txt")


@pytest.mark.parametrize(
    ("path", "headers"),
    [("/gate/photo.jpg", {}), ("/toy/alice.jpg", {"X-Demo-User": "alice"})],
)
def test_gated_files_get_range_head_and_304_from_apache(
    site: Site, path: str, headers: dict[str, str]
) -> None:
    data = site.file(path.lstrip("/"))
    full = site.request(path, headers)
    assert full.status == 200
    assert full.headers["content-length"] == str(len(data))
    assert full.headers["accept-ranges"] == "bytes"
    etag = full.headers["etag"]
    assert "last-modified" in full.headers

    part = site.request(path, {**headers, "Range": "bytes=0-99"})
    assert part.status == 206
    assert part.body == data[:100]
    assert part.headers["content-range"] == f"bytes 0-99/{len(data)}"

    head = site.request(path, headers, method="HEAD")
    assert head.status == 200
    assert head.body == b""
    assert head.headers["content-length"] == str(len(data))

    again = site.request(path, {**headers, "If-None-Match": etag})
    assert again.status == 304
    assert again.body == b""


# --------------------------------------------------------------------------- authen_header


def test_toy_login_needs_the_header(site: Site) -> None:
    response = site.request("/toy/alice.jpg")
    assert response.status == 401
    # Nothing adds a WWW-Authenticate challenge to a 401 from a Python handler.
    assert "www-authenticate" not in response.headers


@pytest.mark.parametrize(
    ("user", "name", "status"),
    [
        ("alice", "alice.jpg", 200),
        ("bob", "alice.jpg", 403),
        ("bob", "team.jpg", 200),
        ("carol", "team.jpg", 403),
        ("carol", "open.jpg", 200),  # not in the table: DECLINED, Require valid-user
    ],
)
def test_toy_authz_table(site: Site, user: str, name: str, status: int) -> None:
    response = site.request(f"/toy/{name}", {"X-Demo-User": user})
    assert response.status == status
    if status == 200:
        assert response.body == site.file(f"toy/{name}")


@pytest.mark.parametrize(
    ("user", "name", "status"),
    [
        ("alice", "team.jpg", 200),  # authz OK: "Require user carol" is never looked at
        ("alice", "open.jpg", 401),  # authz DECLINED: Require user carol refuses alice
        ("carol", "open.jpg", 200),
    ],
)
def test_authz_ok_ends_authorization(site: Site, user: str, name: str, status: int) -> None:
    response = site.request(f"/toy-strict/{name}", {"X-Demo-User": user})
    assert response.status == status


# --------------------------------------------------------------------------- swap_file


def _etag_size(response: Response) -> int:
    """The size part of Apache's default ETag, "<size hex>-<mtime hex>".

    Apache marks it weak (W/) while the file is less than a second old.
    """
    etag = response.headers["etag"].removeprefix("W/").strip('"')
    return int(etag.split("-")[0], 16)


def test_swap_serves_the_whole_placeholder(site: Site) -> None:
    placeholder = site.file("swap/placeholder.jpg")
    response = site.request("/swap/draft-sunset.jpg")
    assert response.status == 200
    assert response.headers["content-length"] == str(len(placeholder))
    assert response.body == placeholder
    assert _etag_size(response) == len(placeholder)
    # Files that are not drafts are served as they are.
    assert site.request("/swap/sunset.jpg").body == site.file("swap/sunset.jpg")


def test_swap_without_finfo_cuts_the_file_at_the_old_size(site: Site) -> None:
    placeholder = site.file("swap-no-finfo/placeholder.jpg")
    draft = site.file("swap-no-finfo/draft-sunset.jpg")
    assert len(draft) < len(placeholder)
    response = site.request("/swap-no-finfo/draft-sunset.jpg")
    assert response.status == 200
    assert response.headers["content-length"] == str(len(draft))
    assert response.body == placeholder[: len(draft)]
    assert _etag_size(response) == len(draft)  # the cache validator is the draft's


def test_swap_without_finfo_to_a_smaller_file_sends_nothing(site: Site) -> None:
    placeholder = site.file("swap-no-finfo/placeholder.jpg")
    assert len(site.file("swap-no-finfo/draft-poster.jpg")) > len(placeholder)
    # Usually not even a status line arrives (http.client: RemoteDisconnected); at best
    # the headers promise the draft's size and the body stops short (IncompleteRead).
    # Either way the client never gets a usable response.
    try:
        response = site.request("/swap-no-finfo/draft-poster.jpg")
    except (ConnectionError, http.client.HTTPException):
        pass
    else:
        pytest.fail(f"a usable response arrived: {response.status} {response.headers}")
    # ... while the access log records a 200 with the draft's full size.
    size = len(site.file("swap-no-finfo/draft-poster.jpg"))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        logged = [line for line in site.server.access_log_lines() if "/draft-poster.jpg " in line]
        if logged:
            break
        time.sleep(0.05)
    assert logged and f'" 200 {size} ' in logged[-1]


# --------------------------------------------------------------------------- traps


def test_python_handler_in_location_leaves_filename_empty(site: Site) -> None:
    # The fixup handler of /swap, configured in <Location> instead of <Directory>.
    assert site.request("/located/sunset.jpg").status == 404
    response = site.request("/located-by-alias/sunset.jpg")
    assert response.status == 200
    assert response.body == site.file("located/sunset.jpg")


def test_filter_directive_is_refused_in_htaccess(site: Site) -> None:
    assert site.request("/filter-ht/a.txt").status == 500
    assert "PythonOutputFilter not allowed here" in site.wait_for_log("not allowed here")


@pytest.mark.parametrize("directive", ["PythonPostReadRequestHandler", "PythonTransHandler"])
def test_server_wide_directives_refused_in_directory(directive: str) -> None:
    workdir = make_workdir("igdoc-ctx-")
    try:
        body = f'<Directory "{workdir}">\n    {directive} trace_phases\n</Directory>\n'
        server = LocalApache(ApacheConfig(workdir=workdir / "apache", body=body, python_path=[]))
        server.write_config()
        with pytest.raises(ApacheError, match=f"{directive} not allowed in <Directory> context"):
            server.config_test()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- map to storage


def test_location_skips_the_mapping_and_every_directory_section(site: Site) -> None:
    """location_trap.conf: no file name in any phase, and the directory's
    "Require all denied" never applies."""
    response = site.request("/located-trace/hello.txt")
    assert response.status == 200
    assert response.headers["x-phases"] == "header-parser access fixups content"
    lines = _trace_lines(response.body)
    assert set(lines.values()) == {"filename=None path_info=None user=None"}
    # Apache's own mapping of the same file: its directory refuses it.
    assert site.request("/located-trace-mapped/hello.txt").status == 403


# --------------------------------------------------------------------------- env_gate


NOTES_ENVGATE = b"envgate notes: for alice only\n"
NOTES_NOFIXUP = b"envgate-nofixup notes: for alice only\n"
NOTES_NOHANDLER = b"envgate-nohandler notes: nobody\n"
SSI_ERROR = b"[an error occurred while processing this directive]"
ALICE = {"X-Demo-User": "alice"}


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/envgate/open.jpg", {}, 200),
        ("/envgate/secret.jpg", ALICE, 200),
        ("/envgate/secret.jpg", {"X-Demo-User": "bob"}, 403),
        ("/envgate/secret.jpg", {}, 403),
        ("/envgate/other.jpg", ALICE, 403),  # in no list: nobody
        ("/envgate-nohandler/notes.txt", ALICE, 403),  # no handler: Require env refuses
    ],
)
def test_env_gate_marks_what_it_admits(
    site: Site, path: str, headers: dict[str, str], status: int
) -> None:
    response = site.request(path, headers)
    assert response.status == status
    if status == 200:
        assert response.body == site.file(path.lstrip("/"))
        assert response.headers["cache-control"] == "private"
        assert response.headers["vary"] == "X-Demo-User"
    else:
        assert not response.body.startswith(b"\xff\xd8")  # no image, not even the secret


def test_error_document_in_the_same_directory_skips_the_access_phase(site: Site) -> None:
    """ErrorDocument 403 /envgate-nofixup/secret.jpg, in that directory: the redirect
    inherits the refused request's configuration, and Apache runs no access check."""
    before = site.log_count("env_gate: /envgate-nofixup/secret.jpg")
    response = site.request("/envgate-nofixup/other.jpg")
    assert response.status == 403
    assert response.body == site.file("envgate-nofixup/secret.jpg")  # the secret leaks
    assert site.log_count("env_gate: /envgate-nofixup/secret.jpg") == before  # gate not asked
    # With the fixup line, the redirect is refused too, and Apache says so.
    fixed = site.request("/envgate/other.jpg")
    assert fixed.status == 403
    assert b"Additionally, a 403 Forbidden" in fixed.body
    assert "env_gate: fixup refused /envgate/secret.jpg" in site.wait_for_log("fixup refused")


def test_error_document_from_another_directory_runs_the_access_phase(site: Site) -> None:
    """ErrorDocument 404 /envgate/secret.jpg in envgate-pages: the gate runs for the
    internal redirect, which has req.prev."""
    anonymous = site.request("/envgate-pages/missing.html")
    assert anonymous.status == 404
    assert not anonymous.body.startswith(b"\xff\xd8")
    alice = site.request("/envgate-pages/missing.html", ALICE)
    assert alice.status == 404  # the error page keeps the original status
    assert alice.body == site.file("envgate/secret.jpg")
    line = "env_gate: /envgate/secret.jpg main=- prev=/envgate-pages/missing.html"
    assert line + " DEMO_ADMITTED=- viewer=alice -> admitted" in site.wait_for_log(line)


def test_directory_index_elsewhere_is_a_checked_subrequest(site: Site) -> None:
    """DirectoryIndex /envgate/secret.jpg in envgate-pages: mod_dir's subrequest goes
    through the gate (req.main is the request for the folder)."""
    assert site.request("/envgate-pages/").status == 403
    alice = site.request("/envgate-pages/", ALICE)
    assert alice.status == 200
    assert alice.body == site.file("envgate/secret.jpg")
    line = "env_gate: /envgate/secret.jpg main=/envgate-pages/ prev=-"
    assert line + " DEMO_ADMITTED=- viewer=alice -> admitted" in site.wait_for_log(line)


def test_a_folder_is_refused_before_any_listing(site: Site) -> None:
    """Options +Indexes in envgate: the folder itself is a request the gate refuses, so
    mod_autoindex never lists it (and its ErrorDocument is refused by the fixup)."""
    response = site.request("/envgate/", ALICE)
    assert response.status == 403
    assert b"secret.jpg" not in response.body and b"notes.txt" not in response.body
    assert "env_gate: /envgate/ main=- prev=- DEMO_ADMITTED=- viewer=alice -> refused" in (
        site.wait_for_log("env_gate: /envgate/ ")
    )


@pytest.mark.parametrize("viewer", [{}, ALICE])
def test_includes_from_another_directory_are_checked(site: Site, viewer: dict[str, str]) -> None:
    """envgate-pages/page.shtml: its subrequests have another configuration, so their
    own access phase runs; the page's environment has no DEMO_ADMITTED to pass on."""
    response = site.request("/envgate-pages/page.shtml", viewer)
    assert response.status == 200
    gated = NOTES_ENVGATE if viewer else SSI_ERROR
    assert response.body == (
        b"<p>gated: " + gated + b"</p>\n<p>handler lost: " + SSI_ERROR + b"</p>\n"
    )


def test_includes_from_an_admitted_page(site: Site) -> None:
    """page.shtml, admitted to anyone, includes notes.txt from its own directory (a
    subrequest with the same configuration: no access phase) and a file of the
    directory without its handler line (the subrequest inherits DEMO_ADMITTED)."""
    with_fixup = site.request("/envgate/page.shtml")
    assert with_fixup.status == 200
    same = b"<p>same folder: " + SSI_ERROR + b"</p>\n"  # the fixup found no note of its own
    lost = b"<p>handler lost: " + NOTES_NOHANDLER + b"</p>\n"  # Require env passed: inherited
    assert with_fixup.body == same + lost
    without_fixup = site.request("/envgate-nofixup/page.shtml")
    assert without_fixup.body.startswith(b"<p>same folder: " + NOTES_NOFIXUP)  # leaked


# --------------------------------------------------------------------------- cache_gate


def test_mod_cache_serves_a_stored_response_without_asking_the_gate(site: Site) -> None:
    # No query string: for one, mod_cache would not guess a lifetime from Last-Modified.
    url = "/cache-plain/secret.jpg"
    secret = site.file("cache-plain/secret.jpg")
    first = site.request(url, ALICE)
    assert first.status == 200
    assert first.headers["x-cache"].startswith("MISS")
    asked = site.log_count("env_gate: /cache-plain/secret.jpg")
    anonymous = site.request(url)
    assert anonymous.status == 200  # Require env DEMO_ADMITTED was never evaluated
    assert anonymous.headers["x-cache"].startswith("HIT")
    assert anonymous.body == secret
    assert site.log_count("env_gate: /cache-plain/secret.jpg") == asked  # gate not asked


def test_mod_cache_does_not_store_a_private_response(site: Site) -> None:
    url = "/cache-private/secret.jpg"
    for _ in range(2):
        response = site.request(url, ALICE)
        assert response.status == 200
        assert response.headers["x-cache"].startswith("MISS")
    assert site.request(url).status == 403


def test_cache_store_private_serves_alice_without_the_gate_but_not_others(site: Site) -> None:
    url = "/cache-storeprivate/secret.jpg"
    assert site.request(url, ALICE).headers["x-cache"].startswith("MISS")
    asked = site.log_count("env_gate: /cache-storeprivate/secret.jpg")
    again = site.request(url, ALICE)
    assert again.headers["x-cache"].startswith("HIT")
    assert site.log_count("env_gate: /cache-storeprivate/secret.jpg") == asked
    # Vary: X-Demo-User: another viewer's request does not match what was stored.
    assert site.request(url).status == 403
    assert site.request(url, {"X-Demo-User": "bob"}).status == 403


@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_mod_cache_as_a_normal_handler_runs_after_the_gate(mpm: str) -> None:
    """CacheQuickHandler Off (server-wide): a stored response is only sent after the
    access phase. CacheIgnoreCacheControl On (server-wide) concerns the client's
    Cache-Control, and a private response is still not stored."""
    workdir = make_workdir(f"igdoc-nq-{mpm}-")
    try:
        config = serve_examples.make_config(workdir, mpm)
        config.body += "CacheQuickHandler Off\nCacheIgnoreCacheControl On\n"
        with LocalApache(config) as server:
            probe = Site(server, workdir / "docroot")
            url = "/cache-plain/secret.jpg"
            assert probe.request(url, ALICE).headers["x-cache"].startswith("MISS")
            again = probe.request(url, ALICE)
            assert again.headers["x-cache"].startswith("HIT")
            assert probe.log_count("env_gate: /cache-plain/secret.jpg") == 2  # asked twice
            assert probe.request(url).status == 403
            private = "/cache-private/secret.jpg"
            for _ in range(2):
                assert probe.request(private, ALICE).headers["x-cache"].startswith("MISS")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# ------------------------------------------------------------ imageguard behind mod_cache


def test_imageguard_responses_are_not_stored(site: Site) -> None:
    alice = site.cookie("alice")
    for _ in range(2):
        response = site.request("/igcache/secret.jpg", {"Cookie": alice})
        assert response.status == 200
        assert response.headers["cache-control"] == "private, max-age=0"
        assert "Cookie" in response.headers["vary"]
        assert response.headers["x-cache"].startswith("MISS")
    assert site.request("/igcache/secret.jpg").status == 401


def test_imageguard_made_public_is_stored_per_cookie(site: Site) -> None:
    """Header set Cache-Control public: mod_cache stores the image, and serves alice's
    next request without asking imageguard; Vary: Cookie keeps everyone else out."""
    alice = site.cookie("alice")
    assert site.request("/igcache-public/secret.jpg", {"Cookie": alice}).status == 200
    again = site.request("/igcache-public/secret.jpg", {"Cookie": alice})
    assert again.headers["x-cache"].startswith("HIT")
    assert site.request("/igcache-public/secret.jpg").status == 401
    bob = site.request("/igcache-public/secret.jpg", {"Cookie": site.cookie("bob")})
    assert bob.status == 403


def test_imageguard_made_public_without_vary_leaks(site: Site) -> None:
    """The same, plus Header set Vary Accept-Encoding: anyone gets alice's image."""
    alice = site.cookie("alice")
    secret = site.request("/igcache-vary/secret.jpg", {"Cookie": alice})
    assert secret.status == 200
    anonymous = site.request("/igcache-vary/secret.jpg")
    assert anonymous.status == 200
    assert anonymous.headers["x-cache"].startswith("HIT")
    assert anonymous.body == secret.body


def test_imageguard_stored_private_is_never_fresh(site: Site) -> None:
    """CacheStorePrivate On: stored, but max-age=0 sends every request through the
    phases again."""
    alice = site.cookie("alice")
    assert site.request("/igcache-storeprivate/secret.jpg", {"Cookie": alice}).status == 200
    again = site.request("/igcache-storeprivate/secret.jpg", {"Cookie": alice})
    assert again.status == 200
    assert again.headers["x-cache"].startswith("REVALIDATE")  # stale at once: asked again
    assert site.request("/igcache-storeprivate/secret.jpg").status == 401


# --------------------------------------------------------------------------- docs in sync


def _code_blocks(markdown: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```[a-z]*\n(.*?)```", markdown, re.S)]


def _example_files() -> list[Path]:
    """docs/phases.md's example files, and the script that serves them."""
    names = [*serve_examples.PHASES_EXAMPLES, "serve_examples.py"]
    return sorted(EXAMPLES / name for name in names)


def test_the_phases_examples_exist() -> None:
    assert all(path.is_file() for path in _example_files())


def test_every_example_file_is_referenced_in_phases_md() -> None:
    text = PHASES_MD.read_text()
    missing = [path.name for path in _example_files() if f"examples/{path.name}" not in text]
    assert not missing, f"docs/phases.md does not mention {missing}"


def test_handler_modules_and_snippets_are_shown_verbatim_in_phases_md() -> None:
    blocks = _code_blocks(PHASES_MD.read_text())
    shown = [
        path.name
        for path in _example_files()
        if path.name != "serve_examples.py" and path.read_text().strip() in blocks
    ]
    expected = [path.name for path in _example_files() if path.name != "serve_examples.py"]
    assert shown == expected


def test_every_handler_module_is_used_by_the_test_servers() -> None:
    """Each module is named by a Python*Handler line the servers above load."""
    workdir = make_workdir("igdoc-sync-")
    try:
        docroot = workdir / "docroot"
        serve_examples.make_docroot(docroot)
        configuration = (
            serve_examples.site_body(docroot) + (docroot / "gate-ht" / ".htaccess").read_text()
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for path in _example_files():
        if path.suffix != ".py" or path.name == "serve_examples.py":
            continue  # the test builds its servers with serve_examples.py
        pattern = rf"^\s*Python\w*Handler\s+{path.stem}(::\w+)?\s*$"
        assert re.search(pattern, configuration, re.M), f"{path.name} is not configured"
    for path in _example_files():
        if path.suffix == ".conf":
            assert f"# ---- {path.name}" in configuration


#: Example modules only docs/phases.md uses (its sections on Require env, subrequests
#: and mod_cache); the talk need not show them.
PHASES_ONLY = {"env_gate.py"}


def test_talk_uses_the_examples() -> None:
    text = TALK_MD.read_text()
    missing = [
        p.name
        for p in EXAMPLES.glob("*.py")
        if p.name not in PHASES_ONLY and f"docs/examples/{p.name}" not in text
    ]
    assert not missing, f"docs/talk.md does not use {missing}"


#: The slides the guide docs/talk.md goes with; their asides show the guide's commands.
TALK_DECK = ROOT / "docs" / "talk" / "deck.md"


@dataclass(frozen=True)
class TalkCommand:
    line: str
    path: str
    headers: dict[str, str]
    method: str
    expected: str  # a status ("000": no answer at all) or the body's text


def _talk_commands() -> list[TalkCommand]:
    """Every ``curl ... $E/path ...  # expected`` line of the speaker's guide."""
    commands = []
    for line in TALK_MD.read_text().split("\n"):
        found = re.match(r"\s*curl (.*?)\$E(/\S*)(.*?)#\s*(.+?)\s*$", line)
        if not found:
            continue
        options = found.group(1) + found.group(3)
        headers = dict(h.split(": ", 1) for h in re.findall(r"-H '([^']+)'", options))
        method = "POST" if "-X POST" in options else "GET"
        commands.append(TalkCommand(line, found.group(2), headers, method, found.group(4)))
    return commands


def test_the_talks_commands_answer_as_the_guide_says(site: Site) -> None:
    """The asides of the talk, run as the guide writes them: status or body, and the
    X-Phases line the guide and the slides show."""
    commands = _talk_commands()
    assert len(commands) >= 8
    for command in commands:
        status = re.match(r"\d{3}\b", command.expected)
        if status and status.group(0) == "000":  # curl's "no status line came"
            with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
                site.request(command.path, command.headers, command.method)
            continue
        response = site.request(command.path, command.headers, command.method)
        if status:
            assert response.status == int(status.group(0)), command.line
        else:
            assert "-o /dev/null" not in command.line, command.line
            assert response.body.decode().strip() == command.expected, command.line
    phases = site.request("/trace/login/hello.txt").headers["x-phases"]
    assert phases == TRACE_LOGIN
    for document in (TALK_MD, TALK_DECK):
        shown = re.findall(r"X-Phases: ([a-z][a-z -]*[a-z])", document.read_text())
        assert shown, f"{document.name} shows no X-Phases line"
        assert set(shown) == {phases}, document.name
