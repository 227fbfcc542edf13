"""What the handlers keep between requests, and the request-independent steps they take.

A :class:`Runtime` is built once per distinct configuration (see :func:`runtime_for`) and
holds the parsed :class:`~imageguard.apache.settings.Settings`, the
:class:`~imageguard.files.gate.Gate`, the login source, the cached ACL and what every
answer repeats (its headers). The policy (:func:`imageguard.policy.decision.decide`) uses
it for the steps that touch the disk or the store; the adapters in
:mod:`imageguard.apache.adapters` only translate between Apache's request and the
policy. Nothing here imports mod_python.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ..errors import ConfigError, ContentError, FileChanged, ShareLinkError
from ..files.content import FORMAT_MEDIA_TYPES, ContentChecker, ImageInfo, media_type
from ..files.fileversion import FileVersion
from ..files.gate import ALLOWED_METHODS, FORBIDDEN, NOT_FOUND, Admission, Gate, GateVerdict
from ..files.placeholder import PLACEHOLDER_NAME, locked_image
from ..files.renditioncache import RenditionCache
from ..files.renditions import RenditionSpec, output_format, watermark_text
from ..identity import sharelinks
from ..identity.logins import login_source
from ..identity.secretfile import SecretFile
from ..identity.sessions import LockFactory
from ..identity.sharelinks import ShareGrant
from ..identity.tickets import check_timeout
from ..policy.acl import Decision
from ..policy.decision import Facts, Login, LoginSource
from ..policy.levels import Level
from ..policy.principals import Identity
from ..store import CachedAcl
from ..support.boundedcache import BoundedCache
from .settings import Settings, is_relevant

_SPEC_LIMIT = 4096
_ADMITTED_LIMIT = 100_000
#: Longer file names are checked in full every time, never remembered.
_ADMITTED_NAME_LIMIT = 1024


@dataclass(frozen=True)
class PlannedRendition:
    """A rendition to send: where it is kept, and what to make it from if it is not."""

    path: str
    relpath: str
    version: FileVersion
    info: ImageInfo
    spec: RenditionSpec
    media_type: str


class Runtime:
    """The long-lived objects for one configuration."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        #: Refusals that depend on what exists are 404s, like denials (deny_status 404).
        self.hides_existence = settings.deny_status == 404
        self.gate = Gate.create(
            settings.root, settings.extensions, hide_existence=self.hides_existence
        )
        #: The media type of each allowed extension: Apache is told it, never the name.
        self._media_types = {ext: media_type(ext) for ext in settings.extensions}
        #: The realm share links are checked against (the root's real path by default).
        self.share_realm = settings.link_realm
        #: Who a request's credentials name (chosen here, once: the policy never asks which).
        self.logins: LoginSource = login_source(settings, self.secrets, lambda: self.acl)
        self._acl = (
            CachedAcl(settings.acl_db, stale_ok=settings.stale_ok) if settings.acl_db else None
        )
        self._thumb_spec = RenditionSpec(Level.THUMB, settings.thumb_size)
        self._preview_specs: BoundedCache[str, RenditionSpec] = BoundedCache(_SPEC_LIMIT)
        #: The Cache-Control of what is served (worked out once, sent every time).
        self.cache_control = f"private, max-age={settings.max_age}"
        #: The headers of everything admitted (Vary is added to, not replaced).
        self.served_headers = (
            ("Cache-Control", self.cache_control),
            ("X-Content-Type-Options", "nosniff"),
        )
        #: No ACL store: the gate alone decides (an access handler from an .htaccess).
        self.gate_only = settings.acl_db is None
        self.content = ContentChecker.for_site(settings.extensions, settings.max_pixels)
        self._renditions = (
            RenditionCache(settings.cache_dir, self.gate.root) if settings.cache_dir else None
        )
        if settings.placeholder:
            self.renditions  # noqa: B018 - raises ConfigError now when there is no cache
        self._secret_file = (
            SecretFile(settings.tkt_secret_file) if settings.tkt_secret_file else None
        )
        check_timeout(settings.tkt_timeout, settings.tkt_allow_no_timeout)
        if settings.session_source == "auth_tkt" and self._secret_file is None:
            raise ConfigError("imageguard.session auth_tkt needs imageguard.tkt_secret_file")
        # file name -> the gate's admission of it (and the content check passed).
        self._admitted: BoundedCache[str, Admission] = BoundedCache(_ADMITTED_LIMIT)

    @property
    def acl(self) -> CachedAcl:
        """The cached ACL store; a :class:`ConfigError` when ``imageguard.acl_db`` is unset."""
        if self._acl is None:
            raise ConfigError("imageguard.acl_db is not set: name the ACL store (imageguard init)")
        return self._acl

    @property
    def renditions(self) -> RenditionCache:
        """The rendition cache; a :class:`ConfigError` when ``imageguard.cache_dir`` is unset."""
        if self._renditions is None:
            raise ConfigError(
                "imageguard.cache_dir is not set: thumb and preview renditions (and the "
                "placeholder) need a cache directory writable by Apache's user"
            )
        return self._renditions

    def admit(self, method: str, filename: str, path_info: str) -> GateVerdict:
        """The gate's verdict on a request, by name and ``lstat`` (for commands and tools;
        the handlers use :meth:`admit_open`, which also binds the file)."""
        return self.gate.check(method, filename, path_info)

    def admit_open(self, method: str, filename: str, path_info: str) -> tuple[GateVerdict, int]:
        """The gate's verdict on a request and, when it is allowed, a descriptor of the very
        file it is about (-1 otherwise; the caller closes it).

        The descriptor comes from :meth:`Gate.open`, which follows no link on the way, and
        must be the version the gate's checks saw: that binds the name the
        rules are checked for to the file sent. An allowed verdict reached without links
        is remembered by file name; a later request for that name costs only the open
        and a ``fstat`` (the open itself proves that no link has appeared on the way, and
        the version that the file was not replaced). Anything else goes through the whole
        gate again, twice at most; a file that changes under both looks is a 404. A file
        Apache's user may not read is refused as the disk's other refusals are (404 where
        existence is hidden).
        """
        remembered = method in ALLOWED_METHODS and not path_info
        try:
            for _ in range(2):
                known = self._admitted.get(filename) if remembered else None
                if known is not None:
                    fd = self._open_version(known.verdict)
                    if fd >= 0 and (not known.via_alias or self.gate.alias_intact()):
                        return known.verdict, fd
                    if fd >= 0:
                        os.close(fd)
                    self._admitted.discard(filename)
                verdict, admission = self.gate.admit(method, filename, path_info)
                if not verdict.allowed:
                    return verdict, -1
                fd = self._open_version(verdict)
                if fd < 0:
                    continue
                if admission is not None and len(filename) <= _ADMITTED_NAME_LIMIT:
                    self._admitted.put(filename, admission)
                return verdict, fd
        except PermissionError as exc:  # the gate's look only needed to search folders
            reason = f"{exc.filename or filename}: not readable by Apache's user"
            return self.gate.on_disk(FORBIDDEN, reason), -1
        return GateVerdict(NOT_FOUND, f"{filename} changed while it was being checked"), -1

    def _open_version(self, verdict: GateVerdict) -> int:
        """:meth:`Gate.open` of the verdict's file, if it is the verdict's version; else -1."""
        try:
            fd, version = self.gate.open(verdict.relpath)
        except FileChanged:
            return -1
        if version == verdict.version:
            return fd
        os.close(fd)
        return -1

    def check_content(self, verdict: GateVerdict, fd: int = -1) -> None:
        """ContentError unless the admitted file holds the image its name promises (when
        ``imageguard.verify_content`` is on; the verdict is kept per file version). With
        *fd* (from :meth:`admit_open`), a header not yet checked is read from it."""
        if self.settings.verify_content:
            if verdict.version is None:
                raise ValueError("only an admitted file's content can be checked")
            try:
                self.content.check(verdict.path, verdict.version, fd)
            except ContentError as exc:
                raise type(exc)(f"{verdict.relpath}: {exc}") from None

    def media_type(self, path: str) -> str:
        """The Content-Type of an admitted original, from its (allowed) extension."""
        return self._media_types[path[path.rfind(".") :].lower()]

    @property
    def placeholder_path(self) -> str:
        """The padlock picture's path, drawn at first use (ConfigError without a cache)."""
        return self.renditions.keep(PLACEHOLDER_NAME, locked_image)

    def plan_rendition(
        self,
        verdict: GateVerdict,
        variant: Level,
        *,
        viewer: str,
        host: str,
        fd: int = -1,
        now: float | None = None,
    ) -> PlannedRendition:
        """Which rendition *variant* of the admitted file to send, and where it is kept.

        The preview's watermark names *viewer* and *host* when the template asks for
        them (and the date of *now*, by default the present). Nothing is made or read
        here beyond the (cached) content check, which reads a header not yet checked
        from *fd* when given (see :meth:`admit_open`).
        """
        if verdict.version is None:
            raise ValueError("a rendition can only be planned for an admitted file")
        spec = (
            self._preview_spec(viewer, host, now) if variant is Level.PREVIEW else self._thumb_spec
        )
        info = self.content.check(verdict.path, verdict.version, fd)
        path = self.renditions.path_for(verdict.relpath, verdict.version, info, spec)
        media = FORMAT_MEDIA_TYPES[output_format(info)]
        return PlannedRendition(path, verdict.relpath, verdict.version, info, spec, media)

    def _preview_spec(self, viewer: str, host: str, now: float | None) -> RenditionSpec:
        """The preview to make for *viewer* on *host* on the day of *now* (one object per
        watermark)."""
        settings = self.settings
        date = time.strftime("%Y-%m-%d", time.localtime(now))
        text = watermark_text(settings.watermark, host=host, user=viewer, date=date)
        spec = self._preview_specs.get(text)
        if spec is None:
            spec = RenditionSpec(Level.PREVIEW, settings.preview_size, text)
            self._preview_specs.put(text, spec)
        return spec

    def make_rendition(self, planned: PlannedRendition, fd: int = -1) -> None:
        """Make *planned* in the cache (if no one did meanwhile), from *fd* when given;
        ContentError if it cannot be made from the file, RenditionError if it cannot be
        stored."""
        self.renditions.make(
            planned.path,
            planned.relpath,
            planned.version,
            planned.info,
            planned.spec,
            self.settings.max_pixels,
            fd,
        )

    def secrets(self) -> tuple[bytes, ...]:
        """The secret file's secrets (re-read when it changed), newest first."""
        if self._secret_file is None:
            raise ConfigError("imageguard.tkt_secret_file is not set")
        return self._secret_file.secrets()

    def login(
        self,
        cookie_headers: Iterable[str],
        lock: LockFactory | None = None,
        now: float | None = None,
        client_ip: str = "",
    ) -> Login:
        """Who these ``Cookie`` headers name, by the configuration's login source (for
        tools and tests; the policy asks :attr:`logins` with the request's facts)."""
        facts = Facts(
            "GET",
            "",
            cookies=tuple(cookie_headers),
            client_ip=client_ip,
            now=time.time() if now is None else now,
            session_lock=lock,
        )
        return self.logins.login(facts)

    def share(self, relpath: str, query: str, now: float | None = None) -> ShareGrant:
        """The grant of the share link in *query* for *relpath*; ShareLinkError if invalid."""
        if self._secret_file is None:
            raise ShareLinkError("share links need imageguard.tkt_secret_file")
        grant = sharelinks.verify(relpath, query, self.secrets(), now, realm=self.share_realm)
        if self.acl.signature_revoked(grant.signature):
            raise ShareLinkError("share link was revoked")
        return grant

    def decide(self, relpath: str, identity: Identity) -> Decision:
        """What *identity* may see of *relpath* according to the ACL store."""
        return self.acl.decide(relpath, identity)


