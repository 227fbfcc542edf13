"""Session cookie parsing, identity extraction and the readers' refusal paths.

The readers' happy path is proven against sessions written by mod_python itself, in the
integration tests; here only what needs no stored session is tested.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from imageguard.identity.cookies import find_cookie
from imageguard.identity.sessions import (
    DbmSessionReader,
    FileSessionReader,
    SessionKeys,
    StoredSession,
    identity_from_session,
    valid_sid,
)

SID = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], None),
        (["a=1; b=2"], None),
        (["pysid=abc"], "abc"),
        (["a=1; pysid=abc; b=2"], "abc"),
        (['pysid="abc"'], "abc"),
        (["pysid=one", "x=1; pysid=two"], "two"),  # the last one wins, as in mod_python
        (["xpysid=abc; pysidx=def"], None),
        (["pysid"], None),
        (["pysid="], ""),
    ],
)
def test_find_cookie(headers: list[str], expected: str | None) -> None:
    assert find_cookie(headers, "pysid") == expected


@pytest.mark.parametrize(
    ("sid", "ok"),
    [
        (SID, True),
        (SID.upper(), False),
        (SID[:-1], False),
        (SID + "0", False),
        ("../" + SID[3:], False),
        (SID + "\n", False),
        (None, False),
    ],
)
def test_valid_sid(sid: str | None, ok: bool) -> None:
    assert valid_sid(sid) is ok


def session(data: dict[str, object], accessed: float = 100.0, timeout: float = 60) -> StoredSession:
    return StoredSession(data, accessed, timeout)


def test_expiry_follows_mod_python() -> None:
    live = session({}, accessed=100, timeout=60)
    assert live.alive(160) and not live.alive(160.5)


@pytest.mark.parametrize(
    ("data", "user", "groups"),
    [
        ({"user": "bob"}, "bob", set()),
        ({"user": "bob", "groups": ["a", "b"]}, "bob", {"a", "b"}),
        ({"user": "bob", "groups": ("a",)}, "bob", {"a"}),
        ({"user": "bob", "groups": "a, b c"}, "bob", {"a", "b", "c"}),
        ({"user": "bob", "groups": ["ok", "bad/name", 7, ""]}, "bob", {"ok"}),
        ({"user": "bob", "groups": 12}, "bob", set()),
    ],
)
def test_identity_from_session(data: dict[str, object], user: str, groups: set[str]) -> None:
    identity = identity_from_session(session(data), SessionKeys())
    assert identity is not None
    assert (identity.user, set(identity.groups)) == (user, groups)


@pytest.mark.parametrize(
    "data", [{}, {"user": ""}, {"user": 5}, {"user": "a/b"}, {"user": ".."}, {"name": "bob"}]
)
def test_no_identity(data: dict[str, object]) -> None:
    assert identity_from_session(session(data), SessionKeys()) is None


def test_custom_keys() -> None:
    keys = SessionKeys("login", "roles")
    identity = identity_from_session(session({"login": "ann", "roles": ["x"]}), keys)
    assert identity is not None and identity.user == "ann" and identity.groups == {"x"}


def test_file_reader_refuses_bad_sids_and_missing_files(tmp_path: Path) -> None:
    reader = FileSessionReader(str(tmp_path))
    assert reader.path_of(SID) == str(tmp_path / "mp_sess" / "01" / SID)
    assert reader.load("../../etc/passwd") is None
    assert reader.load(SID) is None


@pytest.mark.parametrize("content", [b"", b"garbage", b"\x80\x04K\x01.", b"\x80\x04}\x94."])
def test_file_reader_treats_unreadable_content_as_no_session(
    tmp_path: Path, content: bytes
) -> None:
    reader = FileSessionReader(str(tmp_path))
    path = Path(reader.path_of(SID))
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    assert reader.load(SID) is None


def test_dbm_reader_without_database(tmp_path: Path) -> None:
    reader = DbmSessionReader(str(tmp_path / "sessions"))
    assert reader.load(SID) is None
    assert reader.load("nope") is None


def test_the_session_type_chooses_the_reader(tmp_path: Path) -> None:
    """What login_source builds for each mod_python session type (a type no other request
    can read is refused: tests/unit/test_decision.py)."""
    from imageguard.apache.settings import Settings
    from imageguard.identity.logins import login_source

    def reader_for(session_type: str) -> object:
        settings = Settings.from_options(
            {"imageguard.root": str(tmp_path), "mod_python.session.session_type": session_type}
        )
        return login_source(settings, tuple, lambda: None).reader  # type: ignore[arg-type, return-value, attr-defined]

    assert isinstance(reader_for("FileSession"), FileSessionReader)
    assert isinstance(reader_for("DbmSession"), DbmSessionReader)


def test_quoted_cookie_values_are_unquoted() -> None:
    from imageguard.identity.cookies import find_cookie

    header = 'pysid="abc"; auth_tkt="d1\\054e2!x\\"y"; plain=v'
    assert find_cookie([header], "pysid") == "abc"
    assert find_cookie([header], "auth_tkt") == 'd1,e2!x"y'
    assert find_cookie([header], "plain") == "v"
