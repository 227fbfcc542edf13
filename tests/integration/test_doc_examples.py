"""Every example of docs/phases.md, proven on a real Apache 2.4 + mod_python.

The servers are built by ``docs/examples/serve_examples.py`` (the script readers run
by hand), with all example snippets mounted at their own URL paths; one server per MPM.
The assertions are the outputs docs/phases.md and docs/talk.md claim. The last tests
keep the documentation and the examples from drifting apart.
"""

from __future__ import annotations

import http.client
import importlib.util
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from imageguard_devtools.localserver import (
    ApacheConfig,
    ApacheError,
    LocalApache,
    make_workdir,
    prepare_readable,
)

from .conftest import needs_apache

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
PHASES_MD = ROOT / "docs" / "phases.md"
TALK_MD = ROOT / "docs" / "talk.md"

pytestmark = needs_apache()


def _load_serve_examples() -> ModuleType:
    """Import docs/examples/serve_examples.py (not a package) by its path."""
    spec = importlib.util.spec_from_file_location("serve_examples", EXAMPLES / "serve_examples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


serve_examples = _load_serve_examples()

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

    def wait_for_log(self, *needles: str, timeout: float = 5) -> str:
        """The error log once it holds every needle (the log phase runs late)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.server.error_log_text()
            if all(needle in text for needle in needles) or time.monotonic() > deadline:
                return text
            time.sleep(0.05)


def _start(config: ApacheConfig, docroot: Path) -> LocalApache:
    """Start the examples' server with the test-only additions."""
    config.body += serve_examples.substitute(EXTRA_BODY, docroot)
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


# --------------------------------------------------------------------------- docs in sync


def _code_blocks(markdown: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```[a-z]*\n(.*?)```", markdown, re.S)]


def _example_files() -> list[Path]:
    return sorted(
        path
        for path in EXAMPLES.iterdir()
        if path.suffix in (".py", ".conf", ".htaccess") and path.is_file()
    )


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
    for path in EXAMPLES.glob("*.py"):
        if path.name == "serve_examples.py":
            continue  # the test builds its servers with it
        pattern = rf"^\s*Python\w*Handler\s+{path.stem}(::\w+)?\s*$"
        assert re.search(pattern, configuration, re.M), f"{path.name} is not configured"
    for path in EXAMPLES.glob("*.conf"):
        assert f"# ---- {path.name}" in configuration


def test_talk_uses_the_examples() -> None:
    text = TALK_MD.read_text()
    missing = [p.name for p in EXAMPLES.glob("*.py") if f"docs/examples/{p.name}" not in text]
    assert not missing, f"docs/talk.md does not use {missing}"
