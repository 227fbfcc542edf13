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


class NoSuchRule(StoreError):
    """A revoke or lookup named a rule that the store does not hold."""


class ImportFormatError(StoreError):
    """A rules file given to ``import`` has a malformed line; nothing was imported."""


class TicketError(ImageGuardError):
    """An auth_tkt ticket was refused; the message says why (for the log, never the client)."""


class MalformedTicket(TicketError):
    """The cookie value is not an auth_tkt ticket at all."""


class BadSignature(TicketError):
    """The ticket's digest does not match any configured secret: tampered or foreign."""


class TicketExpired(TicketError):
    """The ticket is older than the configured timeout."""


class TicketFromFuture(TicketError):
    """The ticket's timestamp lies further in the future than clocks can drift."""


class TicketRevoked(TicketError):
    """The ticket, or every ticket of its user issued before a moment, was revoked."""


class ShareLinkError(ImageGuardError):
    """A share link was refused: malformed, tampered, expired, revoked or for another path."""


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
