"""auth_tkt tickets: the signed login cookie of mod_auth_tkt, Pyramid and friends.

A ticket is plain text::

    hexdigest + "%08x" % timestamp + uid + "!" + tokens + "!" + user_data

where *tokens* is a comma-separated list (imageguard treats them as groups) and the
digest, with ``H`` one of MD5, SHA-256 or SHA-512 written as lower-case hex, is::

    H( hex(H(ip + ts + secret + uid + "\\0" + tokens + "\\0" + user_data)) + secret )

For an IPv4 address, ``ip + ts`` is the four address bytes followed by the timestamp as
four big-endian bytes (mod_auth_tkt's layout; ``0.0.0.0`` when the ticket is not bound
to an address). For an IPv6 address it is the address text followed by the timestamp in
decimal (Pyramid's extension; mod_auth_tkt itself cannot bind IPv6 clients).

Cookie values arrive in three dresses, all accepted: raw (Pyramid), base64 (mod_auth_tkt's
own tools, Apache::AuthTkt) and with ``!`` escaped as ``%21``; surrounding double quotes
are removed. Pyramid URL-quotes the uid in the cookie while signing it unquoted, and by
default stores it base64-encoded (``userid_type:b64unicode`` in the user data); both are
understood.

:class:`TicketVerifier` checks a ticket against one or more secrets (newest first, for
key rotation) in constant time, with a :class:`~imageguard.identity.signer.Signer` whose algorithm
is the double hash above (:class:`AuthTktAlgorithm`); :func:`issue_ticket` writes one that
imageguard and mod_auth_tkt both accept.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import (
    BadSignature,
    ConfigError,
    MalformedTicket,
    TicketExpired,
    TicketFromFuture,
)
from ..policy.principals import check_name, valid_groups
from .cookies import unquote
from .secretfile import check_secrets
from .signer import Message, Signer

#: The digest algorithms a ticket may use, by the names used in the options.
DIGESTS: dict[str, Callable[..., Any]] = {
    "md5": hashlib.md5,
    "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
}
DEFAULT_DIGEST = "sha256"
DEFAULT_TIMEOUT_S = 2 * 60 * 60
#: How far in the future a ticket's timestamp may lie (clocks of two servers drift).
MAX_CLOCK_SKEW_S = 5 * 60
UNBOUND_IP = "0.0.0.0"
_TIMESTAMP_HEX = 8
_PYRAMID_USERID_TYPE = "userid_type:"


def digest_hex_length(digest: str) -> int:
    """How many hex characters a ticket's digest has with algorithm *digest*."""
    return DIGESTS[digest]().digest_size * 2


def check_digest_name(name: str) -> str:
    """Return *name* lower-cased if it names a supported digest, else raise ConfigError."""
    lowered = name.strip().lower().replace("-", "")
    if lowered not in DIGESTS:
        raise ConfigError(f"unknown ticket digest {name!r}: use md5, sha256 or sha512")
    return lowered


def _ip_and_time(ip: str, timestamp: int) -> bytes:
    """The address-and-time prefix of the signed text (see the module docstring)."""
    if ":" in ip:
        return f"{ip}{timestamp}".encode("ascii")
    try:
        packed = ipaddress.IPv4Address(ip).packed
    except ValueError:
        raise MalformedTicket(f"client address {ip!r} is not an IP address") from None
    return packed + timestamp.to_bytes(4, "big")


def _message(ip: str, timestamp: int, uid: str, tokens: str, user_data: str) -> Message:
    """A ticket's signed message: the address-and-time part, then uid, tokens and user
    data separated by NULs (the secret goes between the two: see :class:`AuthTktAlgorithm`)."""
    return (
        _ip_and_time(ip, timestamp),
        uid.encode("utf-8") + b"\0" + tokens.encode("utf-8") + b"\0" + user_data.encode("utf-8"),
    )


@dataclass(frozen=True)
class AuthTktAlgorithm:
    """mod_auth_tkt's signature, for :class:`~imageguard.identity.signer.Signer`: with ``H`` the
    *digest*, ``H(hex(H(ip_and_time + secret + rest)) + secret)`` over a message
    ``(ip_and_time, rest)`` (see the module docstring). The secret is its own key."""

    digest: str = DEFAULT_DIGEST

    def derive_key(self, secret: bytes) -> bytes:
        """The secret itself: auth_tkt hashes it in as it is."""
        return secret

    def signature(self, key: bytes, message: Message) -> bytes:
        """The raw outer digest (its hex is the ticket's digest)."""
        new = DIGESTS[self.digest]
        address_and_time, rest = message
        inner = new(address_and_time + key + rest).hexdigest()
        return new(inner.encode("ascii") + key).digest()


