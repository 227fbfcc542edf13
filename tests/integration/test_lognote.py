"""The viewer and the decision in Apache's access log, for real: a server per MPM logs
with docs/examples/access_log.conf (the lines docs/deployment.md shows), and each kind of
request, one-phase and three-phase, leaves the line it should."""

from __future__ import annotations

import re
import shutil
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from imageguard.apache.apacheconf import SiteConfig, directory_block
from imageguard_devtools.localserver import (
    ApacheConfig,
    LocalApache,
    prepare_readable,
    prepare_writable,
)

from .conftest import MPMS, app_block, login_cookie, make_tree
from .httpfetch import fetch

pytestmark = pytest.mark.apache

ROOT = Path(__file__).resolve().parents[2]
LOG_CONF = ROOT / "docs" / "examples" / "access_log.conf"
MODES = ("one-phase", "three-phase")
#: host, identity, user, [time], "request", status, size, "note"
LINE = re.compile(
    r'^\S+ \S+ (?P<user>\S+) \[[^]]+\] "(?P<request>[^"]*)" '
    r'(?P<status>\d{3}) \S+ "(?P<note>[^"]*)"$'
)


@dataclass
class Server:
    server: LocalApache
    log: Path
    cookies: dict[str, str]

    def get(self, path: str, cookie: str = "", accept: str = "image/*") -> int:
        headers = {"Accept": accept, **({"Cookie": cookie} if cookie else {})}
        return fetch(self.server.port, path, headers=headers)[0]

    def logged(self, tag: str, log: Path | None = None) -> re.Match[str]:
        """The line of the request tagged *tag* in the documented log (or *log*); Apache
        writes it after the response, so it may take a moment."""
        log = log or self.log
        deadline = time.monotonic() + 5
        while True:
            lines = log.read_text().splitlines() if log.exists() else []
            found = [line for line in lines if f"tag={tag} " in line]
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert len(found) == 1, (tag, lines[-5:])
        matched = LINE.match(found[0])
        assert matched, found[0]
        return matched


@pytest.fixture(scope="module", params=MPMS)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    tree = make_tree(f"imageguard-lognote-{request.param}-")
    workdir, root, state, sessions, db = tree.workdir, tree.root, tree.state, tree.sessions, tree.db
    cache = state / "cache"
    cache.mkdir()
    errors = workdir / "errors"
    errors.mkdir()
    (errors / "denied.html").write_text("<p>not for you</p>\n")
    blocks = []
    for mode in MODES:
        for name, extra in ((mode, ""), (f"{mode}-errdoc", "ErrorDocument")):
            (workdir / name).symlink_to(root)
            block = directory_block(
                SiteConfig(
                    mode=mode,
                    root=str(workdir / name),
                    url_path=f"/{name}",
                    acl_db=str(db),
                    session_type="FileSession",
                    session_directory=str(sessions),
                    login_url="/app/login",
                    cache_dir=str(cache),
                )
            )
            if extra:  # error pages from outside the root: an internal redirect
                block = block.replace(
                    "</Directory>",
                    "    ErrorDocument 401 /errors/denied.html\n"
                    "    ErrorDocument 403 /errors/denied.html\n</Directory>",
                )
            blocks.append(block)
    prepare_readable(workdir)
    prepare_writable(state)
    logs = workdir / "logs"
    prepare_writable(logs)
    body = "\n".join(
        [
            *blocks,
            f"Alias /errors {errors}\n<Directory {errors}>\n    Require all granted\n</Directory>",
            app_block(
                "/app",
                workdir / "app",
                "PythonOption mod_python.session.session_type FileSession",
                f"PythonOption mod_python.file_session.database_directory {sessions}",
            ),
            # The documented lines, as they are: Debian's envvars define APACHE_LOG_DIR.
            f"Define APACHE_LOG_DIR {logs}",
            f"Include {LOG_CONF}",
            # The same with the final request's notes (%{...}n instead of %<{...}n).
            'LogFormat "%h %l %u %t \\"%r\\" %>s %b \\"%{imageguard}n\\"" final_note',
            f"CustomLog {logs}/final.log final_note",
        ]
    )
    apache = LocalApache(
        ApacheConfig(workdir=workdir / "apache", body=body, mpm=request.param, python_debug=True)
    )
    try:
        with apache:
            cookies = {
                user: login_cookie(
                    lambda path: fetch(apache.port, path),
                    f"/app/login?user={urllib.parse.quote(user, safe='')}",
                )
                for user in ("bob", 'o"brien%')
            }
            yield Server(apache, logs / "images.log", cookies)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_the_documented_lines_are_the_file() -> None:
    text = (ROOT / "docs" / "deployment.md").read_text()
    for line in LOG_CONF.read_text().splitlines():
        if not line.startswith("#"):
            assert line in text, line


@pytest.mark.parametrize("mode", MODES)
def test_each_decision_is_logged_with_its_viewer(server: Server, mode: str) -> None:
    bob = server.cookies["bob"]
    odd = server.cookies['o"brien%']
    cases = [
        # tag, path, cookie, accept, status, %u, note
        ("full", "gallery/cat.jpg", bob, "image/*", 200, "bob", "bob full"),
        ("thumb", "gallery/cat.jpg?v=thumb", bob, "image/*", 200, "bob", "bob thumb"),
        ("acl", "private/secret.jpg", bob, "image/*", 403, "bob", "bob deny:acl"),
        ("anon", "gallery/cat.jpg", "", "image/*", 401, "-", "- deny:login-required"),
        ("page", "gallery/cat.jpg", "", "text/html", 302, "-", "- deny:login-required"),
        ("public", "gallery/public.jpg", "", "image/*", 200, '""', "- full"),
        ("gate", "gate/notes.txt", bob, "image/*", 403, "-", "- deny:gate"),
        ("missing", "gallery/none.jpg", bob, "image/*", 404, "-", "- deny:not-found"),
        ("odd", "gallery/cat.jpg", odd, "image/*", 200, r"o\"brien%", "o%22brien%25 full"),
    ]
    for tag, path, cookie, accept, status, user, note in cases:
        joiner = "&" if "?" in path else "?"
        uri = f"/{mode}/{path}{joiner}tag={mode}-{tag}"
        assert server.get(uri, cookie, accept) == status, tag
        line = server.logged(f"{mode}-{tag}")
        assert (line["status"], line["user"], line["note"]) == (str(status), user, note), tag


@pytest.mark.parametrize("mode", MODES)
def test_an_error_page_keeps_the_decision(server: Server, mode: str) -> None:
    """An ErrorDocument's page is an internal redirect, a request of its own: ``%<``
    reads the note of the request the client made, ``%{imageguard}n`` the page's (none)."""
    bob = server.cookies["bob"]
    for tag, path, cookie, status, note in (
        ("acl", "private/secret.jpg", bob, 403, "bob deny:acl"),
        ("anon", "gallery/cat.jpg", "", 401, "- deny:login-required"),
        ("full", "gallery/cat.jpg", bob, 200, "bob full"),
    ):
        uri = f"/{mode}-errdoc/{path}?tag={mode}-err-{tag}"
        assert server.get(uri, cookie) == status
        line = server.logged(f"{mode}-err-{tag}")
        assert (line["status"], line["note"]) == (str(status), note)
        final = server.logged(f"{mode}-err-{tag}", server.log.with_name("final.log"))
        assert final["note"] == (note if status == 200 else "-")
