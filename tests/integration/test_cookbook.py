"""Every recipe of docs/cookbook.md, proven on a real Apache 2.4 + mod_python.

One server per MPM hosts all eleven recipes (each at its own URL, recipe 11 on two
virtual hosts of its own ports), built by ``docs/examples/cookbook/serve_cookbook.py``,
the script readers run by hand; the data folder (sample files, and the ACL stores the
recipes' ``setup.sh`` make with the real ``imageguard`` command) is made once and
copied for each server. Recipe 8's Pyramid application runs beside it in this process.
The assertions are what docs/cookbook.md says each recipe does; each recipe's
``try.sh`` is run too and its output compared with its ``expected.txt``.

The first tests need no Apache: they keep docs/cookbook.md and the recipe files in
step (every fenced block is a file's text or a contiguous excerpt of one, every recipe
folder is shown) and the generated configuration equal to what ``imageguard
apache-conf`` prints now.
"""

from __future__ import annotations

import html.parser
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest
from PIL import Image
from pyramid.authentication import AuthTicket

from imageguard.identity import sharelinks
from imageguard.identity.secretfile import SecretFile
from imageguard_devtools.localserver import LocalApache, make_workdir

from .conftest import needs_apache
from .httpfetch import Response, fetch

ROOT = Path(__file__).resolve().parents[2]
COOKBOOK = ROOT / "docs" / "examples" / "cookbook"
COOKBOOK_MD = ROOT / "docs" / "cookbook.md"
CLI = [sys.executable, "-m", "imageguard.cli"]
NAVIGATION = {"Accept": "text/html,application/xhtml+xml"}
IMG = {"Accept": "image/avif,image/webp,image/*,*/*;q=0.8"}


