"""A user who may read an ACL store but not write its directory (anyone but its owner,
for a store handed to Apache's user) is told why SQLite refuses the read and what to do,
instead of SQLite's bare "attempt to write a readonly database"."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import imageguard
from imageguard.store import AclStore
from imageguard_devtools.localserver import prepare_readable


def _as_other_user() -> dict[str, object]:
    """subprocess arguments that run the child as an unprivileged user (we may be root,
    whom no file mode stops)."""
    if os.geteuid() != 0:
        return {}
    # That user must reach this interpreter and this imageguard (a clone under a private
    # home, say): the same modes the integration tests give Apache's user.
    prepare_readable(Path(sys.executable).parent)
    prepare_readable(Path(imageguard.__file__).parent)
    nobody = pwd.getpwnam("nobody")
    return {"user": nobody.pw_uid, "group": nobody.pw_gid}


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory any user may enter (pytest's tmp_path is private to its owner)."""
    made = Path(tempfile.mkdtemp(prefix="imageguard-ro-"))
    made.chmod(0o755)
    yield made
    shutil.rmtree(made, ignore_errors=True)


def test_a_reader_without_write_access_to_the_folder_is_told_what_to_do(open_dir: Path) -> None:
    folder = open_dir / "store"
    folder.mkdir()
    db = folder / "acl.db"
    store = AclStore.create(db)
    store.grant("gallery/", "authenticated", "full")
    store.close()
    for name in os.listdir(folder):  # no -shm left: the reader would have to make one
        assert not name.endswith("-shm"), name
    folder.chmod(0o555)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "imageguard.cli",
            "--db",
            str(db),
            "explain",
            "--user",
            "bob",
            "gallery/a.jpg",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        **_as_other_user(),  # type: ignore[call-overload]
    )
    folder.chmod(0o755)
    if result.returncode == 0:
        pytest.skip("this SQLite reads a WAL store without creating its -shm file")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"needs write access to {folder}" in result.stderr
    assert "as the store's owner" in result.stderr
