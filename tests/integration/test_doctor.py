"""``imageguard doctor`` run for real (the CLI, as an administrator runs it) against a real
Apache, one per MPM, that hosts a correct site and the mistakes it must catch:

* ``/good`` and ``/good3``: the blocks ``imageguard apache-conf`` writes (one phase,
  three phases), and ``/tkt`` the one-phase block with auth_tkt tickets; ``/good`` is
  also served as ``/my pictures ä``, a URL path the doctor has to %-escape;
* ``/ignored``: an ``.htaccess`` gate in a directory with ``AllowOverride None``, which
  Apache never reads; ``/htgate`` the same ``.htaccess`` where Apache reads it;
* ``/nohandler``: the one-phase block without its ``PythonAccessHandler`` line, and
  ``/noauthz`` the three-phase block without its ``PythonAuthzHandler`` line;
* ``/streamed``: a mod_python content handler that checks for a cookie and streams
  the file itself, the design imageguard exists to avoid.

The blocks are at server level, as ``apache-conf --install`` puts them, and every
request goes to a ``<VirtualHost>``: its ``Alias`` and ``<Directory>`` sections come
from the server's.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from imageguard.apache.apacheconf import SiteConfig, directory_block, htaccess
from imageguard_devtools.localserver import (
    ApacheConfig,
    LocalApache,
    prepare_readable,
    prepare_writable,
)

from .conftest import MPMS, SECRET, app_block, login_cookie, make_tree
from .httpfetch import fetch

pytestmark = pytest.mark.apache

IMAGE = "gallery/cat.jpg"  # rules: any logged-in viewer sees it in full
#: A URL path with a space and a letter that is not ASCII (an Alias of the good site).
SPACED = "/my pictures \u00e4"
DENIED = "private/secret.jpg"  # rules: alice only

STREAMER = '''\
import os
from mod_python import apache


def handler(req):
    """A gate written as a content handler: a cookie is enough, and it sends the bytes."""
    if "pysid=" not in (req.headers_in.get("Cookie") or ""):
        return apache.HTTP_FORBIDDEN
    if not os.path.isfile(req.filename):
        return apache.HTTP_NOT_FOUND
    req.content_type = "image/jpeg"
    with open(req.filename, "rb") as image:
        req.write(image.read())
    return apache.OK
'''


@dataclass
class Server:
    server: LocalApache
    workdir: Path
    confs: Path
    secrets: Path
    cookie: str

    def url(self, site: str) -> str:
        return self.server.url(f"/{site}/")


def block_without(site: SiteConfig, line: str) -> str:
    block = directory_block(site)
    assert f"    {line}\n" in block
    return block.replace(f"    {line}\n", "")


@pytest.fixture(scope="module", params=MPMS)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    tree = make_tree(f"imageguard-doctor-{request.param}-")
    workdir, root, state, sessions, db = tree.workdir, tree.root, tree.state, tree.sessions, tree.db
    secrets = state / "secrets"
    secrets.write_text(SECRET + "\n")
    streamer = workdir / "streamer"
    streamer.mkdir()
    (streamer / "streamer.py").write_text(STREAMER)
    docroot = workdir / "docroot"
    docroot.mkdir()
    (docroot / "index.html").write_text("doctor.test\n")
    confs = workdir / "confs"
    confs.mkdir()

    def site(name: str, **settings: object) -> SiteConfig:
        (workdir / name).symlink_to(root)
        fields: dict[str, object] = {
            "root": str(workdir / name),
            "url_path": f"/{name}",
            "acl_db": str(db),
            "session_type": "FileSession",
            "session_directory": str(sessions),
            **settings,
        }
        return SiteConfig(**fields)  # type: ignore[arg-type]

    blocks = {
        "good": directory_block(site("good", login_url="/app/login")),
        "good3": directory_block(site("good3", mode="three-phase")),
        "tkt": directory_block(
            site(
                "tkt", session_source="auth_tkt", tkt_secret_file=str(secrets), tkt_digest="sha512"
            )
        ),
        "nohandler": block_without(site("nohandler"), "PythonAccessHandler imageguard.gatekeeper"),
        "noauthz": block_without(
            site("noauthz", mode="three-phase"), "PythonAuthzHandler imageguard.handlers"
        ),
    }
    for name, block in blocks.items():
        (confs / f"{name}.conf").write_text(block)
    gated = {}
    for name, override in (("ignored", "None"), ("htgate", "All")):
        directory = workdir / name
        (directory / "gallery").mkdir(parents=True)
        (directory / "private").mkdir()
        shutil.copy(root / IMAGE, directory / IMAGE)
        shutil.copy(root / DENIED, directory / DENIED)
        (directory / ".htaccess").write_text(htaccess(root=str(directory)))
        gated[name] = (
            f"Alias /{name} {directory}\n<Directory {directory}>\n"
            f"    AllowOverride {override}\n    Require all granted\n</Directory>"
        )
    prepare_readable(workdir)
    prepare_writable(state)
    secrets.chmod(0o640)
    body = "\n".join(
        [
            *blocks.values(),
            # The good site again, under a URL path that must be %-escaped to be asked for.
            f'Alias "{SPACED}" "{workdir / "good"}"',
            *gated.values(),
            f"Alias /streamed {root}\n<Directory {root}>\n    Require all granted\n"
            f"    SetHandler mod_python\n    PythonInterpreter streamer\n"
            f"    PythonPath \"['{streamer}'] + sys.path\"\n    PythonHandler streamer\n"
            "</Directory>",
            app_block(
                "/app",
                workdir / "app",
                "PythonOption mod_python.session.session_type FileSession",
                f"PythonOption mod_python.file_session.database_directory {sessions}",
            ),
            # Every request is answered by this host; the sections above are the server's.
            f"<VirtualHost *:*>\n    ServerName doctor.test\n    DocumentRoot {docroot}\n"
            f"</VirtualHost>\n<Directory {docroot}>\n    Require all granted\n</Directory>",
        ]
    )
    apache = LocalApache(
        ApacheConfig(workdir=workdir / "apache", body=body, mpm=request.param, python_debug=True)
    )
    try:
        with apache:
            assert fetch(apache.port, "/index.html")[2] == b"doctor.test\n"  # the host answers
            cookie = login_cookie(lambda path: fetch(apache.port, path), "/app/login?user=bob")
            yield Server(apache, workdir, confs, secrets, cookie)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def doctor(*args: str) -> tuple[int, list[str], str]:
    """Run ``imageguard doctor``; (exit status, its lines, its standard error)."""
    done = subprocess.run(
        [sys.executable, "-m", "imageguard.cli", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in done.stdout + done.stderr
    return done.returncode, done.stdout.splitlines(), done.stderr


def verdicts(lines: list[str]) -> dict[str, list[tuple[str, str]]]:
    """Each check's (verdict, reason) pairs, by check name."""
    found: dict[str, list[tuple[str, str]]] = {}
    for line in lines:
        matched = re.match(r"(PASS|WARN|FAIL)  ([a-z-]+): (.*)$", line)
        if matched:
            found.setdefault(matched.group(2), []).append((matched.group(1), matched.group(3)))
    return found