def _load_serve_cookbook() -> ModuleType:
    """Import docs/examples/cookbook/serve_cookbook.py (not a package) by its path."""
    path = COOKBOOK / "serve_cookbook.py"
    spec = importlib.util.spec_from_file_location("serve_cookbook", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


serve_cookbook = _load_serve_cookbook()
RECIPES: list[Path] = serve_cookbook.recipes()

_Test = TypeVar("_Test", bound=Callable[..., None])


def on_apache(test: _Test) -> _Test:
    """Mark a test that needs the cookbook's Apache (skipped where a module is missing)."""
    for mark in needs_apache("proxy", "proxy_http", "remoteip"):
        test = mark(test)
    return test


# --------------------------------------------------------------------------- the server


@dataclass
class Cookbook:
    """One started cookbook server and what the tests need to talk to it."""

    server: LocalApache
    ports: Any  # serve_cookbook.Ports (a module loaded by its path)
    data: Path
    mpm: str
    cookies: dict[str, str] = field(default_factory=dict)
    tickets: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.server.port

    def get(
        self,
        path: str,
        headers: dict[str, str] | None = None,
        *,
        method: str = "GET",
        body: str | None = None,
        port: int | None = None,
        source: str | None = None,
    ) -> Response:
        return fetch(
            port or self.port, path, method=method, headers=headers, body=body, source=source
        )

    def post_form(self, path: str, form: dict[str, str], cookie: str = "") -> Response:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if cookie:
            headers["Cookie"] = cookie
        return self.get(path, headers, method="POST", body=urllib.parse.urlencode(form))

    def login(self, user: str) -> str:
        """Log *user* in with recipe 3's application (once per server): a Cookie value."""
        if user not in self.cookies:
            status, headers, body = self.post_form(
                "/myapp/login", {"user": user, "password": f"{user}-secret"}
            )
            assert status == 303, body
            self.cookies[user] = session_cookie(headers)
        return self.cookies[user]

    def as_user(self, user: str, path: str, extra: dict[str, str] | None = None) -> Response:
        return self.get(path, {"Cookie": self.login(user), **IMG, **(extra or {})})

    def cli(self, recipe: str, *args: str) -> subprocess.CompletedProcess[str]:
        """The real ``imageguard`` command on *recipe*'s store."""
        store = self.data / "state" / f"{recipe}.db"
        return subprocess.run(
            [*CLI, "--db", str(store), *args], capture_output=True, text=True, check=True
        )

    def secret(self) -> bytes:
        return SecretFile(str(self.data / "state" / "secrets")).secrets()[0]

    def ticket(self, user: str, ip: str) -> str:
        """An auth_tkt cookie value for *user* bound to *ip*, made by ``imageguard
        ticket`` (once per server: it stays valid for the test's few seconds)."""
        if (user, ip) not in self.tickets:
            secrets = str(self.data / "state" / "secrets")
            made = subprocess.run(
                [*CLI, "ticket", user, "--ip", ip, "--secret-file", secrets],
                capture_output=True,
                text=True,
                check=True,
            )
            self.tickets[user, ip] = made.stdout.strip()
        return self.tickets[user, ip]

    def file(self, relpath: str) -> bytes:
        return (self.data / relpath).read_bytes()

    def error_log_since(self, mark: int, needle: str, timeout: float = 5) -> str:
        """The error log written after *mark* once it holds *needle* (or after *timeout*)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.server.error_log_text()[mark:]
            if needle in text or time.monotonic() > deadline:
                return text
            time.sleep(0.05)


def session_cookie(headers: dict[str, str]) -> str:
    """The ``pysid`` a login response set (the last one, as a browser keeps it)."""
    found = re.findall(r"pysid=([0-9a-f]{32})", headers.get("set-cookie", ""))
    assert found, headers
    return f"pysid={found[-1]}"


def ticket_cookie(headers: dict[str, str]) -> str:
    """The ``auth_tkt`` cookie a Pyramid login set, as the browser sends it back."""
    found = re.search(r"auth_tkt=([^;]+)", headers.get("set-cookie", ""))
    assert found, headers
    return f"auth_tkt={found.group(1)}"


def size_of(body: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(body)) as image:
        return image.size


@pytest.fixture(scope="module")
def template() -> Iterator[Path]:
    """The data folder, made once per module (the setup scripts run the CLI)."""
    workdir = make_workdir("igcb-data-")
    try:
        data = workdir / "data"
        data.mkdir()
        serve_cookbook.make_data(data, serve_cookbook.Ports())
        yield data
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module", params=["event", "prefork"])
def cookbook(request: pytest.FixtureRequest, template: Path) -> Iterator[Cookbook]:
    workdir = make_workdir(f"igcb-{request.param}-")
    server = None
    try:
        ports = serve_cookbook.Ports.pick()
        config = serve_cookbook.make_config(workdir, request.param, ports, template)
        data = workdir / "data"
        with serve_cookbook.TicketApp(data, ports.app):
            server = LocalApache(config).start()
            yield Cookbook(server, ports, data, request.param)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- docs in sync


def _fenced_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```[\w-]*\n(.*?)^```$", markdown, re.S | re.M)


def _recipe_files() -> list[Path]:
    return sorted(path for recipe in RECIPES for path in recipe.iterdir() if path.is_file())


def test_there_are_at_least_eleven_recipes() -> None:
    assert len(RECIPES) >= 11
    headings = re.findall(r"^## (\d+)\. ", COOKBOOK_MD.read_text(), re.M)
    assert [int(n) for n in headings] == list(range(1, len(RECIPES) + 1))


def test_every_fenced_block_is_a_recipe_file_or_an_excerpt_of_one() -> None:
    texts = [path.read_text() for path in _recipe_files()]
    texts.append((COOKBOOK / "serve_cookbook.py").read_text())
    blocks = _fenced_blocks(COOKBOOK_MD.read_text())
    assert len(blocks) > 30
    strays = [block for block in blocks if not any(block in text for text in texts)]
    assert not strays, f"fenced blocks in docs/cookbook.md found in no recipe file: {strays}"


def test_excerpts_are_whole_lines() -> None:
    texts = [path.read_text() for path in _recipe_files()]
    texts.append((COOKBOOK / "serve_cookbook.py").read_text())
    for block in _fenced_blocks(COOKBOOK_MD.read_text()):
        assert any(text.startswith(block) or f"\n{block}" in text for text in texts), block


def test_every_recipe_folder_and_file_is_shown() -> None:
    text = COOKBOOK_MD.read_text()
    blocks = _fenced_blocks(text)
    for recipe in RECIPES:
        assert f"examples/cookbook/{recipe.name}/" in text, f"{recipe.name} is not linked"
        files = [path for path in recipe.iterdir() if path.is_file()]
        assert any(any(block in path.read_text() for block in blocks) for path in files), (
            f"no file of {recipe.name} is shown"
        )
        missing = [path.name for path in files if f"{recipe.name}/{path.name}" not in text]
        assert not missing, f"docs/cookbook.md does not name {recipe.name}'s {missing}"


def test_generated_files_are_what_imageguard_apache_conf_prints_now(tmp_path: Path) -> None:
    data = tmp_path / "data"
    compared = 0
    for recipe in RECIPES:
        for name, text in serve_cookbook.generated(recipe, data).items():
            committed = (recipe / name).read_text()
            filled = serve_cookbook.fill(committed, recipe, data, serve_cookbook.Ports())
            assert filled == text, (
                f"{recipe.name}/{name} differs from its generate.sh's output: "
                "run serve_cookbook.py --regenerate"
            )
            compared += 1
    assert compared >= 11  # ten blocks and one .htaccess


def test_every_imageguard_block_mounted_is_a_generated_one_or_the_split() -> None:
    """No recipe hand-writes imageguard's handlers: they come from the generator (the
    test above), except the split of recipe 2, which the next test checks."""
    for recipe in RECIPES:
        for conf in recipe.glob("*.conf"):
            text = conf.read_text()
            if "imageguard.handlers" in text or "imageguard.gatekeeper" in text:
                assert conf.name == "imageguard.conf" or (
                    f"{recipe.name}/{conf.name}" == "02-split-phases/split.conf"
                ), conf


SPLIT_EDITS = [
    (
        "    AllowOverride None\n",
        "    # The .htaccess of the root may name the access and fixup handlers, nothing\n"
        "    # else: no PythonOption (another ACL store), no PythonPath (other code).\n"
        "    AllowOverride None\n"
        "    AllowOverrideList PythonAccessHandler PythonFixupHandler\n",
    ),
    (
        "    # Phase 1, access: only image files inside the root, only GET and HEAD.\n"
        "    PythonAccessHandler imageguard.handlers\n",
        "    # Phase 1, access: in the root's .htaccess (split.htaccess).\n",
    ),
]


def test_split_is_the_generated_three_phase_block_with_two_edits() -> None:
    """Recipe 2 differs from ``apache-conf --three-phases`` in exactly two places: the
    access handler moves to the .htaccess, which may name handlers and nothing else;
    and its .htaccess is ``apache-conf --htaccess`` without the root option and the
    PythonPath (the server's block sets both, and the .htaccess may set neither)."""
    recipe = COOKBOOK / "02-split-phases"
    edited = (recipe / "imageguard.conf").read_text()
    for old, new in SPLIT_EDITS:
        assert edited.count(old) == 1
        edited = edited.replace(old, new)
    assert (recipe / "split.conf").read_text() == edited
    root_option = "PythonOption imageguard.root @DATA@/02-split-phases/images\n"
    generated_htaccess = (recipe / "imageguard.htaccess").read_text()
    python_path = (
        "# Where imageguard and Pillow are installed (PythonPath replaces sys.path);\n"
        "# without it every request is a 500: No module named 'imageguard'.\n"
        'PythonPath "@PYTHON_PATH@ + sys.path"\n'
    )
    assert generated_htaccess.count(root_option) == generated_htaccess.count(python_path) == 1
    expected = generated_htaccess.replace(root_option, "").replace(python_path, "")
    assert (recipe / "split.htaccess").read_text() == expected


def test_every_handler_module_is_used() -> None:
    """Each Python file of a recipe is a handler the server configuration names, or
    code a test below runs (recipe 5's upload, recipe 8's application)."""
    workdir = make_workdir("igcb-sync-")
    try:
        ports = serve_cookbook.Ports(1, 2, 3, 4)
        configuration = serve_cookbook.site_body(workdir, ports) + "".join(
            path.read_text() for path in COOKBOOK.glob("*/*.htaccess")
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    run_by_tests = {"upload.py", "ticketapp.py"}
    for path in COOKBOOK.glob("*/*.py"):
        if path.name in run_by_tests:
            continue
        pattern = rf"^\s*Python\w*Handler\s+{path.stem}(::\w+)?\s*$"
        assert re.search(pattern, configuration, re.M), f"{path} is not configured"


# --------------------------------------------------------------------------- 1. the gate


GATE_TABLE = {  # path -> the statuses of /posted-gate, /fixed-gate, /ignored-gate
    "photo.jpg": (200, 200, 200),
    "notes.txt": (500, 403, 200),
    "notes.txt/x.jpg": (500, 403, 404),
    "photo.jpg/x.jpg": (404, 403, 404),
}


@on_apache
@pytest.mark.parametrize("path", sorted(GATE_TABLE))
def test_1_the_three_gates(cookbook: Cookbook, path: str) -> None:
    for folder, expected in zip(("posted", "fixed", "ignored"), GATE_TABLE[path]):
        status, _, body = cookbook.get(f"/{folder}-gate/{path}")
        assert status == expected, (folder, path)
        if status == 200:
            assert body == cookbook.file(f"01-extension-gate/{folder}/{path}")


@on_apache
def test_1_posted_handler_returning_none_is_logged(cookbook: Cookbook) -> None:
    mark = len(cookbook.server.error_log_text())
    assert cookbook.get("/posted-gate/notes.txt")[0] == 500
    log = cookbook.error_log_since(mark, "non integer type")
    assert "AssertionError: Handler has returned result or raised SERVER_RETURN" in log
    assert "non integer type" in log


def test_1_a_type_checker_finds_the_posted_bug() -> None:
    """With its ``-> int``, mypy reports the function that can end without a return."""
    gate = COOKBOOK / "01-extension-gate"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "mypy", "--ignore-missing-imports", "--no-incremental"),
            str(gate / "as_posted.py"),
            str(gate / "extension_gate.py"),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, result.stdout
    assert "as_posted.py:15: error: Missing return statement" in errors[0]


# --------------------------------------------------------------------------- 2. the split


@on_apache
def test_2_split_gate_answers_before_any_login(cookbook: Cookbook) -> None:
    assert cookbook.get("/split/notes.txt")[0] == 403  # no login asked for
    assert cookbook.get("/split/harbour.jpg", IMG)[0] == 401
    status, _, body = cookbook.as_user("bob", "/split/harbour.jpg")
    assert status == 200
    assert body == cookbook.file("02-split-phases/images/harbour.jpg")
    status, headers, _ = cookbook.get(
        "/split/harbour.jpg", {"Cookie": cookbook.login("bob")}, method="DELETE"
    )
    assert status == 405
    assert sorted(headers["allow"].split(",")) == ["GET", "HEAD"]  # in either order


@on_apache
def test_2_without_its_htaccess_the_split_fails_closed(cookbook: Cookbook) -> None:
    """The authentication phase runs the gate itself when the access phase did not."""
    htaccess = cookbook.data / "02-split-phases" / "images" / ".htaccess"
    kept = htaccess.read_text()
    htaccess.unlink()
    try:
        assert cookbook.get("/split/notes.txt")[0] == 403
        assert cookbook.get("/split/harbour.jpg", IMG)[0] == 401
        assert cookbook.as_user("bob", "/split/harbour.jpg")[0] == 200
        bob = {"Cookie": cookbook.login("bob")}
        assert cookbook.get("/split/harbour.jpg", bob, method="DELETE")[0] == 405
    finally:
        htaccess.write_text(kept)
        htaccess.chmod(0o644)


@on_apache
def test_2_split_htaccess_may_not_set_options(cookbook: Cookbook) -> None:
    htaccess = cookbook.data / "02-split-phases" / "images" / ".htaccess"
    kept = htaccess.read_text()
    other_store = cookbook.data / "state" / "03-app-session.db"
    htaccess.write_text(kept + f"PythonOption imageguard.acl_db {other_store}\n")
    mark = len(cookbook.server.error_log_text())
    try:
        assert cookbook.as_user("bob", "/split/harbour.jpg")[0] == 500
        assert "PythonOption not allowed here" in cookbook.error_log_since(mark, "not allowed")
    finally:
        htaccess.write_text(kept)
    assert cookbook.as_user("bob", "/split/harbour.jpg")[0] == 200


# --------------------------------------------------------------------------- 3. sessions


@on_apache
def test_3_application_session_opens_the_directory(cookbook: Cookbook) -> None:
    status, headers, _ = cookbook.get("/members/harbour.jpg", IMG)
    assert status == 401
    assert headers["cache-control"] == "private, no-store"
    assert "set-cookie" not in headers  # imageguard never creates a session
    status, headers, _ = cookbook.post_form("/myapp/login", {"user": "bob", "password": "nope"})
    assert status == 403
    cookie = cookbook.login("bob")
    assert cookbook.get("/myapp/", {"Cookie": cookie})[2] == b"logged in as bob\n"
    status, headers, body = cookbook.get("/members/harbour.jpg", {"Cookie": cookie})
    assert status == 200
    assert body == cookbook.file("03-app-session/images/harbour.jpg")
    assert headers["content-type"] == "image/jpeg"
    assert headers["cache-control"] == "private, max-age=0"
    assert headers["vary"] == "Cookie"
    assert headers["x-content-type-options"] == "nosniff"
    assert "set-cookie" not in headers
    lines = cookbook.server.wait_for_access_log('GET /members/harbour.jpg HTTP/1.1" 200')
    assert any(" bob [" in line for line in lines)  # %u: the user imageguard found


@on_apache
def test_3_apache_sends_the_gated_file_with_range_head_and_304(cookbook: Cookbook) -> None:
    cookie = {"Cookie": cookbook.login("bob")}
    data = cookbook.file("03-app-session/images/harbour.jpg")
    status, headers, _ = cookbook.get("/members/harbour.jpg", cookie)
    etag = headers["etag"]
    assert headers["accept-ranges"] == "bytes"
    status, headers, body = cookbook.get("/members/harbour.jpg", {**cookie, "Range": "bytes=0-99"})
    assert (status, body) == (206, data[:100])
    assert headers["content-range"] == f"bytes 0-99/{len(data)}"
    status, headers, body = cookbook.get("/members/harbour.jpg", cookie, method="HEAD")
    assert (status, body, headers["content-length"]) == (200, b"", str(len(data)))
    status, _, body = cookbook.get("/members/harbour.jpg", {**cookie, "If-None-Match": etag})
    assert (status, body) == (304, b"")


@on_apache
def test_3_logout_and_made_up_sessions_are_refused(cookbook: Cookbook) -> None:
    headers = cookbook.post_form("/myapp/login", {"user": "carol", "password": "carol-secret"})[1]
    cookie = session_cookie(headers)
    assert cookbook.get("/members/harbour.jpg", {"Cookie": cookie})[0] == 200
    assert cookbook.post_form("/myapp/logout", {}, cookie)[0] == 303
    assert cookbook.get("/members/harbour.jpg", {"Cookie": cookie})[0] == 401
    made_up = {"Cookie": "pysid=" + "0123456789abcdef" * 2}
    assert cookbook.get("/members/harbour.jpg", made_up)[0] == 401


@on_apache
def test_3_login_gives_a_new_session_id(cookbook: Cookbook) -> None:
    """A session id planted before the login is not the one that logs in."""
    status, headers, _ = cookbook.get("/myapp/")
    planted = session_cookie(headers)
    status, headers, _ = cookbook.post_form(
        "/myapp/login", {"user": "bob", "password": "bob-secret"}, planted
    )
    assert status == 303
    assert session_cookie(headers) != planted
    assert cookbook.get("/members/harbour.jpg", {"Cookie": planted})[0] == 401


# --------------------------------------------------------------------------- 4. per user

REPORTS = {  # user -> the statuses of plan, q3, salaries
    "alice": (200, 200, 200),
    "bob": (403, 200, 403),
    "carol": (200, 200, 403),
}


@on_apache
@pytest.mark.parametrize("user", sorted(REPORTS))
def test_4_per_user_rules(cookbook: Cookbook, user: str) -> None:
    for report, expected in zip(("plan", "q3", "salaries"), REPORTS[user]):
        status, _, body = cookbook.as_user(user, f"/albums/reports/{report}.jpg")
        assert status == expected, (user, report)
        if status == 200:
            assert body == cookbook.file(f"04-per-user/images/reports/{report}.jpg")
    assert cookbook.get("/albums/reports/plan.jpg", IMG)[0] == 401


@on_apache
def test_4_a_revoked_rule_takes_effect_at_the_next_request(cookbook: Cookbook) -> None:
    assert cookbook.as_user("bob", "/albums/reports/q3.jpg")[0] == 200
    cookbook.cli("04-per-user", "revoke", "reports/q3.jpg", "user:bob")
    try:
        assert cookbook.as_user("bob", "/albums/reports/q3.jpg")[0] == 403
    finally:
        cookbook.cli("04-per-user", "grant", "reports/q3.jpg", "user:bob", "full")
    assert cookbook.as_user("bob", "/albums/reports/q3.jpg")[0] == 200


# --------------------------------------------------------------------------- 5. owners


@on_apache
@pytest.mark.parametrize(
    ("user", "path", "expected"),
    [
        ("alice", "users/alice/cat.jpg", 200),
        ("alice", "users/bob/boat.jpg", 403),
        ("alice", "users/alice/boat.jpg", 403),  # a link to bob's picture: bob's rules
        ("bob", "users/bob/boat.jpg", 200),
        ("bob", "users/alice/cat.jpg", 403),
        ("bob", "users/alice/boat.jpg", 200),
        ("carol", "users/alice/cat.jpg", 200),  # a moderator, by the store's membership
        ("carol", "users/bob/boat.jpg", 200),
    ],
)
def test_5_owner_folders(cookbook: Cookbook, user: str, path: str, expected: int) -> None:
    status, _, body = cookbook.as_user(user, f"/owners/{path}")
    assert status == expected
    if status == 200:
        real = (cookbook.data / "05-owner-folders" / "images" / path).resolve()
        assert body == real.read_bytes()


@on_apache
def test_5_anonymous_viewers_own_no_folder(cookbook: Cookbook) -> None:
    for path in ("users/alice/cat.jpg", "users/bob/boat.jpg", "users/alice/boat.jpg"):
        assert cookbook.get(f"/owners/{path}", IMG)[0] == 401


@on_apache
def test_5_upload_and_share_from_the_application(cookbook: Cookbook) -> None:
    upload = serve_cookbook.load_module(COOKBOOK / "05-owner-folders" / "upload.py")
    root = str(cookbook.data / "05-owner-folders" / "images")
    store = str(cookbook.data / "state" / "05-owner-folders.db")
    picture = io.BytesIO()
    Image.new("RGB", (40, 30), "yellow").save(picture, "JPEG")
    relpath = upload.store_upload(root, "bob", "kite.jpg", picture.getvalue())
    assert relpath == "users/bob/kite.jpg"
    status, _, body = cookbook.as_user("bob", "/owners/users/bob/kite.jpg")
    assert (status, body) == (200, picture.getvalue())
    assert cookbook.as_user("alice", "/owners/users/bob/kite.jpg")[0] == 403
    upload.share_with(store, relpath, "alice")
    assert cookbook.as_user("alice", "/owners/users/bob/kite.jpg")[0] == 200
    upload.unshare(store, relpath, "alice")
    assert cookbook.as_user("alice", "/owners/users/bob/kite.jpg")[0] == 403
    if os.geteuid() == 0:  # Apache's children run as www-data: a 0600 file is not theirs
        private = Path(root) / "users" / "bob" / "private.jpg"
        private.write_bytes(picture.getvalue())
        private.chmod(0o600)
        mark = len(cookbook.server.error_log_text())
        assert cookbook.as_user("bob", "/owners/users/bob/private.jpg")[0] == 403
        assert "not readable by Apache's user" in cookbook.error_log_since(mark, "readable")


# --------------------------------------------------------------------------- 6. thumbnails


@on_apache
def test_6_visitors_get_thumbnails(cookbook: Cookbook) -> None:
    for path, size in [
        ("/photos/alice/sunrise.jpg", (256, 192)),
        ("/photos/alice/sunrise.jpg?v=preview", (256, 192)),  # asked for more: downgraded
        ("/photos/bob/lake.png", (256, 256)),
    ]:
        status, headers, body = cookbook.get(path, IMG)
        assert status == 200, path
        assert headers["content-type"] == "image/jpeg"  # an opaque PNG's rendition too
        assert size_of(body) == size, path


@on_apache
def test_6_owners_get_their_originals(cookbook: Cookbook) -> None:
    status, headers, body = cookbook.as_user("alice", "/photos/alice/sunrise.jpg")
    assert status == 200
    assert body == cookbook.file("06-thumbnails/images/alice/sunrise.jpg")
    assert size_of(body) == (1200, 900)
    assert headers["cache-control"] == "private, max-age=600"
    assert headers["vary"] == "Cookie"
    assert size_of(cookbook.as_user("alice", "/photos/alice/sunrise.jpg?v=thumb")[2]) == (
        256,
        192,
    )
    assert size_of(cookbook.as_user("alice", "/photos/bob/lake.png")[2]) == (256, 256)
    assert cookbook.as_user("bob", "/photos/bob/lake.png")[2] == cookbook.file(
        "06-thumbnails/images/bob/lake.png"
    )
    assert size_of(cookbook.as_user("bob", "/photos/alice/sunrise.jpg")[2]) == (256, 192)
    assert cookbook.get("/photos/alice/sunrise.jpg?v=huge", IMG)[0] == 400


@on_apache
def test_6_apache_sends_thumbnails_with_range_and_304(cookbook: Cookbook) -> None:
    status, headers, body = cookbook.get("/photos/alice/sunrise.jpg", IMG)
    assert status == 200
    status, _, part = cookbook.get("/photos/alice/sunrise.jpg", {**IMG, "Range": "bytes=10-19"})
    assert (status, part) == (206, body[10:20])
    again = cookbook.get("/photos/alice/sunrise.jpg", {**IMG, "If-None-Match": headers["etag"]})
    assert again[0] == 304


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("href", "src") and value]


