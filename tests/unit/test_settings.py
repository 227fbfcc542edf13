"""Parsing PythonOption values, and the per-configuration runtime cache."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from imageguard.apache.runtime import Runtime, runtime_for
from imageguard.apache.settings import Settings
from imageguard.errors import ConfigError, FormatMismatch
from imageguard.files.gate import GateVerdict


def test_defaults(tmp_path: Path) -> None:
    settings = Settings.from_options({}, default_root=str(tmp_path))
    assert settings.root == str(tmp_path)
    assert settings.extensions == {".jpg", ".jpeg", ".png", ".gif", ".webp"}
    assert settings.deny_status == 403 and settings.max_age == 0
    assert settings.session_type == "DbmSession"
    assert settings.cookie_name == "pysid"
    assert settings.session_directory == tempfile.gettempdir()
    assert settings.dbm_filename == str(Path(tempfile.gettempdir()) / "mp_sess.dbm")
    assert settings.session_keys.user_key == "user"
    assert settings.login_url is None and settings.acl_db is None


def test_mod_python_option_precedence() -> None:
    settings = Settings.from_options(
        {
            "mod_python.session.database_directory": "/general",
            "mod_python.file_session.database_directory": "/files",
            "mod_python.dbm_session.database_directory": "/dbmdir",
            "mod_python.session.cookie_name": "sid",
        }
    )
    assert settings.session_directory == "/files"
    assert settings.dbm_filename == "/dbmdir/mp_sess.dbm"
    assert settings.cookie_name == "sid"
    named = Settings.from_options({"mod_python.dbm_session.database_filename": "/x/db"})
    assert named.dbm_filename == "/x/db"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"imageguard.deny_status": "500"}, "403 or 404"),
        ({"imageguard.deny_status": "four"}, "whole number"),
        ({"imageguard.max_age": "-1"}, "negative"),
        ({"imageguard.login_url": "javascript:x"}, "login_url"),
        ({"imageguard.extensions": ""}, "empty"),
        ({"imageguard.user_key": " "}, "empty"),
        ({"imageguard.acl_dbb": "/x"}, "unknown option imageguard.acl_dbb"),
        ({"mod_python.session.session_type": "MemorySession"}, "MemorySession"),
    ],
)
def test_bad_options(options: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_options(options)


def test_rendition_defaults() -> None:
    settings = Settings.from_options({})
    assert (settings.thumb_size, settings.preview_size) == (256, 1024)
    assert settings.watermark == "{host}" and settings.cache_dir is None
    assert settings.downgrade and settings.verify_content and not settings.placeholder
    assert settings.max_pixels == 50_000_000


def test_rendition_options() -> None:
    settings = Settings.from_options(
        {
            "imageguard.cache_dir": "/var/cache/imageguard",
            "imageguard.thumb_size": "128",
            "imageguard.preview_size": "800",
            "imageguard.watermark": "{user} {date}",
            "imageguard.downgrade": "off",
            "imageguard.verify_content": "off",
            "imageguard.extensions": ".jpg .svg",
            "imageguard.max_pixels": "1000000",
            "imageguard.placeholder": "on",
        }
    )
    assert settings.cache_dir == "/var/cache/imageguard"
    assert (settings.thumb_size, settings.preview_size) == (128, 800)
    assert settings.watermark == "{user} {date}"
    assert not settings.downgrade and not settings.verify_content and settings.placeholder
    assert settings.max_pixels == 1_000_000 and ".svg" in settings.extensions


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"imageguard.thumb_size": "8"}, "16 <= thumb_size"),
        ({"imageguard.thumb_size": "600", "imageguard.preview_size": "500"}, "preview_size"),
        ({"imageguard.preview_size": "20000"}, "8192"),
        ({"imageguard.watermark": "{user.__dict__}"}, "imageguard.watermark"),
        ({"imageguard.watermark": "{secret}"}, "imageguard.watermark"),
        ({"imageguard.downgrade": "maybe"}, "on or off"),
        ({"imageguard.max_pixels": "0"}, "max_pixels"),
        ({"imageguard.max_pixels": "500000000"}, "decompression-bomb"),
        ({"imageguard.extensions": ".jpg .svg"}, "cannot be verified"),
    ],
)
def test_bad_rendition_options(options: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_options(options)


def test_runtime_refuses_renditions_and_placeholder_without_a_cache(tmp_path: Path) -> None:
    runtime = runtime_for({"imageguard.root": str(tmp_path)}, "")
    with pytest.raises(ConfigError, match=r"imageguard\.cache_dir is not set"):
        runtime.renditions  # noqa: B018 - the property raises
    with pytest.raises(ConfigError, match="cache_dir is not set"):
        runtime_for({"imageguard.root": str(tmp_path), "imageguard.placeholder": "on"}, "")
    cache = tmp_path.parent / f"{tmp_path.name}-cache"
    cache.mkdir()
    runtime = runtime_for(
        {
            "imageguard.root": str(tmp_path),
            "imageguard.cache_dir": str(cache),
            "imageguard.placeholder": "on",
        },
        "",
    )
    assert Path(runtime.placeholder_path).read_bytes()[:4] == b"\x89PNG"


def test_runtime_is_built_once_per_configuration(tmp_path: Path) -> None:
    built: list[Settings] = []

    def build(settings: Settings) -> object:
        built.append(settings)
        return object()

    options = {"imageguard.root": str(tmp_path), "unrelated": "1"}
    first = runtime_for(options, "", build)  # type: ignore[arg-type]
    again = runtime_for({**options, "unrelated": "2"}, "", build)  # type: ignore[arg-type]
    other = runtime_for({**options, "imageguard.max_age": "5"}, "", build)  # type: ignore[arg-type]
    assert first is again and other is not first
    assert len(built) == 2


def test_config_errors_are_not_cached(tmp_path: Path) -> None:
    options = {"imageguard.root": str(tmp_path / "later")}
    with pytest.raises(ConfigError):
        runtime_for(options, "")
    (tmp_path / "later").mkdir()
    assert runtime_for(options, "").gate.root == str(tmp_path / "later")


def test_ticket_options(tmp_path: Path) -> None:
    settings = Settings.from_options(
        {
            "imageguard.session": "AUTH_TKT",
            "imageguard.tkt_secret_file": "/etc/s",
            "imageguard.tkt_digest": "SHA-512",
            "imageguard.tkt_timeout": "30m",
            "imageguard.tkt_bind_ip": "on",
            "imageguard.tkt_cookie": "tkt",
            "mod_python.session.session_type": "MemorySession",  # irrelevant for tickets
        }
    )
    assert settings.session_source == "auth_tkt"
    assert (settings.tkt_digest, settings.tkt_timeout) == ("sha512", 1800)
    assert settings.tkt_bind_ip and not settings.tkt_allow_no_timeout
    assert settings.tkt_cookie == "tkt" and settings.tkt_secret_file == "/etc/s"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"imageguard.session": "ldap"}, "modpython, auth_tkt or a login source of your own"),
        ({"imageguard.tkt_digest": "sha1"}, "unknown ticket digest"),
        ({"imageguard.tkt_timeout": "soon"}, "tkt_timeout"),
        ({"imageguard.tkt_bind_ip": "maybe"}, "on or off"),
    ],
)
def test_bad_ticket_options(options: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_options(options)


def test_ticket_runtime_needs_a_secret_file_and_a_timeout(tmp_path: Path) -> None:
    base = {"imageguard.root": str(tmp_path), "imageguard.session": "auth_tkt"}
    with pytest.raises(ConfigError, match=r"needs imageguard\.tkt_secret_file"):
        runtime_for(base, "")
    with pytest.raises(ConfigError, match="accept a stolen ticket forever"):
        runtime_for({**base, "imageguard.tkt_secret_file": "/x", "imageguard.tkt_timeout": "0"}, "")
    allowed = {
        **base,
        "imageguard.tkt_secret_file": "/x",
        "imageguard.tkt_timeout": "0",
        "imageguard.tkt_allow_no_timeout": "on",
    }
    assert runtime_for(allowed, "").settings.tkt_timeout == 0


def admitted(runtime: Runtime, path: Path) -> GateVerdict:
    """What the handlers' gate says of *path*; the file it opened is read and closed."""
    verdict, fd = runtime.admit_open("GET", str(path), "")
    assert (fd >= 0) == verdict.allowed
    if fd >= 0:
        assert os.fstat(fd).st_ino == os.stat(verdict.path).st_ino  # the file checked
        os.close(fd)
    return verdict