def only(found: dict[str, list[tuple[str, str]]], check: str) -> tuple[str, str]:
    assert len(found[check]) == 1, found[check]
    return found[check][0]


def full_check(server: Server, site: str, *extra: str) -> tuple[int, list[str], str]:
    return doctor(server.url(site), "--image", IMAGE, "--denied", DENIED, *extra)


@pytest.mark.parametrize("site", ["good", "good3"])
def test_a_correct_site_passes_every_check(server: Server, site: str) -> None:
    status, lines, _ = full_check(
        server, site, "--cookie", server.cookie, "--conf", str(server.confs / f"{site}.conf")
    )
    found = verdicts(lines)
    assert status == 0, lines
    assert lines[-1] == "13 checks: 13 passed, 0 warned, 0 failed"
    assert only(found, "canary-name") == (
        "PASS",
        "imageguard-doctor-canary.txt: refused by imageguard's gate (403)",
    )
    assert only(found, "anonymous")[1] == f"{IMAGE} as an <img>: refused by imageguard (401)"
    page = only(found, "anonymous-page")[1]
    if site == "good":  # it sets a login URL
        assert (
            f"refused by redirect (302) to /app/login?back=%2Fgood%2F{IMAGE.replace('/', '%2F')}"
            in page
        )
    assert "the bytes are a JPEG image" in only(found, "viewer")[1]
    assert only(found, "denied")[1] == f"{DENIED}: refused (403) by imageguard"
    assert (
        only(found, "range")[1]
        == f"206, Content-Range: bytes 0-15/{(server.workdir / 'images' / IMAGE).stat().st_size}"
    )
    assert only(found, "not-modified")[1] == "304 Not Modified for the image's own ETag"
    assert only(found, "config")[0] == "PASS"