@on_apache
def test_6_every_link_of_the_gallery_page_works_for_everyone(cookbook: Cookbook) -> None:
    parser = _Links()
    parser.feed((COOKBOOK / "06-thumbnails" / "gallery.html").read_text())
    assert len(parser.urls) == 4
    for url in parser.urls:
        for headers in (IMG, {**IMG, "Cookie": cookbook.login("alice")}):
            status, _, body = cookbook.get(url, headers)
            assert status == 200, url
            assert max(size_of(body)) in (256, 1200), url


# --------------------------------------------------------------------------- 7. redirect


@on_apache
def test_7_a_browser_is_sent_to_the_login_page_and_back(cookbook: Cookbook) -> None:
    status, headers, _ = cookbook.get("/private/sea.jpg?v=full", NAVIGATION)
    assert status == 302
    assert headers["location"] == "/account/login?back=%2Fprivate%2Fsea.jpg%3Fv%3Dfull"
    assert headers["cache-control"] == "private, no-store"
    status, _, form = cookbook.get(headers["location"], NAVIGATION)
    assert status == 200
    assert b'name="back" value="/private/sea.jpg?v=full"' in form
    status, headers, _ = cookbook.post_form(
        "/account/login",
        {"user": "carol", "password": "carol-secret", "back": "/private/sea.jpg?v=full"},
    )
    assert status == 303
    assert headers["location"] == "/private/sea.jpg?v=full"
    cookie = session_cookie(headers)
    status, _, body = cookbook.get(headers["location"], {**NAVIGATION, "Cookie": cookie})
    assert status == 200
    assert body == cookbook.file("07-login-redirect/images/sea.jpg")