def ticket_signer(secrets: Sequence[bytes], digest: str = DEFAULT_DIGEST) -> Signer:
    """The signer of auth_tkt tickets with *secrets* (newest first) and *digest*."""
    return Signer(
        secrets=secrets,
        algorithm=AuthTktAlgorithm(digest),
        encoding="hex",
        mismatch=BadSignature,
        # The client's address is signed in: a ticket bound to another address (a client
        # whose address changed) fails exactly as a forged one does.
        reason="ticket signature matches no configured secret (or the ticket is bound to "
        "another client address)",
    )


def ticket_digest(
    secret: bytes,
    ip: str,
    timestamp: int,
    uid: str,
    tokens: str,
    user_data: str,
    digest: str = DEFAULT_DIGEST,
) -> str:
    """The hex digest that signs a ticket (the double hash of the module docstring)."""
    return (
        AuthTktAlgorithm(digest)
        .signature(secret, _message(ip, timestamp, uid, tokens, user_data))
        .hex()
    )


@dataclass(frozen=True)
class ParsedTicket:
    """The parts of a ticket, as written in it (nothing verified yet)."""

    digest: str
    timestamp: int
    uid: str
    tokens: str
    user_data: str


def decode_cookie_value(value: str) -> str:
    """The ticket text inside a cookie value: unquoted, ``%21``-unescaped or base64-decoded."""
    text = unquote(value.strip())
    if "!" in text:
        return text
    if "%21" in text.lower():
        return urllib.parse.unquote(text)
    try:
        decoded = base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise MalformedTicket("cookie is neither a ticket nor a base64-encoded one") from None
    if "!" not in decoded:
        raise MalformedTicket("decoded cookie holds no '!' separator")
    return decoded


def _is_utf8_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_ticket(text: str, digest: str = DEFAULT_DIGEST) -> ParsedTicket:
    """Split ticket *text* into its parts; :class:`MalformedTicket` when it cannot be."""
    size = digest_hex_length(digest)
    head = size + _TIMESTAMP_HEX
    if "\0" in text:
        raise MalformedTicket("ticket contains a NUL character")
    if not text.isascii() and not _is_utf8_text(text):  # lone surrogates: nothing to sign
        raise MalformedTicket("ticket is not UTF-8 text")
    if len(text) <= head or text.find("!") < head:
        raise MalformedTicket(f"ticket too short for a {digest} digest")
    mac = text[:size]
    stamp = text[size:head]
    if not all(c in "0123456789abcdefABCDEF" for c in mac + stamp):
        raise MalformedTicket("digest or timestamp is not hexadecimal")
    uid, _, rest = text[head:].partition("!")
    tokens, sep, user_data = rest.partition("!")
    if not sep:  # mod_auth_tkt's older form: uid!user_data, no tokens
        tokens, user_data = "", rest
    return ParsedTicket(mac.lower(), int(stamp, 16), uid, tokens, user_data)


@dataclass(frozen=True)
class VerifiedTicket:
    """A ticket whose signature, age and address checked out."""

    user: str
    groups: frozenset[str]
    user_data: str
    timestamp: int
    digest: str


