"""Configuration mistakes around the blocks ``imageguard apache-conf`` writes: the
denied image stays denied, in both configurations, under both MPMs.

Each case is the generated block (one-phase or three-phase) with one mistake made
after it, the way a later edit of the server configuration would:

* the last handler line removed (``PythonAuthzHandler``, or the gatekeeper's line);
* a later ``<Location>`` or ``<Files *.jpg>`` with ``Require all granted`` (Apache then
  skips authentication and authorization altogether);
* a ``<Location>`` with ``Satisfy Any`` (mod_access_compat): a ``Satisfy All`` in the
  ``<Directory>`` does not override it, and with it a passing access phase skips the
  later ones;
* a ``<Location>`` with both.

In every case the fixup that imageguard's handlers schedule refuses what no handler
admitted (500, one log line naming the likely cause), or repeats a refusal the
configuration overrode. What no request can detect is listed in docs/security.md.
"""

from __future__ import annotations

import shutil
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

from .conftest import MPMS, app_block, make_tree
from .httpfetch import fetch

pytestmark = pytest.mark.apache

MODES = ("one-phase", "three-phase")
LAST_LINE = {
    "one-phase": "PythonAccessHandler imageguard.gatekeeper",
    "three-phase": "PythonAuthzHandler imageguard.handlers",
}
#: mistake -> (what replaces the handler line, what follows the block, what goes
#: inside it); "{url}" is the site's URL path.
MISTAKES: dict[str, tuple[bool, str, str]] = {
    "last handler line removed": (True, "", ""),
    "Location: Require all granted": (
        False,
        "<Location {url}>\n    Require all granted\n</Location>",
        "",
    ),
    "Files *.jpg: Require all granted": (
        False,
        "",
        '<Files "*.jpg">\n        Require all granted\n    </Files>',
    ),
    "Location: Satisfy Any": (False, "<Location {url}>\n    Satisfy Any\n</Location>", ""),
    "Location: Satisfy Any, Require all granted": (
        False,
        "<Location {url}>\n    Satisfy Any\n    Require all granted\n</Location>",
        "",
    ),
    # Apache skips every access check of an internal redirect whose configuration
    # equals its parent's: only the configured PythonFixupHandler line runs for it.
    "ErrorDocument into the root": (
        False,
        "",
        "\n    ".join(
            f"ErrorDocument {status} {{url}}/private/secret.jpg" for status in (401, 403, 404)
        ),
    ),
}


@dataclass
class Server:
    server: LocalApache
    root: Path
    cookie: str

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        return fetch(self.server.port, path, headers={"Cookie": self.cookie})


def url_of(mode: str, mistake: str) -> str:
    slug = "".join(ch if ch.isalnum() else "-" for ch in mistake.lower()).strip("-")
    return f"/{mode}--{slug}"


def mistaken_block(
    workdir: Path, root: Path, sessions: Path, db: Path, mode: str, mistake: str
) -> str:
    url = url_of(mode, mistake)
    linked = workdir / url.lstrip("/")
    linked.symlink_to(root)
    block = directory_block(
        SiteConfig(
            mode=mode,
            root=str(linked),
            url_path=url,
            acl_db=str(db),
            session_type="FileSession",
            session_directory=str(sessions),
        )
    )
    drop_line, after, inside = MISTAKES[mistake]
    if drop_line:
        assert LAST_LINE[mode] in block
        block = block.replace(f"    {LAST_LINE[mode]}\n", "")
    if inside:
        block = block.replace("</Directory>", f"    {inside.format(url=url)}\n</Directory>")
    return block + after.format(url=url) + "\n"