@on_apache
def test_7_images_are_not_redirected(cookbook: Cookbook) -> None:
    status, headers, _ = cookbook.get("/private/sea.jpg", IMG)
    assert status == 401
    assert "location" not in headers


@on_apache
@pytest.mark.parametrize(
    "back", ["//evil.example/", "https://evil.example/", "/\\evil.example", "/a\r\nSet-Cookie:x"]
)
def test_7_the_login_page_follows_only_paths_of_this_site(cookbook: Cookbook, back: str) -> None:
    status, headers, _ = cookbook.post_form(
        "/account/login", {"user": "carol", "password": "carol-secret", "back": back}
    )
    assert (status, headers["location"]) == (303, "/account/")


@on_apache
def test_7_the_form_escapes_back(cookbook: Cookbook) -> None:
    back = urllib.parse.quote('/x"><script>alert(1)</script>', safe="")
    status, _, form = cookbook.get(f"/account/login?back={back}", NAVIGATION)
    assert status == 200
    assert b"<script>" not in form
    assert b'value="/x&quot;&gt;&lt;script&gt;' in form


# --------------------------------------------------------------------------- 8. tickets


def _pyramid_login(cookbook: Cookbook, user: str, back: str = "") -> Response:
    form = {"user": user, "password": f"{user}-secret"}
    if back:
        form["back"] = back
    return cookbook.post_form("/pyramid/login", form)