def test_a_ticket_is_made_from_the_secret_file(server: Server) -> None:
    status, lines, _ = full_check(
        server,
        "tkt",
        "--ticket-secret",
        str(server.secrets),
        "--user",
        "bob",
        "--conf",
        str(server.confs / "tkt.conf"),
    )
    assert status == 0, lines
    assert "a sha512 ticket for bob in cookie auth_tkt" in lines[0]
    assert "FAIL" not in "\n".join(lines) and "WARN" not in "\n".join(lines)


def test_an_htaccess_gate_apache_ignores_fails(server: Server) -> None:
    status, lines, _ = doctor(
        server.url("ignored"),
        "--image",
        IMAGE,
        "--cookie",
        server.cookie,
        "--conf",
        str(server.workdir / "ignored" / ".htaccess"),
    )
    found = verdicts(lines)
    assert status == 1
    for canary in ("canary-name", "canary-path", "canary-hidden"):
        verdict, reason = only(found, canary)
        assert verdict == "FAIL" and "404: Apache looked the name up on disk" in reason
    assert only(found, "anonymous") == (
        "FAIL",
        f"{IMAGE} as an <img>: served without imageguard: the directory is not protected",
    )
    verdict, reason = only(found, "config")
    assert verdict == "FAIL" and reason.startswith(
        f"Apache ignores {server.workdir / 'ignored' / '.htaccess'}: the names its gate refuses "
        "got 404, 404, 404, not its 403"
    )
    assert "AllowOverride other than None" in reason
    assert only(found, "headers")[0] == "FAIL"


def test_an_htaccess_gate_apache_reads_refuses_names_not_viewers(server: Server) -> None:
    status, lines, _ = doctor(
        server.url("htgate"),
        "--image",
        IMAGE,
        "--cookie",
        server.cookie,
        "--conf",
        str(server.workdir / "htgate" / ".htaccess"),
    )
    found = verdicts(lines)
    assert status == 0, lines
    assert only(found, "canary-path")[0] == "PASS"
    verdict, reason = only(found, "anonymous")
    assert verdict == "WARN" and "a gate without logins" in reason
    assert only(found, "config")[0] == "PASS"
    # Without the file, nothing says the site means to serve anyone: that fails.
    status, lines, _ = doctor(server.url("htgate"), "--image", IMAGE)
    assert status == 1
    assert only(verdicts(lines), "anonymous")[0] == "FAIL"


def test_a_block_without_its_handler_line_fails(server: Server) -> None:
    status, lines, _ = full_check(
        server,
        "nohandler",
        "--cookie",
        server.cookie,
        "--conf",
        str(server.confs / "nohandler.conf"),
    )
    found = verdicts(lines)
    assert status == 1
    assert only(found, "canary-name")[1].endswith(
        "refused (403) by Apache itself, not imageguard: its handler did not run (a `Require "
        "env IMAGEGUARD_ADMITTED` without its handler line, or `Require all denied`)"
    )
    assert only(found, "anonymous") == (
        "PASS",
        f"{IMAGE} as an <img>: refused (403), by Apache itself, not imageguard",
    )
    verdict, reason = only(found, "viewer")
    assert verdict == "FAIL" and "403 by Apache itself, not imageguard" in reason
    assert only(found, "config") == (
        "FAIL",
        f"{server.confs / 'nohandler.conf'} has `Require env IMAGEGUARD_ADMITTED` without its "
        "handler line `PythonAccessHandler imageguard.gatekeeper`: Apache refuses every request",
    )


