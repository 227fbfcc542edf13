"""The access gate's pure decision, on a real file tree."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from imageguard.errors import ConfigError
from imageguard.files.gate import Gate, parse_extensions, relative_to_root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "cat.jpg").write_bytes(b"x")
    (root / "a" / "CAT.PNG").write_bytes(b"x")
    (root / "a" / "notes.txt").write_bytes(b"x")
    (root / "a" / "archive.tar.jpg").write_bytes(b"x")
    (root / "a" / "image.jpg.txt").write_bytes(b"x")
    (root / "a" / "dir.jpg").mkdir()
    (root / ".git").mkdir()
    (root / ".git" / "x.jpg").write_bytes(b"x")
    os.mkfifo(root / "a" / "pipe.jpg")
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"x")
    (root / "a" / "out.jpg").symlink_to(outside)
    (root / "a" / "in.jpg").symlink_to(root / "a" / "cat.jpg")
    (root / "a" / "txt.jpg").symlink_to(root / "a" / "notes.txt")
    (root / "a" / "dangling.jpg").symlink_to(root / "a" / "nothing.jpg")
    return root


def check(gate: Gate, rel: str, method: str = "GET", path_info: str = "") -> tuple[int, str]:
    verdict = gate.check(method, os.path.join(gate.root, rel), path_info)
    return verdict.status, verdict.relpath


@pytest.mark.parametrize(
    ("rel", "expected"),
    [
        ("a/cat.jpg", (200, "a/cat.jpg")),
        ("a/CAT.PNG", (200, "a/CAT.PNG")),
        ("a/archive.tar.jpg", (200, "a/archive.tar.jpg")),  # only the last extension counts
        ("a/image.jpg.txt", (403, "")),
        ("a/notes.txt", (403, "")),
        ("a/dir.jpg", (403, "")),
        ("a/pipe.jpg", (403, "")),
        ("a/out.jpg", (403, "")),
        ("a/txt.jpg", (403, "")),
        ("a/in.jpg", (200, "a/cat.jpg")),  # decided on the real file
        ("a/missing.jpg", (404, "")),
        ("a/dangling.jpg", (404, "")),
        (".git/x.jpg", (403, "")),
        ("a/../../outside.jpg", (403, "")),
        ("", (403, "")),
    ],
)
def test_gate(tree: Path, rel: str, expected: tuple[int, str]) -> None:
    assert check(Gate.create(str(tree)), rel) == expected


def test_methods_and_path_info(tree: Path) -> None:
    gate = Gate.create(str(tree))
    assert check(gate, "a/cat.jpg", method="HEAD")[0] == 200
    assert check(gate, "a/cat.jpg", method="POST")[0] == 405
    assert check(gate, "a/cat.jpg", method="get")[0] == 405
    assert check(gate, "a/cat.jpg", path_info="/x.jpg")[0] == 403
    assert gate.check("GET", "", "").status == 403


def test_reasons_name_the_problem(tree: Path) -> None:
    gate = Gate.create(str(tree))
    assert "extension '.txt'" in gate.check("GET", str(tree / "a/notes.txt"), "").reason
    assert "hidden" in gate.check("GET", str(tree / ".git/x.jpg"), "").reason
    assert "outside" in gate.check("GET", str(tree / "a/out.jpg"), "").reason
    assert "/x.jpg" in gate.check("GET", str(tree / "a/cat.jpg"), "/x.jpg").reason


def test_root_reached_through_a_link(tree: Path, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(tree)
    gate = Gate.create(str(link))
    assert gate.root == str(tree)
    assert gate.check("GET", str(link / "a/cat.jpg"), "").relpath == "a/cat.jpg"
    assert gate.check("GET", str(link / "a/notes.txt"), "").status == 403


def test_custom_extensions(tree: Path) -> None:
    gate = Gate.create(str(tree), "txt")
    assert check(gate, "a/notes.txt")[0] == 200
    assert check(gate, "a/cat.jpg")[0] == 403


@pytest.mark.parametrize("text", ["", "   ", "a/b", ".tar.gz", "."])
def test_bad_extension_lists(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_extensions(text)


def test_extension_list_forms() -> None:
    assert parse_extensions("jpg, .PNG  webp") == {".jpg", ".png", ".webp"}


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a directory"):
        Gate.create(str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="not set"):
        Gate.create("")


def test_relative_to_root() -> None:
    assert relative_to_root("/r/a/b.jpg", "/r") == "a/b.jpg"
    assert relative_to_root("/rx/b.jpg", "/r") is None
    assert relative_to_root("/r", "/r") == ""
    assert relative_to_root("/a.jpg", "/") == "a.jpg"


def test_root_through_a_link_takes_the_fast_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tmp_path / "srv" / "images"
    (real / "a").mkdir(parents=True)
    (real / "a" / "x.jpg").write_bytes(b"x")
    link = tmp_path / "www-images"
    link.symlink_to(real)
    gate = Gate.create(str(link))
    assert gate.root == str(real) and gate.alias == str(link)

    def no_realpath(path: str) -> str:
        raise AssertionError(f"realpath({path}) on the fast path")

    monkeypatch.setattr("imageguard.files.gate.os.path.realpath", no_realpath)
    verdict = gate.check("GET", str(link / "a" / "x.jpg"), "")
    assert verdict.allowed and verdict.relpath == "a/x.jpg"
    assert verdict.path == str(real / "a" / "x.jpg")
    assert gate.check("GET", str(link / "a" / "missing.jpg"), "").status == 404


def test_retargeted_root_link_is_not_trusted(tmp_path: Path) -> None:
    real = tmp_path / "images"
    real.mkdir()
    (real / "x.jpg").write_bytes(b"x")
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.jpg").write_bytes(b"y")
    link = tmp_path / "link"
    link.symlink_to(real)
    gate = Gate.create(str(link))
    assert gate.check("GET", str(link / "x.jpg"), "").allowed
    link.unlink()
    link.symlink_to(other)  # the link now leads elsewhere: names below it are outside
    verdict = gate.check("GET", str(link / "x.jpg"), "")
    assert verdict.status == 403 and "resolves outside" in verdict.reason


def test_root_renamed_and_link_repointed_is_not_trusted(tmp_path: Path) -> None:
    real = tmp_path / "images"
    real.mkdir()
    (real / "a.jpg").write_bytes(b"x")
    link = tmp_path / "link"
    link.symlink_to(real)
    gate = Gate.create(str(link))
    assert gate.check("GET", str(link / "a.jpg"), "").allowed
    real.rename(tmp_path / "images-old")  # the link now follows the old tree...
    link.unlink()
    link.symlink_to(tmp_path / "images-old")
    real.mkdir()  # ...and a new directory takes the root's name
    (real / "a.jpg").write_bytes(b"y")
    verdict = gate.check("GET", str(link / "a.jpg"), "")
    assert verdict.status == 403 and "resolves outside" in verdict.reason


# ----------------------------------------------------------------- binding the name


@pytest.fixture(params=["openat2", "folder by folder"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test of Gate.open runs with openat2 and with the fallback without it."""
    from imageguard.files import beneath

    if request.param != "openat2":
        monkeypatch.setattr(beneath, "_syscall", None)
    elif beneath._syscall is None:
        pytest.skip("no openat2 here")
    return str(request.param)


