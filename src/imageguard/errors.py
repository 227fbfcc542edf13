"""The exceptions imageguard raises.

Every error a user can cause derives from :class:`ImageGuardError`, so the CLI and the
handlers can turn any of them into a one-line message (CLI) or a refusal plus a one-line
log entry (Apache) without catching unrelated bugs by accident.
"""

from __future__ import annotations


class ImageGuardError(Exception):
    """Base class of every error imageguard reports to a person."""


class RuleError(ImageGuardError, ValueError):
    """A rule part is malformed: a pattern, a principal or a level."""


class PatternError(RuleError):
    """A path pattern cannot be compiled."""


class PrincipalError(RuleError):
    """A principal is not one of ``user:NAME``, ``group:NAME``, ``authenticated``, ``anyone``."""


class LevelError(RuleError):
    """A level is not one of ``full``, ``preview``, ``thumb``, ``deny``."""


class ConfigError(ImageGuardError):
    """A ``PythonOption`` or CLI setting has a value imageguard cannot use."""


class StoreError(ImageGuardError):
    """The ACL store is missing, unreadable, of an unknown schema, or a write was refused."""


class StoreUnavailable(StoreError):
    """The ACL store's database cannot be reached now (PostgreSQL down, or the network to
    it): the request is refused with 503 unless ``imageguard.stale_ok`` lets a
    remembered answer stand; the server recovers by itself when the database returns.

    :attr:`reason` is the database's own words (libpq's first line), without the store's
    name the message starts with."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


class NoSuchRule(StoreError):
    """A revoke or lookup named a rule that the store does not hold."""


class ImportFormatError(StoreError):
    """A rules file given to ``import`` has a malformed line; nothing was imported."""


class SignedValueError(ImageGuardError):
    """A signed value from a client (an auth_tkt ticket, a share link) was refused; the
    message says why (for the log, never the client).

    The classes below it say what was wrong, whatever the value; :class:`TicketError`
    and :class:`ShareLinkError` say which kind of value it was, and each concrete error
    derives from one of each (:class:`BadSignature` is a :class:`TicketError` and a
    :class:`SignatureMismatch`)::

        SignedValueError
        ├── MalformedValue      MalformedTicket, MalformedShareLink
        ├── SignatureMismatch   BadSignature, ShareLinkMismatch
        ├── SignatureExpired    TicketExpired, ShareLinkExpired
        ├── SignedInFuture      TicketFromFuture
        ├── TicketError         (and TicketRevoked)
        └── ShareLinkError
    """


class MalformedValue(SignedValueError):
    """The value does not have the form of a signed value of its kind: nothing to verify."""


class SignatureMismatch(SignedValueError):
    """The signature matches no configured secret: tampered with, made with another key,
    or with a secret since retired (:class:`imageguard.identity.signer.Signer` raises it)."""


class SignatureExpired(SignedValueError):
    """The signature is right, but the value is past its lifetime."""


class SignedInFuture(SignedValueError):
    """The signature is right, but the value is stamped later than clocks can drift."""


class TicketError(SignedValueError):
    """An auth_tkt ticket was refused; the message says why (for the log, never the client)."""


class MalformedTicket(TicketError, MalformedValue):
    """The cookie value is not an auth_tkt ticket at all."""


class BadSignature(TicketError, SignatureMismatch):
    """The ticket's digest does not match any configured secret: tampered or foreign."""


class TicketExpired(TicketError, SignatureExpired):
    """The ticket is older than the configured timeout."""


class TicketFromFuture(TicketError, SignedInFuture):
    """The ticket's timestamp lies further in the future than clocks can drift."""


class TicketRevoked(TicketError):
    """The ticket, or every ticket of its user issued before a moment, was revoked."""


class ShareLinkError(SignedValueError):
    """A share link was refused: malformed, tampered, expired, revoked or for another path."""


class MalformedShareLink(ShareLinkError, MalformedValue):
    """The query holds no share link of the current form (a parameter missing or ill-formed,
    a level that grants nothing, text that is not UTF-8)."""


class ShareLinkMismatch(ShareLinkError, SignatureMismatch):
    """The link's signature matches no secret for this image, level, expiry, user and realm."""


class ShareLinkExpired(ShareLinkError, SignatureExpired):
    """The link is past its expiry."""


class VariantError(ImageGuardError):
    """A request asked for a variant that does not exist (``?v=`` other than thumb/preview)."""


class ContentError(ImageGuardError):
    """A file's bytes cannot be served as the image its name promises; the message says why."""


class FormatMismatch(ContentError):
    """The file is not in the format its extension names (HTML called ``.jpg``, ...)."""


class UnreadableImage(ContentError):
    """The file is empty, truncated or corrupt, or Pillow cannot decode it."""


class UnreadableFile(UnreadableImage):
    """The system refused to read the file (permissions, no descriptors left): not kept,
    since the next attempt may succeed."""


class ImageTooLarge(ContentError):
    """The image has more pixels than ``imageguard.max_pixels`` (a decompression bomb)."""


class FileChanged(ImageGuardError):
    """The file at a checked path is no longer the file that was checked (replaced, moved,
    turned into a link or removed in between); nothing of it is read or sent."""


class RenditionError(ImageGuardError):
    """A rendition could not be made or stored (a full disk, an unwritable cache)."""