@pytest.fixture(scope="module", params=MPMS)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    tree = make_tree(f"imageguard-mis-{request.param}-")
    workdir, root, sessions, db = tree.workdir, tree.root, tree.sessions, tree.db
    prepare_readable(workdir)
    prepare_writable(workdir / "state")
    blocks = [
        mistaken_block(workdir, root, sessions, db, mode, m) for mode in MODES for m in MISTAKES
    ]
    body = "\n".join(
        [
            f"<Directory {workdir}>\n    Require all granted\n</Directory>",
            *blocks,
            app_block(
                "/app",
                workdir / "app",
                "PythonOption mod_python.session.session_type FileSession",
                f"PythonOption mod_python.file_session.database_directory {sessions}",
            ),
        ]
    )
    apache = LocalApache(
        ApacheConfig(
            workdir=workdir / "apache",
            body=body,
            mpm=request.param,
            extra_modules=("access_compat",),
            python_debug=True,
        )
    )
    try:
        with apache:
            status, headers, _ = fetch(apache.port, "/app/login?user=bob")
            assert status == 200
            cookie = headers["set-cookie"].split(";")[0]
            yield Server(apache, root, cookie)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.parametrize("mistake", list(MISTAKES))
@pytest.mark.parametrize("mode", MODES)
def test_a_denied_image_stays_denied(server: Server, mode: str, mistake: str) -> None:
    url = url_of(mode, mistake)
    secret = (server.root / "private" / "secret.jpg").read_bytes()
    status, _, body = server.get(f"{url}/private/secret.jpg")  # bob may not see it
    print(f"\n{server.server.config.mpm} {mode} {mistake}: denied image {status}")
    assert status in (401, 403, 404, 500), (status, body[:200])
    assert secret not in body and not body.startswith(b"\xff\xd8")
    assert b"Traceback" not in body
    if mistake == "ErrorDocument into the root":
        # The error document is the denied image itself: Apache ran no access check for
        # that internal redirect (its configuration is the request's own), the
        # configured fixup refused it.
        lines = server.server.error_log_text().splitlines()
        assert any(
            "internal redirect: Apache skipped its access checks" in line and url in line
            for line in lines
        ), lines[-4:]
    # Paths the gate refuses stay refused too (the access phase's refusal overridden).
    for path in ("/gate/notes.txt", "/gate/ok.jpg/x.jpg", "/.hidden/x.jpg", "/private/no.jpg"):
        status, _, body = server.get(f"{url}{path}")
        assert status in (403, 404, 500), (path, status)
        assert secret not in body
        assert b"not an image" not in body and not body.startswith(b"\xff\xd8")


@pytest.mark.parametrize("mistake", list(MISTAKES))
@pytest.mark.parametrize("mode", MODES)
def test_an_allowed_image_is_sent_whole_or_refused(server: Server, mode: str, mistake: str) -> None:
    """Where the mistake keeps imageguard from deciding, even what bob may see is refused
    (500, and the log says why): fail closed, loudly."""
    url = url_of(mode, mistake)
    mark = len(server.server.error_log_text())
    status, _, body = server.get(f"{url}/gallery/cat.jpg")
    print(f"\n{server.server.config.mpm} {mode} {mistake}: allowed image {status}")
    if status == 200:
        assert body == (server.root / "gallery" / "cat.jpg").read_bytes()
        return
    assert status in (403, 500)
    log = server.server.error_log_text()[mark:]
    reasons = (
        "no imageguard handler admitted this request",  # the fixup
        "client denied by server configuration",  # Apache's own Require env
    )
    assert any(reason in log for reason in reasons), log


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("one-phase", 403), ("three-phase", 401)],
)
def test_without_the_last_handler_line_a_stranger_is_refused(
    server: Server, mode: str, expected: int
) -> None:
    """What docs/security.md and the talk's deck say of a removed handler line for a
    viewer who is not logged in: one phase, Apache's ``Require env`` (403); three phases,
    the authentication handler still runs and asks for a login (401)."""
    url = url_of(mode, "last handler line removed")
    status, _, body = fetch(server.server.port, f"{url}/gallery/cat.jpg")
    assert status == expected, (status, body[:200])
    assert not body.startswith(b"\xff\xd8")
