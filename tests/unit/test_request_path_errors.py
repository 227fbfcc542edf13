"""Refusal paths of the per-request code that no other unit test walks: a share link
where no secret file is configured, an ACL store closed under a reader, a rendition or
content check asked for a file the gate did not admit, a login cookie the SetEnvIf
line found but mod_python cannot decode; and the environment a login sets, worked out
once per login."""

from __future__ import annotations

import importlib
import os
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from imageguard.apache.runtime import Runtime
from imageguard.apache.settings import Settings
from imageguard.errors import ShareLinkError, StoreError
from imageguard.files.gate import FORBIDDEN, GateVerdict
from imageguard.policy.decision import (
    LOG_ERR,
    Action,
    Facts,
    Login,
    Outcome,
    Progress,
    anonymous,
    decide,
    refusal_for,
)
from imageguard.policy.levels import Level
from imageguard.policy.principals import Identity
from imageguard.store import AclStore, CachedAcl


class As:
    """A login source that always names *login*."""

    cookie_name: str | None = None

    def __init__(self, login: Login) -> None:
        self._login = login

    def login(self, facts: Facts) -> Login:
        return self._login


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    root = tmp_path / "images"
    root.mkdir()
    Image.new("RGB", (40, 30), "red").save(root / "a.jpg")
    db = tmp_path / "acl.db"
    with AclStore.create(db) as store:
        store.grant("a.jpg", "user:bob", "full")
    cache = tmp_path / "cache"
    cache.mkdir()
    yield (
        root,
        {
            "imageguard.root": str(root),
            "imageguard.acl_db": str(db),
            "imageguard.cache_dir": str(cache),
            "imageguard.verify_content": "on",
            "mod_python.session.session_type": "FileSession",
        },
    )


def _decide(runtime: Runtime, facts: Facts) -> tuple[Outcome, Progress]:
    progress = Progress()
    try:
        return decide(facts, runtime, progress), progress
    finally:
        for fd in progress.opened:
            os.close(fd)


# --------------------------------------------------------------------------- logins


def test_a_login_sets_its_environment_once() -> None:
    login = Login(Identity("bob", frozenset({"staff", "admins"})), "ticket", user_data="x=1")
    assert login.env == (("REMOTE_USER_DATA", "x=1"), ("REMOTE_USER_TOKENS", "admins,staff"))
    assert login.env is login.env  # worked out once per login, not per request
    assert anonymous("no session cookie").env == ()
    assert Login(Identity("eve"), "session").env == ()
    same = Login(Identity("bob", frozenset({"staff", "admins"})), "ticket", False, "x=1")
    assert login == same and hash(login) == hash(same)  # what is worked out is no field


def test_decide_hands_on_the_logins_environment(site: tuple[Path, dict[str, str]]) -> None:
    root, options = site
    login = Login(Identity("bob", frozenset({"staff"})), "ticket", user_data="x=1")
    runtime = Runtime(Settings.from_options(options))
    runtime.logins = As(login)
    facts = Facts("GET", str(root / "a.jpg"), now=time.time())
    outcome, progress = _decide(runtime, facts)
    assert outcome.action is Action.ADMIT
    assert progress.env == [("REMOTE_USER_DATA", "x=1"), ("REMOTE_USER_TOKENS", "staff")]


# --------------------------------------------------------------------------- refusals


def test_a_share_link_without_a_secret_file_is_ignored_and_logged(
    site: tuple[Path, dict[str, str]],
) -> None:
    root, options = site
    runtime = Runtime(Settings.from_options(options))  # no imageguard.tkt_secret_file
    runtime.logins = As(anonymous("no session cookie"))
    with pytest.raises(ShareLinkError, match=r"share links need imageguard\.tkt_secret_file"):
        runtime.share("a.jpg", "ig_sig=x")
    query = f"ig_exp={int(time.time()) + 60}&ig_lvl=full&ig_sig={'A' * 43}"
    facts = Facts("GET", str(root / "a.jpg"), query=query, now=time.time())
    outcome, progress = _decide(runtime, facts)
    assert (outcome.action, outcome.status) == (Action.REFUSE, 401)
    assert (
        LOG_ERR,
        "share link refused: share links need imageguard.tkt_secret_file",
    ) in progress.notes


def test_a_store_closed_under_a_reader_is_a_store_error(
    site: tuple[Path, dict[str, str]],
) -> None:
    _root, options = site
    acl = CachedAcl(options["imageguard.acl_db"])
    assert acl.decide("a.jpg", Identity("bob")).level is Level.FULL
    snapshot = acl._current()
    acl._watch.close()  # another thread's refresh, between this one's snapshot and its query
    with pytest.raises(StoreError, match="was closed while it was read") as caught:
        acl._cached(snapshot.candidates, "b.jpg", AclStore.candidates)
    assert refusal_for(caught.value, "authz").status == 500


@pytest.mark.parametrize("step", ["check_content", "plan_rendition"])
def test_a_file_the_gate_did_not_admit_is_never_read(
    site: tuple[Path, dict[str, str]], step: str
) -> None:
    root, options = site
    runtime = Runtime(Settings.from_options(options))
    refused = GateVerdict(FORBIDDEN, "not allowed", "a.jpg", str(root / "a.jpg"))
    with pytest.raises(ValueError, match="admitted file") as caught:
        if step == "check_content":
            runtime.check_content(refused)
        else:
            runtime.plan_rendition(refused, Level.THUMB, viewer="bob", host="h")
    outcome = refusal_for(caught.value, "authz")
    assert outcome.status == 500 and "internal error ValueError" in outcome.reason


# --------------------------------------------------------------------------- the adapters


@pytest.fixture
def adapters(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    package = types.ModuleType("mod_python")
    apache = types.ModuleType("mod_python.apache")
    apache.APLOG_ERR = 3  # type: ignore[attr-defined]
    apache.APLOG_WARNING = 4  # type: ignore[attr-defined]
    package.apache = apache  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mod_python", package)
    monkeypatch.setitem(sys.modules, "mod_python.apache", apache)
    monkeypatch.setitem(sys.modules, "_apache", types.ModuleType("_apache"))
    sys.modules.pop("imageguard.apache.adapters", None)
    yield importlib.import_module("imageguard.apache.adapters")
    sys.modules.pop("imageguard.apache.adapters", None)


class _Unreadable(dict):
    """A mod_python table whose listed keys hold bytes that are not UTF-8."""

    def __init__(self, unreadable: tuple[str, ...], **values: str) -> None:
        super().__init__(values)
        self.unreadable = unreadable

    def get(self, key: str, default: object = None) -> object:
        if key in self.unreadable:
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
        return super().get(key, default)


def test_a_login_cookie_that_is_not_utf8_is_ignored_and_logged(
    adapters: types.ModuleType,
) -> None:
    headers = adapters._Headers(_Unreadable(("Cookie",)))
    env_name = adapters.LOGIN_COOKIE_ENV
    req = types.SimpleNamespace(subprocess_env=_Unreadable((env_name,)))
    assert adapters._cookies(req, headers, "auth_tkt") == (
        (),
        (3, "ignored login cookie: its value is not UTF-8"),
    )
    found = types.SimpleNamespace(subprocess_env={env_name: "t"})
    assert adapters._cookies(found, headers, "auth_tkt") == (("auth_tkt=t",), None)
    cookies, note = adapters._cookies(found, headers, None)  # no login cookie to look for
    assert cookies == () and note is not None and note[0] == 4