def test_a_three_phase_block_without_its_authz_line_fails(server: Server) -> None:
    status, lines, _ = full_check(
        server, "noauthz", "--cookie", server.cookie, "--conf", str(server.confs / "noauthz.conf")
    )
    found = verdicts(lines)
    assert status == 1
    assert only(found, "canary-name")[0] == "PASS"  # the access phase still runs
    assert only(found, "anonymous")[1] == f"{IMAGE} as an <img>: refused by imageguard (401)"
    verdict, reason = only(found, "viewer")
    assert verdict == "FAIL" and "imageguard refused it with 500" in reason
    assert only(found, "config") == (
        "FAIL",
        f"{server.confs / 'noauthz.conf'} lacks `PythonAuthzHandler imageguard.handlers`: "
        "imageguard's fixup refuses (500) every request its phases did not admit",
    )


def test_a_content_handler_that_streams_fails(server: Server) -> None:
    status, lines, _ = full_check(server, "streamed", "--cookie", server.cookie)
    found = verdicts(lines)
    assert status == 1
    assert only(found, "canary-name")[0] == "FAIL"
    assert only(found, "canary-path") == (
        "FAIL",
        f"{IMAGE}/imageguard-doctor-canary.txt: 200: served; nothing gates this directory",
    )
    assert (
        only(found, "anonymous")[1]
        == f"{IMAGE} as an <img>: refused (403), by Apache itself, not imageguard"
    )
    assert only(found, "viewer")[0] == "PASS"  # it does send the image...
    assert only(found, "denied")[0] == "FAIL"  # ...to anyone with a cookie
    verdict, reason = only(found, "file-handler")
    assert verdict == "FAIL" and "no ETag" in reason and "no `Accept-Ranges: bytes`" in reason
    assert "another handler than Apache's own file handler" in reason
    assert only(found, "range")[0] == "FAIL" and "got 200, not 206" in only(found, "range")[1]
    assert only(found, "not-modified") == ("FAIL", "no ETag to ask `If-None-Match` with")
    assert "no Cache-Control" in only(found, "headers")[1]


def test_a_config_the_server_does_not_run_is_named(server: Server) -> None:
    other = server.confs / "good-404.conf"
    other.write_text(
        (server.confs / "good.conf")
        .read_text()
        .replace(
            "PythonOption imageguard.acl_db",
            "PythonOption imageguard.deny_status 404\n    PythonOption imageguard.acl_db",
        )
    )
    status, lines, _ = full_check(server, "good", "--cookie", server.cookie, "--conf", str(other))
    assert status == 0, lines
    assert only(verdicts(lines), "config") == (
        "WARN",
        f"{other} sets deny_status 404, but the server refused with 403: it runs another "
        "configuration (not reloaded?)",
    )
    # The good site's block given for a directory it does not cover.
    status, lines, _ = doctor(
        server.url("streamed"), "--image", IMAGE, "--conf", str(server.confs / "good.conf")
    )
    wanted = (
        f"the server does not run {server.confs / 'good.conf'}'s block at {server.url('streamed')}"
    )
    assert status == 1
    assert [v for v, reason in verdicts(lines)["config"] if reason.startswith(wanted)] == ["FAIL"]


def test_without_a_viewer_the_viewers_checks_are_warned_about(server: Server) -> None:
    status, lines, _ = doctor(server.url("good"), "--image", IMAGE)
    found = verdicts(lines)
    assert status == 0, lines
    for check in ("viewer", "headers", "denied", "file-handler", "head", "range", "not-modified"):
        assert only(found, check)[0] == "WARN"
    assert lines[-1] == "12 checks: 5 passed, 7 warned, 0 failed"


def test_a_url_and_an_image_name_are_escaped_on_the_way(server: Server) -> None:
    odd = "gallery/zo\u00eb & cat #1?.jpg"
    shutil.copy(server.workdir / "images" / IMAGE, server.workdir / "images" / odd)
    prepare_readable(server.workdir / "images" / "gallery")
    url = server.server.url(SPACED + "/")
    status, lines, _ = doctor(url, "--image", odd, "--denied", DENIED, "--cookie", server.cookie)
    assert status == 0, lines
    assert lines[0].startswith(
        f"imageguard doctor http://127.0.0.1:{server.server.port}/my%20pictures%20%C3%A4/"
    )
    assert lines[-1] == "12 checks: 12 passed, 0 warned, 0 failed", [
        line for line in lines if not line.startswith("PASS")
    ]
