"""The access gate: which requested files may be served at all, before anyone's identity.

This is the pure half of the access handler. It looks only at facts Apache has already
worked out (the method, the mapped file name, the extra ``path_info``) and at the file
system, and refuses anything that is not a plain image file inside the protected root:

* a method other than GET or HEAD (405);
* any ``path_info`` (``/a.txt/x.jpg`` maps to ``a.txt`` with ``path_info`` ``/x.jpg``);
* a hidden segment (``.htaccess``, ``.git/config``) anywhere below the root;
* an extension outside the allow list, compared case-insensitively on the last one;
* a real path (symbolic links resolved) outside the root;
* anything that is not a regular file (a directory, a socket, a missing file).

The name as requested is judged before anything is looked up on disk. A refusal that
depends on the disk (not a regular file, a link leading outside the root or to a name
that would be refused) is a 404, like a missing file, when the gate hides existence
(``imageguard.deny_status 404``).

An allowed verdict carries the real file's path and its :class:`FileVersion` (from the
``lstat`` calls the gate made anyway). Those are a check, not a promise: names can be
swapped for links between two calls. What is sent is opened afterwards with
:meth:`Gate.open`, without following any link on the way, and only if that open
file is the version the gate saw.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from ..errors import ConfigError, FileChanged
from .beneath import open_beneath
from .fileversion import OPEN_FLAGS, FileVersion

DEFAULT_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp")
#: What an open below the root fails with when a name is missing, a link or not a folder
#: (or, EAGAIN, a file its owner holds a lease on: not to be had now either).
_NOT_THERE = frozenset(
    {errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.ENXIO, errno.EXDEV, errno.EAGAIN}
)
#: The methods the gate lets through, in the order a 405's Allow header names them.
ALLOWED_METHODS = ("GET", "HEAD")

OK = 200
FORBIDDEN = 403
NOT_FOUND = 404
METHOD_NOT_ALLOWED = 405
UNSUPPORTED_MEDIA_TYPE = 415


class Admission(NamedTuple):
    """An allowed verdict reached without symbolic links below the root, which a later
    request for the same name may reuse while :meth:`Gate.open` reaches the same version
    of the file; *via_alias*: the name reached the root through its configured link,
    which must then still lead there."""

    verdict: GateVerdict
    via_alias: bool


class GateVerdict(NamedTuple):
    """The gate's answer: ``status`` 200 lets the request go on.

    An allowed verdict names the file: ``relpath`` below the root, the real ``path``,
    and the ``version`` it had when the gate looked. (A named tuple: one is made on
    every request.)
    """

    status: int
    reason: str
    relpath: str = ""
    path: str = ""
    version: FileVersion | None = None

    @property
    def allowed(self) -> bool:
        """True when the request may continue to the next phase."""
        return self.status == OK


def parse_extensions(text: str | Iterable[str]) -> frozenset[str]:
    """Normalise an extension list: ``"jpg .PNG"`` becomes ``{".jpg", ".png"}``."""
    words = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    result = set()
    for word in words:
        ext = word.strip().lower()
        if not ext.startswith("."):
            ext = "." + ext
        if len(ext) < 2 or "/" in ext or ext.count(".") != 1:
            raise ConfigError(f"imageguard.extensions: {word!r} is not a file extension")
        result.add(ext)
    if not result:
        raise ConfigError("imageguard.extensions is empty: no file could ever be served")
    return frozenset(result)


def relative_to_root(path: str, root: str) -> str | None:
    """Return *path* relative to *root* with ``/`` separators, or None when outside it."""
    if path == root:
        return ""
    prefix = root if root.endswith("/") else root + "/"
    if not path.startswith(prefix):
        return None
    return path[len(prefix) :]


@dataclass(frozen=True)
class Gate:
    """The gate's configuration: the protected *root* (a real path) and allowed extensions.

    When the root was configured through a symbolic link (``/var/www/images`` leading to
    ``/srv/images``), Apache maps requests to names below the link. *alias* is that
    configured path and *root_id* the real root's (device, inode): a name below the alias
    is then read below the real root for the cost of one ``stat`` that checks the link
    still leads there, instead of resolving every name with ``realpath``.
    """

    root: str
    extensions: frozenset[str] = frozenset(DEFAULT_EXTENSIONS)
    alias: str = ""
    root_id: tuple[int, int] = (0, 0)
    #: Refuse everything whose refusal depends on what is on disk (a directory, a FIFO,
    #: a link leading outside the root or to a refused name) with 404, as a missing
    #: file is refused: ``imageguard.deny_status 404`` hides what exists.
    hide_existence: bool = False

    @classmethod
    def create(
        cls,
        root: str,
        extensions: str | Iterable[str] = DEFAULT_EXTENSIONS,
        *,
        hide_existence: bool = False,
    ) -> Gate:
        """Build a gate, resolving *root* to its real path and checking it is a directory."""
        if not root:
            raise ConfigError("imageguard.root is not set: name the protected directory")
        real = os.path.realpath(root)
        if not os.path.isdir(real):
            raise ConfigError(f"imageguard.root {root!r} is not a directory")
        real = real.rstrip("/") or "/"
        given = os.path.normpath(os.path.abspath(root))
        st = os.stat(real)
        return cls(
            real,
            parse_extensions(extensions),
            alias=given if given != real else "",
            root_id=(st.st_dev, st.st_ino),
            hide_existence=hide_existence,
        )

    def check(self, method: str, filename: str, path_info: str) -> GateVerdict:
        """Decide whether the file Apache mapped the request to may be served.

        The returned ``relpath`` is the *real* file's path below the root (symbolic links
        resolved), so that rules apply to the file itself however it was reached.
        """
        return self.admit(method, filename, path_info)[0]

    def admit(
        self, method: str, filename: str, path_info: str
    ) -> tuple[GateVerdict, Admission | None]:
        """:meth:`check`, with an :class:`Admission` to remember when the file was allowed
        on the fast path (no symbolic link below the root); None otherwise."""
        if method not in ALLOWED_METHODS:
            return GateVerdict(METHOD_NOT_ALLOWED, f"method {method} not allowed"), None
        if path_info:
            return self._extra_path(filename, path_info), None
        if not filename:
            return GateVerdict(FORBIDDEN, "request did not map to a file"), None
        name = os.path.normpath(filename)
        requested, via_alias = self._below_root(name)
        # The name as asked is judged first, from the request alone: its refusal says
        # nothing about what exists.
        if requested == "":
            return GateVerdict(FORBIDDEN, "the root directory itself is not an image"), None
        if requested is not None:
            refusal = self._check_name(requested)
            if refusal is not None:
                return refusal, None
        try:
            relpath, st, direct = self._resolve(name, requested)
        except OSError as exc:  # a link swapped while it was being read
            return GateVerdict(NOT_FOUND, f"{filename} changed while it was looked up: {exc}"), None
        except ValueError:  # a NUL, or a character no file name can hold: nothing there
            return GateVerdict(NOT_FOUND, f"{filename!r} cannot name a file"), None
        # From here on every refusal depends on what is on disk.
        if relpath is None:
            return self.on_disk(FORBIDDEN, f"{filename} resolves outside {self.root}"), None
        if not relpath:
            return self.on_disk(FORBIDDEN, "the root directory itself is not an image"), None
        if relpath != requested:  # reached through a link: the file it leads to must pass
            refusal = self._check_name(relpath)
            if refusal is not None:
                return self.on_disk(refusal.status, refusal.reason), None
            if not _is_utf8(relpath):
                return self.on_disk(FORBIDDEN, "a link leads to a name that is not UTF-8"), None
        if st is None:
            return GateVerdict(NOT_FOUND, f"{relpath}: no such file"), None
        if not stat.S_ISREG(st.st_mode):
            return self.on_disk(FORBIDDEN, f"{relpath} is not a regular file"), None
        path = f"{self.root.rstrip('/')}/{relpath}"
        verdict = GateVerdict(OK, "allowed", relpath, path, FileVersion.of(st))
        return verdict, Admission(verdict, via_alias) if direct else None

    def open(self, relpath: str) -> tuple[int, FileVersion]:
        """A read-only descriptor of the regular file *relpath* below the root, reached
        without following any link (:func:`~imageguard.files.beneath.open_beneath`), and its
        version.

        This binds the name the rules were checked for to the file that is sent: a file
        or folder swapped for a link at any moment makes the open fail instead of leading
        elsewhere (a check by path, ``lstat`` after ``lstat``, can be raced: a folder
        turned into a link between two calls leads the second one into another folder).
        Raises :class:`~imageguard.errors.FileChanged` when a name is not there, is a
        link, or is not a folder (or, last, a regular file); :class:`OSError` when a
        permission is refused. The caller closes the descriptor.
        """
        try:
            fd = open_beneath(self.root, relpath, OPEN_FLAGS)
        except OSError as exc:
            if exc.errno not in _NOT_THERE:
                raise  # a permission refused, say: not a change, and not to be hidden
            raise FileChanged(
                f"{relpath} cannot be reached without a link: {exc.strerror}"
            ) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise FileChanged(f"{relpath} is no longer a regular file")
        except BaseException:
            os.close(fd)
            raise
        return fd, FileVersion.of(st)

    def _extra_path(self, filename: str, path_info: str) -> GateVerdict:
        """The refusal of a request with extra path after a file name.

        Apache splits the path where the disk stops matching it (the first name that is
        a file, or not there), so the split itself tells what exists. Where existence is
        hidden, the whole path is judged as a name instead: refused for its name (403)
        as it would be anyway, or not found (404) like any file that is not there.
        """
        reason = f"extra path after the file name: {path_info!r}"
        if not self.hide_existence:
            return GateVerdict(FORBIDDEN, reason)
        whole, _ = self._below_root(os.path.normpath(filename + path_info))
        refusal = self._check_name(whole) if whole else None
        return refusal or GateVerdict(NOT_FOUND, reason)

    def on_disk(self, status: int, reason: str) -> GateVerdict:
        """A refusal that depends on what is on disk: 404 when existence is hidden."""
        return GateVerdict(NOT_FOUND if self.hide_existence else status, reason)

    def _below_root(self, name: str) -> tuple[str | None, bool]:
        """*name* (normalised) relative to the root or to its intact alias (else None),
        and whether it was below the alias."""
        relpath = relative_to_root(name, self.root)
        if relpath is None and self.alias:
            relpath = relative_to_root(name, self.alias)
            if relpath is not None:
                return (relpath if self.alias_intact() else None), True
        return relpath, False

    def alias_intact(self) -> bool:
        """True while the configured root still leads to the real root, and the real
        root's path still names it (neither re-pointed nor renamed since the start)."""
        try:
            through_alias = os.stat(self.alias)
            real = os.stat(self.root)
        except OSError:
            return False
        found = {(through_alias.st_dev, through_alias.st_ino), (real.st_dev, real.st_ino)}
        return found == {self.root_id}

    def _resolve(
        self, name: str, relpath: str | None
    ) -> tuple[str | None, os.stat_result | None, bool]:
        """The real file's path below the root (None: outside), its stat (None: missing),
        and whether it was reached without any symbolic link below the root.

        *relpath* is *name* below the root as asked for. The fast path, with no symbolic
        link below the root, costs one ``lstat`` per path segment below the root, the
        last of which also gives the file's type. Anything else takes ``realpath``.
        """
        if relpath:
            path = self.root
            st: os.stat_result | None = None
            for segment in relpath.split("/"):
                path = f"{path}/{segment}" if path != "/" else f"/{segment}"
                try:
                    st = os.lstat(path)
                except OSError:
                    return relpath, None, False
                if stat.S_ISLNK(st.st_mode):
                    break
            else:
                return relpath, st, True
        real = os.path.realpath(name)
        relpath = relative_to_root(real, self.root)
        if not relpath:
            return relpath, None, False
        try:
            return relpath, os.stat(real), False
        except OSError:
            return relpath, None, False

    def _check_name(self, relpath: str) -> GateVerdict | None:
        """Refuse hidden segments and extensions outside the allow list."""
        if relpath.startswith(".") or "/." in relpath:
            return GateVerdict(FORBIDDEN, f"hidden path segment in {relpath}")
        name = relpath.rpartition("/")[2]
        dot = name.rfind(".")
        ext = name[dot:].lower() if dot > 0 else ""
        if ext not in self.extensions:
            return GateVerdict(FORBIDDEN, f"extension {ext or '(none)'!r} not allowed")
        return None


def _is_utf8(name: str) -> bool:
    """False for a name read from disk whose bytes are not UTF-8 (Python keeps them as
    lone surrogates, which nothing downstream can encode)."""
    if name.isascii():
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
