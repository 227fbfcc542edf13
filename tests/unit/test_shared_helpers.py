"""Helpers that several modules used to define each for themselves: the file validator,
group-name filtering, one-line text, the content checker of a site, the guest viewer."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from imageguard.cli import imagecommands
from imageguard.errors import FormatMismatch
from imageguard.files.content import EXTENSION_FORMATS, ContentChecker
from imageguard.files.fileversion import FileVersion, stat_validator, validator
from imageguard.identity.sessions import SessionKeys, StoredSession, identity_from_session
from imageguard.policy import principals
from imageguard.policy.principals import valid_groups
from imageguard.support.safetext import one_line


def test_the_validator_changes_with_every_kind_of_edit(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"one")
    first = stat_validator(str(path))
    assert first == validator(os.stat(path)) == FileVersion.of(os.stat(path))
    assert isinstance(FileVersion.of(os.stat(path)), FileVersion)
    os.utime(path, ns=(1, 1))  # same bytes, another mtime
    second = stat_validator(str(path))
    assert second != first
    time.sleep(0.05)  # past the file system's coarse clock tick
    path.write_bytes(b"two")  # same size, rewritten in place
    os.utime(path, ns=(1, 1))  # and the mtime set back: the ctime still moves
    third = stat_validator(str(path))
    assert third is not None and second is not None
    assert third[:4] == second[:4]  # device, inode, size, mtime: all as before
    assert third[4] > second[4]
    replacement = tmp_path / "g"
    replacement.write_bytes(b"two")
    os.replace(replacement, path)  # replaced: another inode
    fourth = stat_validator(str(path))
    assert fourth is not None and fourth[1] != third[1]


def test_no_validator_for_a_missing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert stat_validator(str(tmp_path / "missing")) is None
    (tmp_path / "file").write_text("x")
    assert stat_validator(str(tmp_path / "file" / "below")) is None  # not a folder

    def refused(path: object, *args: object, **kw: object) -> os.stat_result:
        raise PermissionError(13, "Permission denied", str(path))

    # A folder that cannot be searched is not "missing" (tests run as root, whom no mode
    # stops, so the refusal is made here).
    monkeypatch.setattr(os, "stat", refused)
    with pytest.raises(PermissionError):
        stat_validator(str(tmp_path / "file"))


def test_valid_groups_keeps_only_names_that_can_name_a_group() -> None:
    given = ["staff", "", "a b", "..", "x/y", "e\u0301", "\u00e9", 7, None, "staff", "ok"]
    assert valid_groups(given) == frozenset({"staff", "\u00e9", "ok"})
    assert valid_groups([]) == frozenset()


def test_sessions_filter_groups_with_it() -> None:
    session = StoredSession({"user": "bob", "groups": ["staff", "a b", 3]}, 0, 10)
    identity = identity_from_session(session, SessionKeys())
    assert identity is not None and identity.groups == frozenset({"staff"})
    session = StoredSession({"user": "bob", "groups": "staff, editors ../x"}, 0, 10)
    identity = identity_from_session(session, SessionKeys())
    assert identity is not None and identity.groups == frozenset({"staff", "editors"})
    session = StoredSession({"user": "bob", "groups": 12}, 0, 10)
    identity = identity_from_session(session, SessionKeys())
    assert identity is not None and identity.groups == frozenset()


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("cat.jpg", "cat.jpg"),
        ("a\nb.jpg", "a\\nb.jpg"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("evil\u202egpj.exe", "evil\\u202egpj.exe"),
        ("zoë", "zoë"),
    ],
)
def test_one_line(text: str, shown: str) -> None:
    assert one_line(text) == shown
    assert one_line(text).isprintable()


def test_the_content_checker_of_a_site_verifies_what_it_can(tmp_path: Path) -> None:
    checker = ContentChecker.for_site({".jpg", ".png", ".xyz"}, max_pixels=1234)
    assert set(checker.formats) == {".jpg", ".png"}
    assert set(checker.formats) <= set(EXTENSION_FORMATS)
    assert checker.max_pixels == 1234
    path = tmp_path / "a.xyz"
    path.write_bytes(b"whatever")
    with pytest.raises(FormatMismatch, match="not verified"):
        checker.check(str(path), FileVersion.of(os.stat(path)))


def test_guest_is_defined_once() -> None:
    assert imagecommands.GUEST is principals.GUEST
