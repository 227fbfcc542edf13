"""The access-log note (``%{imageguard}n``): every decision names its viewer and what was
decided, in one line-safe word each (tests/integration/test_lognote.py reads it from a
real Apache's access log)."""

from __future__ import annotations

import os
import time
import types
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from imageguard import handlers
from imageguard.apache.runtime import Runtime
from imageguard.apache.settings import Settings
from imageguard.errors import (
    ConfigError,
    ContentError,
    ImageGuardError,
    RenditionError,
    StoreError,
    StoreUnavailable,
    VariantError,
)
from imageguard.policy.decision import (
    NOBODY,
    NOTE_TOKENS,
    Action,
    Facts,
    Login,
    Outcome,
    Phase,
    Progress,
    Unreadable,
    anonymous,
    decide,
    log_viewer,
    refusal_for,
)
from imageguard.policy.principals import Identity
from imageguard.store import AclStore

from .test_decision import As

DORA = Login(Identity("dora"), "session")
STRANGER = anonymous("no session cookie")


class Tree:
    """Images, an ACL store and a cache; decisions on them, descriptors closed after."""

    def __init__(self, base: Path) -> None:
        self.root = base / "pictures"
        (self.root / "shelf").mkdir(parents=True)
        (self.root / "folder.png").mkdir()
        for name, size in (("shelf/open.png", (30, 20)), ("shelf/wide.png", (600, 300))):
            Image.new("RGB", size, "teal").save(self.root / name)
        Image.new("RGB", (30, 20), "navy").save(self.root / "shelf/members.png")
        Image.new("RGB", (30, 20), "olive").save(self.root / "shelf/closed.png")
        (self.root / "shelf/fake.png").write_bytes(b"GIF89a not a png at all")
        (self.root / "shelf/readme.txt").write_text("words")
        self.cache = base / "cache"
        self.cache.mkdir()
        self.db = base / "rules.db"
        with AclStore.create(self.db) as store:
            store.grant("shelf/open.png", "anyone", "full")
            store.grant("shelf/fake.png", "anyone", "full")
            store.grant("shelf/members.png", "authenticated", "full")
            store.grant("shelf/wide.png", "anyone", "thumb")
            store.grant("shelf/wide.png", "user:dora", "full")
            store.grant("shelf/closed.png", "authenticated", "deny")
        self.opened: list[int] = []

    def runtime(
        self, login: Login = STRANGER, options: dict[str, str] | None = None, *, acl: bool = True
    ) -> Runtime:
        given = {
            "imageguard.root": str(self.root),
            "imageguard.cache_dir": str(self.cache),
            "mod_python.session.session_type": "FileSession",
            **{f"imageguard.{name}": value for name, value in (options or {}).items()},
        }
        if acl:
            given["imageguard.acl_db"] = str(self.db)
        runtime = Runtime(Settings.from_options(given))
        runtime.logins = As(login)
        return runtime

    def decide(
        self,
        runtime: Runtime,
        rel: str,
        phase: Phase = Phase.ALL,
        given: dict[str, object] | None = None,
    ) -> tuple[Outcome, Progress]:
        fields: dict[str, object] = {
            "method": "GET",
            "filename": str(self.root / rel),
            "uri": f"/pictures/{rel}",
            "now": time.time(),
        }
        fields.update(given or {})
        progress = Progress()
        try:
            return decide(Facts(**fields), runtime, progress, phase), progress  # type: ignore[arg-type]
        finally:
            self.opened += progress.opened


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Tree]:
    made = Tree(tmp_path)
    yield made
    for fd in made.opened:
        os.close(fd)


def well_formed(note: str) -> tuple[str, str]:
    """The (viewer, token) of *note*, checking its form on the way."""
    viewer, token = note.split(" ")
    assert token in NOTE_TOKENS, note
    assert viewer and note.isprintable() and note.isascii() and '"' not in note, note
    return viewer, token


# --------------------------------------------------------------------------- the viewer


@pytest.mark.parametrize(
    ("user", "shown"),
    [
        (None, "-"),
        ("", "-"),
        ("-", "%2D"),
        ("dora", "dora"),
        ("d.o-r_a~1@example.org", "d.o-r_a~1@example.org"),
        ("o'brien", "o%27brien"),
        ('say "hi"', "say%20%22hi%22"),
        ("back\\slash", "back%5Cslash"),
        ("100%", "100%25"),
        ("tab\tnew\nline\x1b[31m", "tab%09new%0Aline%1B%5B31m"),
        ("zoë", "zo%C3%AB"),
        ("\u202eevil", "%E2%80%AEevil"),
    ],
)
def test_a_viewer_is_one_printable_word_that_decodes_back(user: str | None, shown: str) -> None:
    assert log_viewer(user) == shown
    assert shown.isascii() and shown.isprintable() and " " not in shown and '"' not in shown
    if user and user != "-":
        assert urllib.parse.unquote(shown) == user


def test_a_name_that_is_not_utf8_is_escaped_too() -> None:
    shown = log_viewer("caf\udce9")  # how Python keeps a byte that is not UTF-8
    assert shown.isascii() and shown.isprintable() and " " not in shown


def test_a_login_works_out_its_viewer_once() -> None:
    login = Login(Identity("o b"), "session")
    assert login.log_viewer == "o%20b"
    assert login.__dict__["log_viewer"] == "o%20b"  # kept: the sources reuse their logins
    assert STRANGER.log_viewer == NOBODY