_RUNTIMES: dict[tuple[tuple[str, str], ...], Runtime] = {}
#: The same runtimes by the options exactly as Apache handed them over, and the default
#: root: one tuple and one dictionary look-up per request, no sorting or filtering.
_RAW_LIMIT = 1024
_BY_RAW_OPTIONS: BoundedCache[tuple[tuple[tuple[str, str], ...], str], Runtime] = (
    BoundedCache(_RAW_LIMIT)
)
_RUNTIMES_LOCK = threading.Lock()


def runtime_for(
    options: Mapping[str, str],
    default_root: str,
    build: Callable[[Settings], Runtime] = Runtime,
) -> Runtime:
    """The runtime for these options, built on first use and kept for the process's life.

    Two directories configured alike share one runtime (keyed by the relevant options,
    sorted) and a directory configured differently gets its own. A configuration error
    is raised every time (and not kept), so that fixing the config takes effect.
    """
    raw = (tuple(options.items()), default_root)
    found = _BY_RAW_OPTIONS.get(raw)
    if found is not None:
        return found
    key = tuple(sorted((k, v) for k, v in options.items() if is_relevant(k)))
    if "imageguard.root" not in options:
        key += (("default_root", default_root),)
    with _RUNTIMES_LOCK:
        found = _RUNTIMES.get(key)
        if found is None:
            found = _RUNTIMES[key] = build(Settings.from_options(dict(key), default_root))
        _BY_RAW_OPTIONS.put(raw, found)
        return found