def _user_name(signed_uid: str, user_data: str) -> str:
    """The user name a verified ticket names, undoing Pyramid's userid encodings."""
    uid = signed_uid
    for datum in user_data.split("|"):
        if not datum.startswith(_PYRAMID_USERID_TYPE):
            continue
        kind = datum[len(_PYRAMID_USERID_TYPE) :]
        if kind in ("b64unicode", "b64str"):
            try:
                uid = base64.b64decode(uid, validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                raise MalformedTicket("Pyramid userid is not valid base64") from None
        elif kind == "int" and not uid.isdigit():
            raise MalformedTicket("Pyramid userid of type int is not a number")
    return uid


def check_timeout(timeout: int, allow_no_timeout: bool = False) -> None:
    """ConfigError unless *timeout* (seconds) is a lifetime tickets may be given."""
    if timeout < 0:
        raise ConfigError("imageguard.tkt_timeout must not be negative")
    if timeout == 0 and not allow_no_timeout:
        raise ConfigError(
            "imageguard.tkt_timeout 0 would accept a stolen ticket forever; "
            "set imageguard.tkt_allow_no_timeout on if you really mean it"
        )


@dataclass(frozen=True)
class TicketVerifier:
    """Verifies auth_tkt tickets against a list of secrets, newest first.

    Configure with keywords; the class attributes are the defaults::

        verifier = TicketVerifier(secrets=[b"new", b"old"], digest="sha512", bind_ip=True)
        ticket = verifier.verify(cookie_value, client_ip="192.0.2.7")

    Every refusal raises a subclass of :class:`~imageguard.errors.TicketError` whose
    message says why (for the log; the client only ever sees a refusal). Building one
    without a secret, or with one shorter than
    :data:`~imageguard.identity.secretfile.MIN_SECRET_LENGTH` bytes, raises
    :class:`~imageguard.errors.ConfigError`.
    """

    secrets: Sequence[bytes] = ()
    digest: str = DEFAULT_DIGEST
    timeout: int = DEFAULT_TIMEOUT_S
    allow_no_timeout: bool = False
    bind_ip: bool = False
    max_clock_skew: int = MAX_CLOCK_SKEW_S
    _signer: Signer = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", check_digest_name(self.digest))
        check_timeout(self.timeout, self.allow_no_timeout)
        # No verifier exists without usable keys: an empty secret would let anyone sign.
        object.__setattr__(self, "secrets", check_secrets(self.secrets, "ticket secrets"))
        object.__setattr__(self, "_signer", ticket_signer(self.secrets, self.digest))

    def verify(
        self, cookie_value: str, client_ip: str = "", now: float | None = None
    ) -> VerifiedTicket:
        """Check *cookie_value*; return what it proves or raise a :class:`TicketError`."""
        ticket = parse_ticket(decode_cookie_value(cookie_value), self.digest)
        return self.verify_parsed(ticket, client_ip, now)

    def verify_parsed(
        self, ticket: ParsedTicket, client_ip: str = "", now: float | None = None
    ) -> VerifiedTicket:
        """:meth:`verify` for a ticket already split into its parts (:func:`parse_ticket`)."""
        ip = self._signed_ip(client_ip)
        signed_uid = self._check_signature(ticket, ip)
        self._check_time(ticket.timestamp, time.time() if now is None else now)
        user = _user_name(signed_uid, ticket.user_data)
        try:
            check_name(user, "user")
        except ValueError as exc:
            raise MalformedTicket(f"ticket names no usable user: {exc}") from None
        return VerifiedTicket(
            user,
            # A token that cannot name a group grants nothing.
            valid_groups(token.strip() for token in ticket.tokens.split(",")),
            ticket.user_data,
            ticket.timestamp,
            ticket.digest,
        )

    def _signed_ip(self, client_ip: str) -> str:
        if not self.bind_ip:
            return UNBOUND_IP
        if not client_ip:
            raise MalformedTicket("tickets are bound to addresses, but the client has none")
        return client_ip

    def _check_signature(self, ticket: ParsedTicket, ip: str) -> str:
        """The uid as signed, if any secret and uid spelling gives the ticket's digest."""
        spellings = [ticket.uid]
        unquoted = urllib.parse.unquote(ticket.uid)
        if unquoted != ticket.uid:
            spellings.append(unquoted)  # Pyramid signs the uid before quoting it
        candidates = [
            _message(ip, ticket.timestamp, uid, ticket.tokens, ticket.user_data)
            for uid in spellings
        ]
        return spellings[self._signer.match(ticket.digest, candidates)]

    def _check_time(self, timestamp: int, now: float) -> None:
        if timestamp > now + self.max_clock_skew:
            raise TicketFromFuture(f"ticket stamped {int(timestamp - now)} s in the future")
        if self.timeout and timestamp + self.timeout < now:
            raise TicketExpired(f"ticket expired {int(now - timestamp - self.timeout)} s ago")


def _check_part(text: str, what: str, forbidden: str) -> str:
    for char in forbidden + "\0":
        if char in text:
            shown = "NUL" if char == "\0" else repr(char)
            raise ValueError(f"{what} {text!r} must not contain {shown}")
    return text


def issue_ticket(
    user: str,
    groups: Iterable[str] = (),
    secret: bytes | str = b"",
    *,
    user_data: str = "",
    digest: str = DEFAULT_DIGEST,
    ip: str = UNBOUND_IP,
    timestamp: int | None = None,
) -> str:
    """A cookie value (base64) that imageguard and mod_auth_tkt accept for *user*.

    It is always written in the ``uid!tokens!data`` form. A ``!`` in the user name,
    a ``!`` or ``,`` in a group, and a NUL anywhere raise :class:`ValueError`, as does an
    empty secret, and so does a user name holding a ``%`` escape (``a%41``): mod_auth_tkt
    would read it as written but Pyramid, which URL-unquotes user ids, as another name.
    So does an empty *secret*, or one shorter than
    :data:`~imageguard.identity.secretfile.MIN_SECRET_LENGTH` bytes.
    Pass the client's *ip* only when tickets are bound to addresses.
    """
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    try:
        check_secrets((key,), "ticket secret")
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    check_name(_check_part(user, "user name", "!"), "user")
    if urllib.parse.unquote(user) != user:
        raise ValueError(
            f"user name {user!r} holds a %-escape: Pyramid would read it as "
            f"{urllib.parse.unquote(user)!r} and mod_auth_tkt as written"
        )
    tokens = [_check_part(g, "group", "!,") for g in groups]
    for token in tokens:
        check_name(token, "group")
    _check_part(user_data, "user data", "")
    name = check_digest_name(digest)
    stamp = int(time.time()) if timestamp is None else int(timestamp)
    joined = ",".join(tokens)
    mac = ticket_signer((key,), name).sign(_message(ip, stamp, user, joined, user_data))
    text = f"{mac}{stamp:08x}{user}!{joined}!{user_data}"
    return base64.b64encode(text.encode("utf-8")).decode("ascii")