@on_apache
def test_8_a_ticket_from_the_pyramid_application_opens_the_images(cookbook: Cookbook) -> None:
    status, _, form = cookbook.get("/pyramid/login", NAVIGATION)
    assert status == 200 and b'action="/pyramid/login"' in form
    status, headers, _ = _pyramid_login(cookbook, "alice")
    assert status == 303
    assert headers["location"] == f"http://127.0.0.1:{cookbook.port}/pyramid/"
    cookie = {"Cookie": ticket_cookie(headers)}
    assert cookbook.get("/pyramid/", cookie)[2] == b"logged in as alice\n"
    for path in ("/tickets/lobby.jpg", "/tickets/team/roadmap.jpg"):
        status, _, body = cookbook.get(path, cookie)
        assert status == 200
        assert body == cookbook.file("08-tickets-pyramid/images" + path.removeprefix("/tickets"))
    lines = cookbook.server.wait_for_access_log('GET /tickets/team/roadmap.jpg HTTP/1.1" 200')
    assert any(" alice [" in line for line in lines)
    status, headers, _ = _pyramid_login(cookbook, "bob")
    bob = {"Cookie": ticket_cookie(headers)}
    assert cookbook.get("/tickets/lobby.jpg", bob)[0] == 200
    assert cookbook.get("/tickets/team/roadmap.jpg", bob)[0] == 403  # no staff token