def test_admitted_files_are_checked_again_when_they_change(tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "images"
    (root / "a").mkdir(parents=True)
    photo = root / "a" / "x.jpg"
    Image.new("RGB", (8, 8)).save(photo)
    runtime = runtime_for({"imageguard.root": str(root)}, "")
    first = admitted(runtime, photo)
    assert first.allowed and admitted(runtime, photo) is first  # remembered
    photo.write_text("<html>now a page</html>")  # edited: another version
    edited = admitted(runtime, photo)
    assert edited is not first and edited.version != first.version
    with pytest.raises(FormatMismatch):  # the content is checked again, for this version
        runtime.check_content(edited)
    Image.new("RGB", (8, 8)).save(photo)
    runtime.check_content(admitted(runtime, photo))
    # The folder replaced by a link leading out of the root: another file, refused.
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.new("RGB", (9, 9)).save(outside / "x.jpg")
    (root / "a").rename(tmp_path / "old-a")
    (root / "a").symlink_to(outside)
    assert admitted(runtime, photo).status == 403


@pytest.mark.parametrize("moved", ["file", "folder"])
@pytest.mark.parametrize("to", ["private", ".trash", "outside"])
def test_a_remembered_admission_does_not_survive_a_move_behind_a_link(
    tmp_path: Path, moved: str, to: str
) -> None:
    from PIL import Image

    root = tmp_path / "images"
    (root / "public" / "album").mkdir(parents=True)
    (root / "private").mkdir()
    (root / ".trash").mkdir()
    (tmp_path / "outside").mkdir()
    photo = root / "public" / "album" / "a.jpg"
    Image.new("RGB", (8, 8)).save(photo)
    runtime = runtime_for({"imageguard.root": str(root)}, "")
    first = admitted(runtime, photo)
    assert first.relpath == "public/album/a.jpg"
    assert admitted(runtime, photo) is first  # remembered
    destination = tmp_path / "outside" if to == "outside" else root / to
    if moved == "file":  # the same inode, reached through a link left in its place
        photo.rename(destination / "a.jpg")
        photo.symlink_to(destination / "a.jpg")
    else:
        (root / "public" / "album").rename(destination / "album")
        (root / "public" / "album").symlink_to(destination / "album")
    again = admitted(runtime, photo)
    if to == "private":  # allowed, but as the file it now is: the ACL sees private/
        assert again.allowed and again.relpath.startswith("private/")
    else:
        assert again.status == 403, again
