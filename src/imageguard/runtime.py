"""What the handlers keep between requests, and the request-independent steps they take.

A :class:`Runtime` is built once per distinct configuration (see :func:`runtime_for`) and
holds the parsed :class:`~imageguard.settings.Settings`, the :class:`~imageguard.gate.Gate`,
the session reader and the cached ACL. The handlers in :mod:`imageguard.handlers` only
translate between Apache's request and these objects. Nothing here imports mod_python.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from math import inf

from . import sharelinks
from .acl import Decision
from .content import EXTENSION_FORMATS, FORMAT_MEDIA_TYPES, ContentChecker, ImageInfo, media_type
from .cookies import find_cookie
from .errors import (
    ConfigError,
    ContentError,
    FileChanged,
    ShareLinkError,
    TicketError,
    TicketExpired,
)
from .fileversion import FileVersion
from .gate import ALLOWED_METHODS, FORBIDDEN, NOT_FOUND, Admission, Gate, GateVerdict
from .levels import Level
from .placeholder import PLACEHOLDER_NAME, locked_image
from .principals import ANONYMOUS, Identity
from .renditioncache import RenditionCache
from .renditions import RenditionSpec, output_format, watermark_text
from .secretfile import SecretFile
from .sessions import (
    LockFactory,
    SessionReader,
    StoredSession,
    identity_from_session,
    make_reader,
    valid_sid,
)
from .settings import Settings, is_relevant
from .sharelinks import ShareGrant
from .store import CachedAcl
from .tickets import (
    ParsedTicket,
    TicketVerifier,
    VerifiedTicket,
    check_timeout,
    decode_cookie_value,
    parse_ticket,
)

_LOGIN_LIMIT = 4096
_TICKET_LIMIT = 10_000
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


@dataclass(frozen=True)
class Login:
    """The outcome of reading a request's session.

    ``identity`` is :data:`~imageguard.principals.ANONYMOUS` when there is no valid login;
    ``reason`` says why, and ``suspicious`` marks a cookie that cannot have come from
    mod_python (worth a log line at error level). A well-formed cookie naming no session
    is not suspicious: after a logout or mod_python's clean-up of expired sessions, every
    browser still sends one.
    """

    identity: Identity
    reason: str
    suspicious: bool = False
    #: The ticket's user data (auth_tkt logins only), handed on as REMOTE_USER_DATA.
    user_data: str = ""


_NO_SESSION_COOKIE = Login(ANONYMOUS, "no session cookie")
_NO_TICKET_COOKIE = Login(ANONYMOUS, "no ticket cookie")
_MALFORMED_SESSION_COOKIE = Login(ANONYMOUS, "malformed session cookie", suspicious=True)
_NO_STORED_SESSION = Login(ANONYMOUS, "session cookie names no stored session")
_SESSION_EXPIRED = Login(ANONYMOUS, "session expired")
_NO_USER_IN_SESSION = Login(ANONYMOUS, "session holds no logged-in user")


class Runtime:
    """The long-lived objects for one configuration."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.gate = Gate.create(
            settings.root, settings.extensions, hide_existence=settings.deny_status == 404
        )
        #: The media type of each allowed extension: Apache is told it, never the name.
        self._media_types = {ext: media_type(ext) for ext in settings.extensions}
        #: The realm share links are checked against (the root's real path by default).
        self.share_realm = settings.share_realm or self.gate.root
        self.sessions: SessionReader | None = None
        if settings.session_source == "modpython":
            self.sessions = make_reader(
                settings.session_type, settings.session_directory, settings.dbm_filename
            )
        self._acl = CachedAcl(settings.acl_db) if settings.acl_db else None
        self._thumb_spec = RenditionSpec(Level.THUMB, settings.thumb_size)
        self._preview_specs: dict[str, RenditionSpec] = {}
        #: The Cache-Control of what is served (worked out once, sent every time).
        self.cache_control = f"private, max-age={settings.max_age}"
        #: Refusals that depend on what exists are 404s, like denials (deny_status 404).
        self.hides_existence = settings.deny_status == 404
        #: No ACL store: the gate alone decides (an access handler from an .htaccess).
        self.gate_only = settings.acl_db is None
        #: The cookie a login is read from.
        self.login_cookie = (
            settings.tkt_cookie if settings.session_source == "auth_tkt" else settings.cookie_name
        )
        #: Reading a DbmSession takes mod_python's dbm mutex; no other login does.
        self.needs_dbm_lock = (
            settings.session_source == "modpython" and settings.session_type == "DbmSession"
        )
        self.content = ContentChecker(
            (ext for ext in settings.extensions if ext in EXTENSION_FORMATS),
            settings.max_pixels,
        )
        self._renditions = (
            RenditionCache(settings.cache_dir, self.gate.root) if settings.cache_dir else None
        )
        if settings.placeholder:
            self.renditions  # noqa: B018 - raises ConfigError now when there is no cache
        self._secret_file = (
            SecretFile(settings.tkt_secret_file) if settings.tkt_secret_file else None
        )
        check_timeout(settings.tkt_timeout, settings.tkt_allow_no_timeout)
        # Built at the first ticket, from the secrets then in the file (never without).
        self._verifier: TicketVerifier | None = None
        if settings.session_source == "auth_tkt" and self._secret_file is None:
            raise ConfigError("imageguard.session auth_tkt needs imageguard.tkt_secret_file")
        # sid -> (the stored session object, the login it gives): the session reader
        # returns the same object while the session is unchanged, so this skips
        # re-validating the user and group names on every request.
        self._logins: dict[str, tuple[StoredSession, Login]] = {}
        # (the ticket's parts, bound address) -> (the secrets it was verified with, the
        # moment it expires, the ticket, its login): a ticket's digests are computed
        # once, not at every request; revocations are still looked up every time.
        self._tickets: dict[
            tuple[ParsedTicket, str], tuple[Sequence[bytes], float, VerifiedTicket, Login]
        ] = {}
        # file name -> the gate's admission of it (and the content check passed).
        self._admitted: dict[str, Admission] = {}

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
        return self.gate.admit(method, filename, path_info)[0]

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
                    self._admitted.pop(filename, None)
                verdict, admission = self.gate.admit(method, filename, path_info)
                if not verdict.allowed:
                    return verdict, -1
                fd = self._open_version(verdict)
                if fd < 0:
                    continue
                if admission is not None and len(filename) <= _ADMITTED_NAME_LIMIT:
                    if len(self._admitted) >= _ADMITTED_LIMIT:
                        self._admitted.clear()
                    self._admitted[filename] = admission
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
            assert verdict.version is not None
            try:
                self.content.check(verdict.path, verdict.version, fd)
            except ContentError as exc:
                raise type(exc)(f"{verdict.relpath}: {exc}") from None

    def media_type(self, path: str) -> str:
        """The Content-Type of an admitted original, from its (allowed) extension."""
        return self._media_types[path[path.rfind(".") :].lower()]

    @property
    def placeholder(self) -> str | None:
        """The padlock picture's path (drawn at first use), or None when it is off."""
        if not self.settings.placeholder:
            return None
        return self.renditions.keep(PLACEHOLDER_NAME, locked_image)

    def plan_rendition(
        self, verdict: GateVerdict, variant: Level, *, viewer: str, host: str, fd: int = -1
    ) -> PlannedRendition:
        """Which rendition *variant* of the admitted file to send, and where it is kept.

        The preview's watermark names *viewer* and *host* when the template asks for
        them. Nothing is made or read here beyond the (cached) content check, which reads
        a header not yet checked from *fd* when given (see :meth:`admit_open`).
        """
        assert verdict.version is not None
        spec = self._preview_spec(viewer, host) if variant is Level.PREVIEW else self._thumb_spec
        info = self.content.check(verdict.path, verdict.version, fd)
        path = self.renditions.path_for(verdict.relpath, verdict.version, info, spec)
        media = FORMAT_MEDIA_TYPES[output_format(info)]
        return PlannedRendition(path, verdict.relpath, verdict.version, info, spec, media)

    def _preview_spec(self, viewer: str, host: str) -> RenditionSpec:
        """The preview to make for *viewer* on *host* today (one object per watermark)."""
        settings = self.settings
        text = watermark_text(
            settings.watermark, host=host, user=viewer, date=time.strftime("%Y-%m-%d")
        )
        spec = self._preview_specs.get(text)
        if spec is None:
            if len(self._preview_specs) >= _SPEC_LIMIT:
                self._preview_specs.clear()
            spec = self._preview_specs[text] = RenditionSpec(
                Level.PREVIEW, settings.preview_size, text
            )
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

    def _make_verifier(self, secrets: tuple[bytes, ...]) -> TicketVerifier:
        settings = self.settings
        return TicketVerifier(
            secrets=secrets,
            digest=settings.tkt_digest,
            timeout=settings.tkt_timeout,
            allow_no_timeout=settings.tkt_allow_no_timeout,
            bind_ip=settings.tkt_bind_ip,
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
        """Who the request's login cookie names: a mod_python session or an auth_tkt ticket."""
        if self.settings.session_source == "auth_tkt":
            return self._ticket_login(cookie_headers, client_ip, now)
        return self._session_login(cookie_headers, lock, now)

    def _ticket_login(
        self, cookie_headers: Iterable[str], client_ip: str, now: float | None
    ) -> Login:
        value = find_cookie(cookie_headers, self.settings.tkt_cookie)
        if not value:
            return _NO_TICKET_COOKIE
        current = time.time() if now is None else now
        secrets = self.secrets()
        verifier = self._verifier
        if verifier is None or verifier.secrets is not secrets:
            verifier = self._verifier = self._make_verifier(secrets)
        try:
            # The ticket as its parts, whatever the dress of the cookie: many spellings
            # of one ticket are one entry (a client cannot fill the cache with them).
            parsed = parse_ticket(decode_cookie_value(value), verifier.digest)
        except TicketError as exc:
            return Login(ANONYMOUS, str(exc), suspicious=True)
        key = (parsed, client_ip if self.settings.tkt_bind_ip else "")
        known = self._tickets.get(key)
        if known is not None and known[0] is verifier.secrets and current <= known[1]:
            ticket, login = known[2], known[3]
        else:
            try:
                ticket = verifier.verify_parsed(parsed, client_ip, current)
            except TicketExpired as exc:
                return Login(ANONYMOUS, str(exc))
            except TicketError as exc:
                return Login(ANONYMOUS, str(exc), suspicious=True)
            identity = Identity(ticket.user, ticket.groups)
            login = Login(identity, "ticket", user_data=ticket.user_data)
            expires = ticket.timestamp + verifier.timeout if verifier.timeout else inf
            if len(self._tickets) >= _TICKET_LIMIT:
                self._tickets.clear()
            self._tickets[key] = (verifier.secrets, expires, ticket, login)
        signature_revoked, revoked_until = self.acl.revocations_of(ticket.digest, ticket.user)
        if signature_revoked:
            return Login(ANONYMOUS, f"ticket of {ticket.user} was revoked", suspicious=True)
        if revoked_until is not None and ticket.timestamp <= revoked_until:
            return Login(
                ANONYMOUS,
                f"tickets of {ticket.user} issued until {revoked_until} were revoked",
                suspicious=True,
            )
        return login

    def share(self, relpath: str, query: str, now: float | None = None) -> ShareGrant:
        """The grant of the share link in *query* for *relpath*; ShareLinkError if invalid."""
        if self._secret_file is None:
            raise ShareLinkError("share links need imageguard.tkt_secret_file")
        grant = sharelinks.verify(relpath, query, self.secrets(), now, realm=self.share_realm)
        if self.acl.signature_revoked(grant.signature):
            raise ShareLinkError("share link was revoked")
        return grant

    def _session_login(
        self, cookie_headers: Iterable[str], lock: LockFactory | None, now: float | None
    ) -> Login:
        """Find who the request's session cookie belongs to, reading the session read-only."""
        assert self.sessions is not None  # modpython logins always have a reader
        sid = find_cookie(cookie_headers, self.settings.cookie_name)
        if sid is None:
            return _NO_SESSION_COOKIE
        if not valid_sid(sid):
            return _MALFORMED_SESSION_COOKIE
        session = self.sessions.load(sid, lock)
        if session is None:
            return _NO_STORED_SESSION
        if not session.alive(time.time() if now is None else now):
            return _SESSION_EXPIRED
        return self._session_identity(sid, session)

    def _session_identity(self, sid: str, session: StoredSession) -> Login:
        """The login a live *session* gives; worked out once while the session is unchanged
        (the reader hands out the same object until the session file changes)."""
        known = self._logins.get(sid)
        if known is not None and known[0] is session:
            return known[1]
        identity = identity_from_session(session, self.settings.session_keys)
        login = _NO_USER_IN_SESSION if identity is None else Login(identity, "session")
        if len(self._logins) >= _LOGIN_LIMIT:
            self._logins.clear()
        self._logins[sid] = (session, login)
        return login

    def decide(self, relpath: str, identity: Identity) -> Decision:
        """What *identity* may see of *relpath* according to the ACL store."""
        return self.acl.decide(relpath, identity)


_RUNTIMES: dict[tuple[tuple[str, str], ...], Runtime] = {}
#: The same runtimes by the options exactly as Apache handed them over, and the default
#: root: one tuple and one dictionary look-up per request, no sorting or filtering.
_BY_RAW_OPTIONS: dict[tuple[tuple[tuple[str, str], ...], str], Runtime] = {}
_RAW_LIMIT = 1024
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
        if len(_BY_RAW_OPTIONS) >= _RAW_LIMIT:
            _BY_RAW_OPTIONS.clear()
        _BY_RAW_OPTIONS[raw] = found
        return found