@on_apache
def test_8_login_redirect_round_trip_through_pyramid(cookbook: Cookbook) -> None:
    status, headers, _ = cookbook.get("/tickets/team/roadmap.jpg", NAVIGATION)
    assert status == 302
    location = headers["location"]
    assert location == "/pyramid/login?back=%2Ftickets%2Fteam%2Froadmap.jpg"
    status, _, form = cookbook.get(location, NAVIGATION)
    assert b'value="/tickets/team/roadmap.jpg"' in form
    status, headers, _ = _pyramid_login(cookbook, "alice", back="/tickets/team/roadmap.jpg")
    assert status == 303
    back = urllib.parse.urlsplit(headers["location"]).path
    assert back == "/tickets/team/roadmap.jpg"
    status, _, _ = cookbook.get(back, {**NAVIGATION, "Cookie": ticket_cookie(headers)})
    assert status == 200


def _pyramid_ticket(secret: str | bytes, stamp: float) -> str:
    key = secret.decode() if isinstance(secret, bytes) else secret
    ticket = AuthTicket(
        key, "alice", "0.0.0.0", tokens=("staff",), time=stamp, hashalg="sha256"
    ).cookie_value()
    return f"auth_tkt={ticket}"


@on_apache
def test_8_forged_expired_and_foreign_tickets_are_refused(cookbook: Cookbook) -> None:
    now = time.time()
    path = "/tickets/team/roadmap.jpg"
    fresh = _pyramid_ticket(cookbook.secret(), now)
    assert cookbook.get(path, {"Cookie": fresh})[0] == 200  # the format is right
    expired = _pyramid_ticket(cookbook.secret(), now - 31 * 60)  # tkt_timeout 30m
    assert cookbook.get(path, {"Cookie": expired})[0] == 401
    foreign = _pyramid_ticket("not-this-site's-secret-0123456789", now)
    assert cookbook.get(path, {"Cookie": foreign})[0] == 401
    digest, rest = fresh[len("auth_tkt=") :][:64], fresh[len("auth_tkt=") + 64 :]
    flipped = digest[:10] + ("0" if digest[10] != "0" else "1") + digest[11:]
    assert cookbook.get(path, {"Cookie": f"auth_tkt={flipped}{rest}"})[0] == 401
    promoted = rest.replace("alice", "erin")  # the user changed, the digest kept
    assert cookbook.get(path, {"Cookie": f"auth_tkt={digest}{promoted}"})[0] == 401


@on_apache
def test_8_logout_refuses_copies_of_the_ticket(cookbook: Cookbook) -> None:
    status, headers, _ = _pyramid_login(cookbook, "erin")
    copy = {"Cookie": ticket_cookie(headers)}
    assert cookbook.get("/tickets/lobby.jpg", copy)[0] == 200
    status, headers, _ = cookbook.post_form("/pyramid/logout", {}, copy["Cookie"])
    assert status == 303
    assert "auth_tkt=;" in headers["set-cookie"] or "auth_tkt=; " in headers["set-cookie"]
    assert cookbook.get("/tickets/lobby.jpg", copy)[0] == 401