def test_open_reaches_the_file_by_real_folders_only(tmp_path: Path, way: str) -> None:
    from imageguard.errors import FileChanged

    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "x.jpg").write_bytes(b"x")
    (root / "private").mkdir()
    (root / "private" / "x.jpg").write_bytes(b"secret")
    gate = Gate.create(str(root))
    fd, version = gate.open("a/b/x.jpg")
    assert version.inode == os.stat(root / "a" / "b" / "x.jpg").st_ino
    try:
        assert os.read(fd, 10) == b"x"
    finally:
        os.close(fd)
    # A folder that is now a link, a file that is now a link, a folder now a file,
    # a name not there, a folder where a file was: each refused, never followed.
    (root / "a" / "b").rename(root / "a" / "old-b")
    (root / "a" / "b").symlink_to(root / "private")
    (root / "link.jpg").symlink_to(root / "private" / "x.jpg")
    (root / "file").write_bytes(b"")
    (root / "dir.jpg").mkdir()
    for relpath in (
        "a/b/x.jpg", "link.jpg", "file/x.jpg", "a/missing.jpg", "dir.jpg", "a/../private/x.jpg"
    ):  # fmt: skip
        with pytest.raises(FileChanged):
            gate.open(relpath)


def test_open_leaves_no_descriptor_behind(tmp_path: Path, way: str) -> None:
    from imageguard.errors import FileChanged

    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.jpg").write_bytes(b"x")
    (root / "a" / "d.jpg").mkdir()
    gate = Gate.create(str(root))
    os.close(gate.open("a/x.jpg")[0])
    # No collection during the count: a file an earlier test dropped, closed by the
    # collector meanwhile, would look like one descriptor fewer.
    gc.collect()
    gc.disable()
    try:
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(50):
            os.close(gate.open("a/x.jpg")[0])
            for relpath in ("a/missing.jpg", "a/d.jpg", "missing/x.jpg", "a/x.jpg/y.jpg"):
                with pytest.raises(FileChanged):
                    gate.open(relpath)
        assert len(os.listdir("/proc/self/fd")) == before
    finally:
        gc.enable()


