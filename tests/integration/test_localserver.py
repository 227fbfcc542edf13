"""Smoke test of imageguard_devtools.localserver against a real Apache 2.4 + mod_python.

One server per MPM (event, prefork) serves a document tree that exercises the facts the
project relies on: Apache's static file handling behind gatekeeping handlers, access
handlers in <Directory> and .htaccess, authen -> authz hand-over of a Python attribute
on the request object, and mod_python.Session (FileSession and DbmSession).
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from imageguard_devtools.localserver import (
    ApacheConfig,
    ApacheError,
    LocalApache,
    default_python_path,
    make_workdir,
    prepare_readable,
    prepare_writable,
    run_user,
)

from .conftest import hello_docroot, needs_apache

pytestmark = needs_apache()

# Served as a static file; 1000 bytes so that ranges are easy to check.
STATIC_BYTES = bytes(range(250)) * 4

HANDLERS = '''
"""Tiny mod_python handlers for the localserver smoke test (runs inside Apache)."""
import os

from mod_python import Session, apache


def access_filter(req):
    """Access phase: forbid files whose name contains "blocked", mark the others."""
    if "blocked" in os.path.basename(req.filename or ""):
        return apache.HTTP_FORBIDDEN
    req.err_headers_out["X-Access-Handler"] = "ran"
    return apache.OK


def authen(req):
    """Authen phase: the user comes from a test header; keep a Python object on req."""
    user = req.headers_in.get("X-Test-User")
    if not user:
        return apache.HTTP_UNAUTHORIZED
    req.user = user
    groups = ("staff",) if user == "bob" else ()
    req.imageguard_identity = (user, groups)
    req.notes["imageguard_user"] = user
    req.notes["imageguard_req_id"] = str(id(req))
    return apache.OK


def authz(req):
    """Authz phase: read back what authen stored, report it, decide on it."""
    identity = getattr(req, "imageguard_identity", None)
    req.err_headers_out["X-Identity-Attr"] = repr(identity)
    req.err_headers_out["X-Identity-Note"] = req.notes.get("imageguard_user", "")
    same = req.notes.get("imageguard_req_id") == str(id(req))
    req.err_headers_out["X-Same-Req-Object"] = str(same)
    if identity is not None and "staff" in identity[1]:
        return apache.OK
    return apache.HTTP_FORBIDDEN


def session_app(req):
    """Content handler: /<dir>/login stores user=alice, /<dir>/whoami reads it back."""
    action = req.uri.rstrip("/").rsplit("/", 1)[-1]
    session = Session.Session(req)
    if action == "login":
        session["user"] = "alice"
        session.save()
    req.content_type = "text/plain"
    req.write(
        "action=%s user=%s new=%s type=%s sid=%s pid=%d\\n"
        % (action, session.get("user"), int(session.is_new()), type(session).__name__,
           session.id(), os.getpid())
    )
    return apache.OK
'''


@dataclass
class Site:
    server: LocalApache
    root: Path
    file_sessions: Path
    dbm_sessions: Path

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> tuple[http.client.HTTPResponse, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        try:
            conn.request(method, path, headers=headers or {})
            response = conn.getresponse()
            return response, response.read()
        finally:
            conn.close()

    def log_tail(self) -> str:
        return "\n--- error.log:\n" + "\n".join(self.server.error_log_text().splitlines()[-30:])


def _build_site(base: Path, mpm: str) -> tuple[ApacheConfig, Path, Path, Path]:
    docs = base / "docs"
    handlers = base / "handlers"
    file_sessions = base / "sessions-file"
    dbm_sessions = base / "sessions-dbm"
    for directory in ("static", "gate-dir", "gate-ht", "auth", "sess-file", "sess-dbm"):
        (docs / directory).mkdir(parents=True)
    handlers.mkdir()
    (handlers / "igsmoke_handlers.py").write_text(HANDLERS)
    (docs / "static" / "data.bin").write_bytes(STATIC_BYTES)
    for directory in ("gate-dir", "gate-ht", "auth"):
        (docs / directory / "open.txt").write_text(f"open file in {directory}\n")
        (docs / directory / "blocked.txt").write_text(f"blocked file in {directory}\n")
    (docs / "gate-ht" / ".htaccess").write_text(
        "PythonAccessHandler igsmoke_handlers::access_filter\n"
    )
    prepare_readable(docs)
    prepare_readable(handlers)
    prepare_writable(file_sessions)
    prepare_writable(dbm_sessions)

    body = textwrap.dedent(
        f"""\
        DocumentRoot "{docs}"
        <Directory "{docs}">
            Require all granted
        </Directory>
        <Directory "{docs}/gate-dir">
            PythonAccessHandler igsmoke_handlers::access_filter
        </Directory>
        <Directory "{docs}/gate-ht">
            AllowOverride All
        </Directory>
        <Directory "{docs}/auth">
            AuthType imageguard
            AuthName x
            Require valid-user
            PythonAuthenHandler igsmoke_handlers::authen
            PythonAuthzHandler igsmoke_handlers::authz
        </Directory>
        <Directory "{docs}/sess-file">
            SetHandler mod_python
            PythonHandler igsmoke_handlers::session_app
            PythonOption mod_python.session.session_type FileSession
            PythonOption mod_python.file_session.database_directory "{file_sessions}"
        </Directory>
        <Directory "{docs}/sess-dbm">
            SetHandler mod_python
            PythonHandler igsmoke_handlers::session_app
            PythonOption mod_python.session.session_type DbmSession
            PythonOption mod_python.dbm_session.database_filename "{dbm_sessions}/sessions"
        </Directory>
        """
    )
    config = ApacheConfig(
        workdir=base / f"apache-{mpm}",
        body=body,
        mpm=mpm,
        python_path=[str(handlers), *default_python_path()],
        python_debug=True,
    )
    return config, docs, file_sessions, dbm_sessions


@pytest.fixture(scope="module", params=["event", "prefork"])
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    base = make_workdir("igsmoke-")
    config, docs, file_sessions, dbm_sessions = _build_site(base, request.param)
    server = LocalApache(config)
    server.start()
    try:
        yield Site(server, docs, file_sessions, dbm_sessions)
    finally:
        server.stop()
        assert server.server_pids() == []
        shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------- 1. static


def test_static_get_head_range_and_etag(site: Site) -> None:
    response, body = site.request("GET", "/static/data.bin")
    assert response.status == 200, site.log_tail()
    assert body == STATIC_BYTES
    etag = response.getheader("ETag")
    assert etag
    assert response.getheader("Accept-Ranges") == "bytes"

    response, body = site.request("HEAD", "/static/data.bin")
    assert response.status == 200
    assert body == b""
    assert response.getheader("Content-Length") == str(len(STATIC_BYTES))

    response, body = site.request("GET", "/static/data.bin", {"Range": "bytes=100-199"})
    assert response.status == 206
    assert response.getheader("Content-Range") == f"bytes 100-199/{len(STATIC_BYTES)}"
    assert body == STATIC_BYTES[100:200]

    response, body = site.request("GET", "/static/data.bin", {"If-None-Match": etag})
    assert response.status == 304
    assert body == b""


# --------------------------------------------------------------------------- 2. access


@pytest.mark.parametrize("directory", ["gate-dir", "gate-ht"])
def test_access_handler_in_directory_and_htaccess(site: Site, directory: str) -> None:
    response, _ = site.request("GET", f"/{directory}/blocked.txt")
    assert response.status == 403, site.log_tail()

    response, body = site.request("GET", f"/{directory}/open.txt")
    assert response.status == 200, site.log_tail()
    assert response.getheader("X-Access-Handler") == "ran"
    assert body == f"open file in {directory}\n".encode()


# --------------------------------------------------------------------------- 3. authn/authz


def test_authen_attribute_reaches_authz(site: Site) -> None:
    response, body = site.request("GET", "/auth/open.txt", {"X-Test-User": "bob"})
    assert response.status == 200, site.log_tail()
    assert body == b"open file in auth\n"
    # The Python attribute set on req in the authen phase is visible in the authz phase:
    # mod_python keeps one request object per request_rec across phases.
    assert response.getheader("X-Identity-Attr") == "('bob', ('staff',))"
    assert response.getheader("X-Identity-Note") == "bob"
    assert response.getheader("X-Same-Req-Object") == "True"
    # %u in the access log is the req.user set by the authen handler.
    assert any(" bob [" in line for line in site.server.wait_for_access_log(" bob ["))

    response, _ = site.request("GET", "/auth/open.txt", {"X-Test-User": "eve"})
    assert response.status == 403
    assert response.getheader("X-Identity-Attr") == "('eve', ())"

    response, _ = site.request("GET", "/auth/open.txt")
    assert response.status == 401
    # A non-Basic AuthType gets no WWW-Authenticate challenge.
    assert response.getheader("WWW-Authenticate") is None


# --------------------------------------------------------------------------- 4. sessions


def _parse(body: bytes) -> dict[str, str]:
    return dict(item.split("=", 1) for item in body.decode().split())


@pytest.mark.parametrize("kind", ["file", "dbm"])
def test_session_login_and_reuse(site: Site, kind: str) -> None:
    response, body = site.request("GET", f"/sess-{kind}/login")
    assert response.status == 200, site.log_tail()
    info = _parse(body)
    assert info["user"] == "alice"
    assert info["type"] == {"file": "FileSession", "dbm": "DbmSession"}[kind]
    cookie = response.getheader("Set-Cookie") or ""
    match = re.match(r"pysid=([0-9a-f]{32});", cookie)
    assert match, cookie
    sid = match.group(1)
    # Without mod_python.session.application_path the cookie path is the directory of
    # the PythonHandler directive relative to DocumentRoot; no HttpOnly/Secure flags.
    assert f"path=/sess-{kind}/" in cookie
    assert sid == info["sid"]

    pids = set()
    for _ in range(6):  # separate connections: under prefork often other processes
        response, body = site.request("GET", f"/sess-{kind}/whoami", {"Cookie": f"pysid={sid}"})
        assert response.status == 200, site.log_tail()
        again = _parse(body)
        assert again["user"] == "alice"
        assert again["new"] == "0"
        assert again["sid"] == sid
        assert response.getheader("Set-Cookie") is None
        pids.add(again["pid"])

    run_uid = os.stat(site.file_sessions).st_uid
    if kind == "file":
        session_file = site.file_sessions / "mp_sess" / sid[:2] / sid
        assert session_file.is_file()
        assert session_file.stat().st_uid == run_uid
    else:
        names = sorted(p.name for p in site.dbm_sessions.iterdir())
        # Recorded for the report: which files the dbm backend created.
        print(f"DbmSession files ({site.server.config.mpm}): {names}")
        assert names
        assert all(name.startswith("sessions") for name in names)


# --------------------------------------------------------------------------- 5. lifecycle


def _processes_with(needle: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle.encode() in (entry / "cmdline").read_bytes():
                    state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                    if state != "Z":
                        found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_servers_start_and_stop_in_sequence_without_leftovers(mpm: str) -> None:
    base = make_workdir("igsmoke-seq-")
    try:
        body = hello_docroot(base)
        for round_ in range(3):
            config = ApacheConfig(workdir=base / f"run{round_}", body=body, mpm=mpm)
            with LocalApache(config) as server:
                assert len(server.server_pids()) >= 2  # master + children
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
                conn.request("GET", "/")
                response = conn.getresponse()
                assert response.status == 200
                assert response.read() == b"hi\n"
                conn.close()
            assert server.server_pids() == []
            assert _processes_with(str(config.conf_path)) == []
            assert not config.pid_file.exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_bad_config_raises_with_apache_output() -> None:
    base = make_workdir("igsmoke-bad-")
    try:
        server = LocalApache(ApacheConfig(workdir=base, body="NoSuchDirective on\n"))
        with pytest.raises(ApacheError, match="NoSuchDirective"):
            server.start()
        assert server.server_pids() == []
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_run_user_matches_privileges() -> None:
    user, group = run_user()
    if os.geteuid() == 0:
        assert (user, group) == ("www-data", "www-data")
    else:
        assert user and group