# --------------------------------------------------------------------------- 9. share links


def _share(cookbook: Cookbook, relpath: str, level: str, *more: str) -> str:
    root = str(cookbook.data / "09-share-link" / "images")
    secrets = str(cookbook.data / "state" / "secrets")
    args = ["share", relpath, "--level", level, "--expires", "10m", "--url-path", "/shared"]
    return cookbook.cli(
        "09-share-link", *args, "--root", root, "--secret-file", secrets, *more
    ).stdout.strip()


@on_apache
def test_9_a_share_link_opens_one_image_to_anyone(cookbook: Cookbook) -> None:
    assert cookbook.get("/shared/press/launch.jpg", IMG)[0] == 401
    link = _share(cookbook, "press/launch.jpg", "full")
    status, headers, body = cookbook.get(link, IMG)
    assert status == 200
    assert body == cookbook.file("09-share-link/images/press/launch.jpg")
    assert headers["cache-control"] == "private, max-age=0"
    preview = _share(cookbook, "press/launch.jpg", "preview")
    assert "v=preview" in preview
    assert size_of(cookbook.get(preview, IMG)[2]) == (1024, 683)
    thumb = _share(cookbook, "press/launch.jpg", "thumb")
    assert size_of(cookbook.get(thumb, IMG)[2]) == (256, 171)


@on_apache
def test_9_an_altered_link_is_refused(cookbook: Cookbook) -> None:
    link = _share(cookbook, "press/launch.jpg", "thumb")
    assert cookbook.get(link, IMG)[0] == 200
    raised = link.replace("ig_lvl=thumb", "ig_lvl=full").replace("v=thumb", "v=full")
    assert raised != link
    other = link.replace("press/launch.jpg", "press/draft.jpg")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)
    later = link.replace(f"ig_exp={query['ig_exp'][0]}", f"ig_exp={int(query['ig_exp'][0]) + 60}")
    mark = len(cookbook.server.error_log_text())
    for altered in (raised, other, later):
        assert cookbook.get(altered, IMG)[0] == 401, altered
    assert "share link refused" in cookbook.error_log_since(mark, "share link refused")


@on_apache
def test_9_an_expired_link_is_refused(cookbook: Cookbook) -> None:
    realm = str((cookbook.data / "09-share-link" / "images").resolve())
    past = int(time.time()) - 60
    params = sharelinks.sign("press/launch.jpg", "full", past, cookbook.secret(), realm=realm)
    link = "/shared/press/launch.jpg?" + urllib.parse.urlencode(params)
    assert cookbook.get(link, IMG)[0] == 401
    fresh = sharelinks.sign("press/launch.jpg", "full", past + 600, cookbook.secret(), realm=realm)
    assert cookbook.get("/shared/press/launch.jpg?" + urllib.parse.urlencode(fresh), IMG)[0] == 200


@on_apache
def test_9_a_revoked_link_is_refused(cookbook: Cookbook) -> None:
    link = _share(cookbook, "press/launch.jpg", "full")
    assert cookbook.get(link, IMG)[0] == 200
    cookbook.cli("09-share-link", "share-revoke", link)
    assert cookbook.get(link, IMG)[0] == 401


@on_apache
def test_9_a_link_for_one_user(cookbook: Cookbook) -> None:
    link = _share(cookbook, "press/draft.jpg", "full", "--user", "bob")
    assert "ig_user=bob" in link
    assert cookbook.get(link, IMG)[0] == 401  # not logged in
    assert cookbook.get(link, {**IMG, "Cookie": cookbook.login("bob")})[0] == 200
    assert cookbook.get(link, {**IMG, "Cookie": cookbook.login("carol")})[0] == 403
    assert cookbook.as_user("alice", "/shared/press/draft.jpg")[0] == 200  # her own rule


# --------------------------------------------------------------------------- 10. 404


def _comparable(response: Response) -> tuple[int, dict[str, str], bytes]:
    status, headers, body = response
    return status, {k: v for k, v in headers.items() if k != "date"}, body


@on_apache
def test_10_a_denied_image_looks_like_a_missing_one(cookbook: Cookbook) -> None:
    for who in ({}, {"Cookie": cookbook.login("bob")}):
        there = cookbook.get("/hidden/cases/smith.jpg", {**IMG, **who})
        missing = cookbook.get("/hidden/cases/jones.jpg", {**IMG, **who})
        assert there[0] == 404
        assert _comparable(there) == _comparable(missing)
        bogus = cookbook.get("/hidden/cases/smith.jpg?v=huge", {**IMG, **who})
        assert _comparable(bogus) == _comparable(missing)  # not 400: the query is not read
        for method in ("POST", "DELETE"):
            there = cookbook.get("/hidden/cases/smith.jpg", {**IMG, **who}, method=method)
            missing = cookbook.get("/hidden/cases/jones.jpg", {**IMG, **who}, method=method)
            assert there[0] == 405
            assert _comparable(there) == _comparable(missing)
    bob = {**IMG, "Cookie": cookbook.login("bob")}
    # A folder named like an image is refused as a missing file would be...
    folder = cookbook.get("/hidden/cases/old.jpg", bob)
    assert _comparable(folder) == _comparable(cookbook.get("/hidden/cases/new.jpg", bob))
    # ...and a name without an image extension by its name, there or not.
    folder = cookbook.get("/hidden/cases", bob)
    assert _comparable(folder) == _comparable(cookbook.get("/hidden/nothing", bob))
    assert folder[0] == 403