def test_hidden_existence_makes_disk_refusals_404(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "d.jpg").mkdir(parents=True)
    os.mkfifo(root / "f.jpg")
    (tmp_path / "out.jpg").write_bytes(b"x")
    (root / "out.jpg").symlink_to(tmp_path / "out.jpg")
    (root / "notes.txt").write_text("x")
    (root / "txt.jpg").symlink_to(root / "notes.txt")
    shown = Gate.create(str(root))
    hidden = Gate.create(str(root), hide_existence=True)
    for name in ("d.jpg", "f.jpg", "out.jpg", "txt.jpg", "missing.jpg"):
        assert hidden.check("GET", str(root / name), "").status == 404, name
        assert shown.check("GET", str(root / name), "").status in (403, 404), name
    # Refusals of the name asked for say nothing of the disk: the same either way.
    for name in ("notes.txt", ".hidden.jpg"):
        assert hidden.check("GET", str(root / name), "").status == 403
    assert hidden.check("POST", str(root / "d.jpg"), "").status == 405


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_open_needs_search_permission_only(way: str) -> None:
    """A folder Apache's user may enter but not list (mode 711) is no obstacle; a file it
    may not read is a permission error, not a change."""
    import shutil
    import tempfile

    top = Path(tempfile.mkdtemp(dir="/tmp"))  # /tmp is traversable by everyone
    top.chmod(0o755)
    root = top / "root"
    (root / "private").mkdir(parents=True)
    (root / "private" / "x.jpg").write_bytes(b"x")
    (root / "private" / "locked.jpg").write_bytes(b"y")
    (root / "private").chmod(0o711)
    (root / "private" / "locked.jpg").chmod(0o000)
    gate = Gate.create(str(root))
    pid = os.fork()
    if pid == 0:  # as nobody: the checks that matter need another user than root
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            os.close(gate.open("private/x.jpg")[0])
            try:
                gate.open("private/locked.jpg")
            except PermissionError:
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    shutil.rmtree(top)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize("refusal", ["ENOSYS", "EPERM"])
def test_without_openat2_it_goes_folder_by_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusal: str
) -> None:
    """An old kernel (ENOSYS) or a seccomp filter (EPERM, for a probe of "/" too)
    refusing openat2: the first open finds out, and every open from then on goes
    folder by folder."""
    import ctypes
    import errno

    from imageguard.files import beneath

    calls: list[bytes] = []

    def refusing(number: int, dirfd: int, path: bytes, *rest: object) -> int:
        calls.append(path)
        ctypes.set_errno(getattr(errno, refusal))
        return -1

    monkeypatch.setattr(beneath, "_syscall", refusing)
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.jpg").write_bytes(b"x")
    gate = Gate.create(str(root))
    for _ in range(3):
        fd, _version = gate.open("a/x.jpg")
        os.close(fd)
    probes = [b"/"] if refusal == "EPERM" else []
    assert calls == [os.fsencode(root / "a" / "x.jpg"), *probes]
    assert beneath._syscall is None


def test_a_file_refused_by_eperm_alone_keeps_openat2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EPERM for one file (an antivirus, a FUSE file system) while "/" opens: a refused
    permission for that file, and openat2 stays in use."""
    import ctypes
    import errno

    from imageguard.files import beneath

    real = beneath._syscall
    if real is None:
        pytest.skip("no openat2 here")

    def refusing_one(number: int, dirfd: int, path: bytes, *rest: object) -> int:
        if path.endswith(b"x.jpg"):
            ctypes.set_errno(errno.EPERM)
            return -1
        return int(real(number, dirfd, path, *rest))

    monkeypatch.setattr(beneath, "_syscall", refusing_one)
    root = tmp_path / "root"
    root.mkdir()
    (root / "x.jpg").write_bytes(b"x")
    with pytest.raises(PermissionError):
        Gate.create(str(root)).open("x.jpg")
    assert beneath._syscall is refusing_one


def test_a_replaced_root_is_followed_at_once(tmp_path: Path) -> None:
    """Nothing is kept open between requests: a root folder replaced (a tree swapped
    into place by renaming) is the root of the next open."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "x.jpg").write_bytes(b"old")
    gate = Gate.create(str(root))
    fd, _ = gate.open("x.jpg")
    os.close(fd)
    root.rename(tmp_path / "old-root")
    root.mkdir()
    (root / "x.jpg").write_bytes(b"new")
    fd, _ = gate.open("x.jpg")
    assert os.read(fd, 10) == b"new"
    os.close(fd)
