"""The system calls that keep Python's lock give exactly what the ``os`` functions give."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from imageguard.files import heldcalls
from imageguard.files.fileversion import validator


def _expected(st: os.stat_result) -> tuple[heldcalls.Validator, int]:
    return validator(st), st.st_mode


@pytest.fixture(params=["statx", "os fallback"])
def calls(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> object:
    """Both ways the module can work: through statx(), and with no statx() at all."""
    if request.param == "statx":
        if heldcalls._statx is None:
            pytest.skip("this system has no usable statx()")
    else:
        monkeypatch.setattr(heldcalls, "_statx", None)
        monkeypatch.setattr(heldcalls, "_close", None)
    return heldcalls


def test_stat_matches_os_stat(calls: object, tmp_path: Path) -> None:
    target = tmp_path / "image.jpg"
    target.write_bytes(b"x" * 1234)
    os.utime(target, ns=(1, 1_700_000_000_123_456_789))
    link = tmp_path / "link.jpg"
    link.symlink_to(target)
    for path in (target, tmp_path, link, Path("/dev/null"), Path("/proc/self/stat")):
        assert heldcalls.stat(str(path)) == _expected(os.stat(path)), path
        assert heldcalls.stat(str(path), follow=False) == _expected(os.lstat(path)), path
    assert stat.S_ISLNK(heldcalls.stat(str(link), follow=False)[1])
    assert heldcalls.stat(str(target))[0][3] == 1_700_000_000_123_456_789  # nanoseconds kept


def test_fstat_matches_os_fstat(calls: object, tmp_path: Path) -> None:
    (tmp_path / "a").write_text("abc")
    fd = os.open(tmp_path / "a", os.O_RDONLY)
    try:
        assert heldcalls.fstat(fd) == _expected(os.fstat(fd))
    finally:
        heldcalls.close(fd)
    with pytest.raises(OSError) as caught:
        os.fstat(fd)  # closed
    assert caught.value.errno == errno.EBADF


def test_errors_are_the_os_functions_errors(calls: object, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as missing:
        heldcalls.stat(str(tmp_path / "missing"))
    assert missing.value.filename == str(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        heldcalls.stat(str(tmp_path / "file" / "below"))
    with pytest.raises(OSError) as bad:
        heldcalls.fstat(987_654)
    assert bad.value.errno == errno.EBADF
    with pytest.raises(OSError) as closing:
        heldcalls.close(987_654)
    assert closing.value.errno == errno.EBADF


def test_a_refused_statx_falls_back_to_os_stat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A seccomp filter answering EPERM: the os functions from then on, same answers."""
    (tmp_path / "a").write_text("abc")

    def refused(*args: object) -> int:
        import ctypes

        ctypes.set_errno(errno.EPERM)
        return -1

    monkeypatch.setattr(heldcalls, "_statx", refused)
    assert heldcalls.stat(str(tmp_path / "a")) == _expected(os.stat(tmp_path / "a"))
    assert heldcalls._statx is None