HIDDEN_NAMES = (
    "smith.jpg",
    "jones.jpg",
    "smith.jpg?v=huge",
    "readme.txt",
    "nothing.txt",
    "upload.jpg",
    "old.jpg",
)
HIDDEN_TABLE = {  # viewer -> the status of each of HIDDEN_NAMES below /hidden/cases/
    "visitor-img": (404, 404, 404, 403, 403, 404, 404),
    "visitor-page": (302, 302, 302, 403, 403, 302, 302),
    "bob": (404, 404, 404, 403, 403, 404, 404),
    "alice": (200, 404, 400, 403, 403, 415, 404),
}


@on_apache
@pytest.mark.parametrize("viewer", sorted(HIDDEN_TABLE))
def test_10_the_table(cookbook: Cookbook, viewer: str) -> None:
    headers = NAVIGATION if viewer == "visitor-page" else IMG
    if not viewer.startswith("visitor"):
        headers = {**headers, "Cookie": cookbook.login(viewer)}
    for name, expected in zip(HIDDEN_NAMES, HIDDEN_TABLE[viewer]):
        status, found, _ = cookbook.get(f"/hidden/cases/{name}", headers)
        assert status == expected, (viewer, name)
        if status == 302:
            path = urllib.parse.quote(f"/hidden/cases/{name}", safe="")
            assert found["location"] == f"/account/login?back={path}"


# --------------------------------------------------------------------------- 11. the proxy


def _through_proxy(
    cookbook: Cookbook, client: str, ticket_ip: str, forwarded: str = "", **more: str
) -> Response:
    return _photo(cookbook, "front", client, ticket_ip, forwarded, **more)


def _photo(
    cookbook: Cookbook, via: str, client: str, ticket_ip: str, forwarded: str = "", **more: str
) -> Response:
    """/photos/night.jpg from *client* through the proxy (*via* "front") or straight to
    the back end ("back"), with a ticket of alice bound to *ticket_ip*."""
    headers = {"Cookie": f"auth_tkt={cookbook.ticket('alice', ticket_ip)}", **more}
    if forwarded:
        headers["X-Forwarded-For"] = forwarded
    port = getattr(cookbook.ports, via)
    return cookbook.get("/photos/night.jpg", headers, port=port, source=client)


PROXY_TABLE = [  # (via, client, ticket bound to, X-Forwarded-For sent, status)
    ("front", "127.0.0.2", "127.0.0.2", "", 200),
    ("front", "127.0.0.2", "127.0.0.2", "203.0.113.9", 200),
    ("front", "127.0.0.3", "127.0.0.2", "", 401),  # a copied cookie
    ("front", "127.0.0.3", "127.0.0.2", "127.0.0.2", 401),
    ("front", "127.0.0.2", "203.0.113.9", "203.0.113.9", 401),
    ("front", "127.0.0.2", "127.0.0.1", "127.0.0.1", 401),  # the proxy's own address
    ("front", "127.0.0.2", "127.0.0.1", "127.0.0.3, 127.0.0.1", 401),
    ("back", "127.0.0.2", "203.0.113.9", "203.0.113.9", 401),  # not a trusted proxy
    ("back", "127.0.0.1", "203.0.113.9", "203.0.113.9", 200),  # the trusted address
]


@on_apache
@pytest.mark.parametrize(("via", "client", "bound", "forwarded", "expected"), PROXY_TABLE)
def test_11_the_table(
    cookbook: Cookbook, via: str, client: str, bound: str, forwarded: str, expected: int
) -> None:
    status, _, body = _photo(cookbook, via, client, bound, forwarded)
    assert status == expected
    if status == 200:
        assert body == cookbook.file("11-reverse-proxy/images/night.jpg")


@on_apache
def test_11_headers_survive_the_proxy(cookbook: Cookbook) -> None:
    status, headers, _ = _through_proxy(cookbook, "127.0.0.2", "127.0.0.2")
    assert status == 200
    assert headers["cache-control"] == "private, max-age=300"
    assert headers["vary"] == "Cookie"
    assert headers["x-content-type-options"] == "nosniff"


@on_apache
def test_11_apache_still_sends_the_file_through_the_proxy(cookbook: Cookbook) -> None:
    data = cookbook.file("11-reverse-proxy/images/night.jpg")
    status, headers, body = _through_proxy(cookbook, "127.0.0.2", "127.0.0.2", Range="bytes=0-9")
    assert (status, body) == (206, data[:10])
    status, headers, _ = _through_proxy(cookbook, "127.0.0.2", "127.0.0.2")
    again = _through_proxy(cookbook, "127.0.0.2", "127.0.0.2", **{"If-None-Match": headers["etag"]})
    assert again[0] == 304


@on_apache
def test_11_logs_name_the_client_not_the_proxy(cookbook: Cookbook) -> None:
    mark = len(cookbook.server.error_log_text())
    assert _through_proxy(cookbook, "127.0.0.3", "127.0.0.2")[0] == 401
    log = cookbook.error_log_since(mark, "/photos/night.jpg")
    assert "[client 127.0.0.3:" in log
    lines = cookbook.server.wait_for_access_log('"GET /photos/night.jpg HTTP/1.1" 401')
    assert any(line.startswith("127.0.0.3 ") for line in lines)


# --------------------------------------------------------------------------- try.sh


@on_apache
@pytest.mark.skipif(shutil.which("curl") is None, reason="the try.sh scripts use curl")
@pytest.mark.parametrize("recipe", [r.name for r in RECIPES if (r / "try.sh").exists()])
def test_try_script_prints_what_the_recipe_says(cookbook: Cookbook, recipe: str) -> None:
    front = f"http://127.0.0.1:{cookbook.ports.front}"
    output = serve_cookbook.run_script(
        COOKBOOK / recipe, "try.sh", cookbook.data, BASE=cookbook.server.base_url, FRONT=front
    )
    assert output == (COOKBOOK / recipe / "expected.txt").read_text()
