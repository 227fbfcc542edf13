"""The rendition cache: names, one rendering under concurrency, atomic files, purge."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from imageguard.errors import ConfigError, RenditionError, UnreadableImage
from imageguard.files import renditioncache
from imageguard.files.content import ContentChecker
from imageguard.files.fileversion import FileVersion
from imageguard.files.renditioncache import RenditionCache, entry_name
from imageguard.files.renditions import RenditionSpec
from imageguard.policy.levels import Level

THUMB = RenditionSpec(Level.THUMB, 64)
PREVIEW = RenditionSpec(Level.PREVIEW, 128, "example.org")


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, RenditionCache]:
    root = tmp_path / "images"
    (root / "a").mkdir(parents=True)
    Image.new("RGB", (300, 200), "orange").save(root / "a" / "cat.jpg")
    cache = tmp_path / "cache"
    cache.mkdir()
    return root, RenditionCache(str(cache), str(root))


def get(cache: RenditionCache, root: Path, relpath: str, spec: RenditionSpec = THUMB) -> str:
    path = root / relpath
    version = FileVersion.of(os.stat(path))
    info = ContentChecker([".jpg", ".png"]).check(str(path), version)
    path = cache.path_for(relpath, version, info, spec)
    if not os.path.exists(path):
        cache.make(path, relpath, version, info, spec, 10**8)
    return path


def test_names_carry_the_version_the_variant_and_the_parameters() -> None:
    version = FileVersion(1, 42, 1000, 1_700_000_000_000_000_000, 1_700_000_000_500_000_000)
    name = entry_name(version, THUMB, "JPEG")
    assert name.startswith("42-1000-1700000000000000000-1700000000500000000.thumb64-")
    assert name.endswith(".jpg")
    rewritten = version._replace(ctime_ns=1_700_000_001_000_000_000)  # same size and mtime
    assert entry_name(rewritten, THUMB, "JPEG") != name
    assert entry_name(version, PREVIEW, "PNG").endswith(".png")
    other_text = RenditionSpec(Level.PREVIEW, 128, "example.org bob")
    assert entry_name(version, other_text, "JPEG") != entry_name(version, PREVIEW, "JPEG")
    edited = version._replace(size=1001)
    assert entry_name(edited, THUMB, "JPEG") != name


def test_made_once_then_served_from_disk(tree: tuple[Path, RenditionCache]) -> None:
    root, cache = tree
    path = get(cache, root, "a/cat.jpg")
    assert path.startswith(cache.directory + "/a/cat.jpg/")
    assert Image.open(path).size == (64, 43)
    made = os.stat(path).st_mtime_ns
    assert get(cache, root, "a/cat.jpg") == path
    assert os.stat(path).st_mtime_ns == made
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"


def test_concurrent_requests_render_once(
    tree: tuple[Path, RenditionCache], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, cache = tree
    calls = []
    real = renditioncache.make_rendition

    def slow(*args: object) -> bytes:
        calls.append(1)
        time.sleep(0.2)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(renditioncache, "make_rendition", slow)
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(get(cache, root, "a/cat.jpg")))
        for _ in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert len(set(results)) == 1 and len(results) == 20
    assert os.listdir(Path(results[0]).parent) == [Path(results[0]).name]


def test_other_processes_wait_for_the_lock(tree: tuple[Path, RenditionCache]) -> None:
    root, cache = tree
    target = cache.path_for(
        "a/cat.jpg",
        FileVersion.of(os.stat(root / "a/cat.jpg")),
        ContentChecker([".jpg"]).check(
            str(root / "a/cat.jpg"), FileVersion.of(os.stat(root / "a/cat.jpg"))
        ),
        THUMB,
    )
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child holds the rendition's lock for a moment
        try:
            with cache._locked(target):
                os.write(write, b"x")
                time.sleep(0.5)
        finally:
            os._exit(0)
    os.read(read, 1)
    started = time.monotonic()
    get(cache, root, "a/cat.jpg")
    waited = time.monotonic() - started
    os.waitpid(pid, 0)
    assert waited >= 0.3


def test_failed_rendering_leaves_nothing(tree: tuple[Path, RenditionCache]) -> None:
    root, cache = tree
    path = root / "a" / "cut.jpg"
    Image.effect_noise((300, 300), 40).convert("RGB").save(path)
    path.write_bytes(path.read_bytes()[:1500])  # the header still reads, the data is cut
    with pytest.raises(UnreadableImage):
        get(cache, root, "a/cut.jpg")
    folder = Path(cache.directory) / "a" / "cut.jpg"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_unwritable_cache_is_a_rendition_error(
    tree: tuple[Path, RenditionCache], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, cache = tree

    def refuse(*args: object, **kw: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(renditioncache.os, "makedirs", refuse)
    with pytest.raises(RenditionError, match="cannot write to the cache: Permission denied"):
        get(cache, root, "a/cat.jpg")


def test_without_lock_files_renditions_are_still_made(
    tree: tuple[Path, RenditionCache], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, cache = tree
    monkeypatch.setattr(renditioncache, "_open_lock", lambda path: None)
    assert Image.open(get(cache, root, "a/cat.jpg")).size == (64, 43)


def test_cache_inside_the_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "images" / "cache").mkdir(parents=True)
    with pytest.raises(ConfigError, match="must not lie inside"):
        RenditionCache(str(tmp_path / "images" / "cache"), str(tmp_path / "images"))
    with pytest.raises(ConfigError, match="is not a directory"):
        RenditionCache(str(tmp_path / "missing"), str(tmp_path / "images"))


def test_keep_makes_a_file_once(tree: tuple[Path, RenditionCache]) -> None:
    _, cache = tree
    calls = []

    def make() -> bytes:
        calls.append(1)
        return b"padlock"

    first = cache.keep("locked.png", make)
    assert cache.keep("locked.png", make) == first
    assert Path(first).read_bytes() == b"padlock" and calls == [1]


def test_purge(tree: tuple[Path, RenditionCache]) -> None:
    root, cache = tree
    Image.new("RGB", (100, 100), "blue").save(root / "a" / "dog.jpg")
    Image.new("RGB", (100, 100), "green").save(root / "a" / "gone.jpg")
    old = get(cache, root, "a/cat.jpg")
    keep = get(cache, root, "a/dog.jpg")
    gone = get(cache, root, "a/gone.jpg")
    cache.keep("locked.png", lambda: b"padlock")
    (root / "a" / "gone.jpg").unlink()
    Image.new("RGB", (300, 200), "red").save(root / "a" / "cat.jpg")  # edited
    os.utime(root / "a" / "cat.jpg", ns=(0, time.time_ns() + 10**9))
    new = get(cache, root, "a/cat.jpg")
    leftover = Path(cache.directory) / "a" / "dog.jpg" / ".tmp-crashed.part"
    leftover.write_bytes(b"half")
    os.utime(leftover, (0, 0))
    foreign = Path(cache.directory) / "README"
    foreign.write_text("not ours")
    summary = cache.purge()
    assert summary.removed == 3  # old cat, gone, the crash leftover
    assert not Path(old).exists() and not Path(gone).exists() and not leftover.exists()
    assert Path(keep).exists() and Path(new).exists() and foreign.exists()
    assert not (Path(cache.directory) / "a" / "gone.jpg").exists()  # empty folder removed
    assert (Path(cache.directory) / ".static" / "locked.png").exists()
    assert sorted(cache.entries()) == sorted([keep, new])
    everything = cache.purge(everything=True)
    assert everything.removed == 2 and list(cache.entries()) == []


def test_each_root_has_its_own_folder(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
    one = RenditionCache(str(cache), str(tmp_path / "one"))
    two = RenditionCache(str(cache), str(tmp_path / "two"))
    assert one.directory != two.directory
    assert one.directory.startswith(str(cache) + "/") and "one" in one.directory


def test_root_inside_the_cache_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cache" / "images").mkdir(parents=True)
    with pytest.raises(ConfigError, match="root must not lie inside"):
        RenditionCache(str(tmp_path / "cache"), str(tmp_path / "cache" / "images"))


def test_failures_are_remembered_per_version(
    tree: tuple[Path, RenditionCache], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, cache = tree
    calls = []

    def failing(*args: object) -> bytes:
        calls.append(1)
        raise UnreadableImage("cannot decode it: image file is truncated")

    monkeypatch.setattr(renditioncache, "make_rendition", failing)
    for _ in range(3):
        with pytest.raises(UnreadableImage, match="truncated"):
            get(cache, root, "a/cat.jpg")
    with pytest.raises(UnreadableImage):
        get(cache, root, "a/cat.jpg", PREVIEW)
    assert len(calls) == 1  # one attempt for that version of the file, whatever the variant


def test_purge_unused_and_everything_spare_other_files(tree: tuple[Path, RenditionCache]) -> None:
    root, cache = tree
    used = get(cache, root, "a/cat.jpg")
    unused = get(cache, root, "a/cat.jpg", PREVIEW)
    old = time.time() - 10 * 86400
    os.utime(unused, (old, old))
    notes = Path(cache.directory) / "a" / "cat.jpg" / "notes.txt"
    notes.write_text("someone's file")
    summary = cache.purge(unused_days=7)
    assert summary.removed == 1 and not Path(unused).exists() and Path(used).exists()
    assert cache.purge(everything=True).removed == 1
    assert notes.exists()  # only renditions are removed, whatever the option


def test_a_purge_leaves_a_folder_just_made_and_removes_an_old_empty_one(
    tree: tuple[Path, RenditionCache],
) -> None:
    _root, cache = tree
    fresh = Path(cache.directory) / "a" / "new.jpg"
    old = Path(cache.directory) / "a" / "old.jpg"
    fresh.mkdir(parents=True)
    old.mkdir(parents=True)
    past = time.time() - renditioncache.FRESH_FOLDER_S - 5
    os.utime(old, (past, past))
    cache.purge(everything=True)
    assert fresh.is_dir()  # another request is about to put its rendition there
    assert not old.exists()


def test_renditions_made_while_a_purge_runs_again_and_again(
    tree: tuple[Path, RenditionCache],
) -> None:
    """A purge running all the time (on another server sharing the cache, say) never
    makes a rendition fail: a folder it removes is made again."""
    root, cache = tree
    Image.new("RGB", (120, 90), "navy").save(root / "a" / "dog.jpg")
    stop = threading.Event()

    def purge_forever() -> None:
        while not stop.is_set():
            cache.purge(everything=True)

    purger = threading.Thread(target=purge_forever)
    purger.start()
    try:
        for number in range(600):
            relpath = ("a/cat.jpg", "a/dog.jpg")[number % 2]
            path = get(cache, root, relpath)
            assert path.startswith(cache.directory)
    finally:
        stop.set()
        purger.join()