# --------------------------------------------------------------------------- decisions

CASES = [
    # rel, login, options, extra facts, status, note
    ("shelf/open.png", STRANGER, {}, {}, 200, "- full"),
    ("shelf/members.png", DORA, {}, {}, 200, "dora full"),
    ("shelf/wide.png", STRANGER, {}, {}, 200, "- thumb"),
    ("shelf/wide.png", DORA, {}, {"query": "v=preview"}, 200, "dora preview"),
    ("shelf/members.png", STRANGER, {}, {}, 401, "- deny:login-required"),
    (
        "shelf/members.png",
        STRANGER,
        {"login_url": "/login"},
        {"accept": "text/html"},
        302,
        "- deny:login-required",
    ),
    ("shelf/closed.png", DORA, {}, {}, 403, "dora deny:acl"),
    ("shelf/closed.png", DORA, {"placeholder": "on"}, {}, 403, "dora deny:acl"),
    ("shelf/wide.png", STRANGER, {"downgrade": "off"}, {}, 403, "- deny:acl"),
    ("shelf/readme.txt", DORA, {}, {}, 403, "- deny:gate"),
    ("folder.png", DORA, {}, {}, 403, "- deny:gate"),
    ("shelf/open.png", DORA, {}, {"path_info": "/x.png"}, 403, "- deny:gate"),
    ("shelf/open.png", DORA, {}, {"method": "POST"}, 405, "- deny:method"),
    ("shelf/gone.png", DORA, {}, {}, 404, "- deny:not-found"),
    # Where existence is hidden, a 404 still says why in the log.
    ("shelf/closed.png", DORA, {"deny_status": "404"}, {}, 404, "dora deny:acl"),
    ("shelf/members.png", STRANGER, {"deny_status": "404"}, {}, 404, "- deny:login-required"),
    ("shelf/gone.png", DORA, {"deny_status": "404"}, {}, 404, "dora deny:not-found"),
]


@pytest.mark.parametrize(("rel", "login", "options", "given", "status", "note"), CASES)
def test_every_decision_is_noted(
    tree: Tree,
    rel: str,
    login: Login,
    options: dict[str, str],
    given: dict[str, object],
    status: int,
    note: str,
) -> None:
    outcome, _ = tree.decide(tree.runtime(login, options), rel, given=given)
    assert outcome.status == status, outcome.reason
    assert outcome.note == note
    well_formed(outcome.note)


def test_a_user_name_is_escaped_in_the_note(tree: Tree) -> None:
    odd = Login(Identity('o"brien%'), "session")
    outcome, _ = tree.decide(tree.runtime(odd), "shelf/members.png")
    assert outcome.action is Action.ADMIT and outcome.note == "o%22brien%25 full"


def test_the_gate_alone_serves_anyone(tree: Tree) -> None:
    outcome, _ = tree.decide(tree.runtime(acl=False), "shelf/closed.png", Phase.ACCESS)
    assert (outcome.action, outcome.note) == (Action.ADMIT, "- full")


def test_only_the_phase_that_decides_leaves_a_note(tree: Tree) -> None:
    runtime = tree.runtime(DORA)
    progress = Progress()
    facts = Facts("GET", str(tree.root / "shelf/members.png"), now=time.time())
    try:
        notes = [decide(facts, runtime, progress, phase).note for phase in Phase]
    finally:
        tree.opened += progress.opened
    # access and authen go on without a note; authz (and ALL, the same request again) decide
    assert notes == ["", "", "dora full", "dora full"]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("exc", "token"),
    [
        (Unreadable("args"), "deny:bad-request"),
        (Unreadable("filename"), "deny:bad-request"),
        (VariantError("unknown variant"), "deny:bad-request"),
        (ContentError("not a PNG"), "deny:not-image"),
        (StoreUnavailable("pg", "gone"), "error:store-unavailable"),
        (StoreError("broken"), "error:store"),
        (ConfigError("bad option"), "error:config"),
        (RenditionError("cache full"), "error:rendition"),
        (ImageGuardError("something else"), "deny:refused"),
        (PermissionError(13, "denied", "/x.png"), "error:permission"),
        (ZeroDivisionError("a bug"), "error:internal"),
    ],
)
def test_each_error_has_its_token(exc: Exception, token: str) -> None:
    assert refusal_for(exc, "authz").note == f"- {token}"
    assert refusal_for(exc, "authz", "dora").note == f"dora {token}"


def test_a_file_that_is_not_its_image_type_is_noted_not_image(tree: Tree) -> None:
    runtime = tree.runtime()
    with pytest.raises(ContentError) as raised:
        tree.decide(runtime, "shelf/fake.png")
    assert refusal_for(raised.value, "gatekeeper").note == "- deny:not-image"


def test_handlers_that_cannot_load_note_it() -> None:
    req = types.SimpleNamespace(notes={}, log_error=lambda message, level: None)
    assert handlers._unavailable(req, ImportError("no PIL")) == 500
    assert req.notes == {"imageguard": "- error:unavailable"}
    well_formed(req.notes["imageguard"])


def test_every_token_is_documented() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "deployment.md").read_text()
    for token in NOTE_TOKENS:
        assert f"| `{token}` |" in text, token
