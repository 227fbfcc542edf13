"""Share links: a signed URL that grants one level on one image until it expires.

A link is the image's URL with four query parameters::

    /images/gallery/cat.jpg?ig_exp=1795470000&ig_lvl=preview&ig_user=bob&ig_sig=...

``ig_user`` is optional (without it, whoever holds the link may use it, logged in or
not). ``ig_sig`` is an HMAC-SHA256, base64url without padding, over the link's *realm*,
the path below the root, the level, the expiry (Unix time) and the user, each on its
own line after a version tag. Its key is derived from a secret of the secret file with
its own label, so a share-link signature can never be replayed as a ticket digest or
the other way round.

The realm names where a link is valid: by default the protected root's real path
(``imageguard.share_realm`` names another). Two roots that share a secret file then
still refuse each other's links, and a link revoked in one root's store cannot be
replayed on another. Links of the first format (``imageguard-share-v1``, made before
realms existed) named no root, so no root can tell whether one was made for it: they
are refused everywhere and must be issued again.

Links are signed and verified by a :class:`~imageguard.identity.signer.Signer` (the one that also
checks tickets, with an HMAC algorithm here): verification tries every secret of the file
(rotation), compares in constant time, and refuses a link whose realm, path, level,
expiry or user was changed, that has expired, whose signature is not base64url text, or
whose secret has left the file. Links can also be revoked one by one (in the store).
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import MalformedShareLink, ShareLinkError, ShareLinkExpired, ShareLinkMismatch
from ..policy.levels import Level, parse_level
from ..policy.principals import check_name
from ..support.boundedcache import BoundedCache
from .secretfile import check_secrets
from .signer import HMACAlgorithm, Message, Signer

PARAM_EXPIRES = "ig_exp"
PARAM_LEVEL = "ig_lvl"
PARAM_USER = "ig_user"
PARAM_SIGNATURE = "ig_sig"
PARAMS = (PARAM_EXPIRES, PARAM_LEVEL, PARAM_USER, PARAM_SIGNATURE)
_VERSION = b"imageguard-share-v2"
_KEY_LABEL = b"imageguard share link key"


#: What a signature looks like: 32 bytes of HMAC-SHA256 as base64url without padding.
_SIGNATURE_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
_EXPIRY_SHAPE = re.compile(r"[0-9]{1,12}")


def check_realm(realm: str) -> str:
    """*realm* if it can name a link's realm (text on one line), else ShareLinkError."""
    if not realm or "\n" in realm or "\r" in realm or "\0" in realm:
        raise ShareLinkError(f"share link realm {realm!r} must be one non-empty line")
    return realm


_ALGORITHM = HMACAlgorithm(label=_KEY_LABEL, digest="sha256")
#: The signer of each list of secrets seen (the secret file hands out one tuple per
#: version of the file), so each secret's key is derived once, not per request.
_SIGNERS: BoundedCache[tuple[bytes, ...], Signer] = BoundedCache(16)


def _signer(secrets: tuple[bytes, ...]) -> Signer:
    found = _SIGNERS.get(secrets)
    if found is None:
        found = Signer(
            secrets=secrets,
            algorithm=_ALGORITHM,
            encoding="base64url",
            mismatch=ShareLinkMismatch,
            reason=(
                "share link signature does not match (changed, made for another root, "
                "or its secret retired)"
            ),
        )
        _SIGNERS.put(secrets, found)
    return found


def _message(realm: str, relpath: str, level: Level, expires: int, user: str) -> Message:
    """What a link's signature covers, one line each after the version tag."""
    return (
        _VERSION,
        realm.encode("utf-8"),
        relpath.encode("utf-8"),
        level.label.encode(),
        str(expires).encode(),
        user.encode("utf-8"),
    )


@dataclass(frozen=True)
class ShareGrant:
    """What a verified link grants: *level* on *relpath*, to *user* only if set."""

    relpath: str
    level: Level
    expires: int
    user: str
    signature: str


def sign(
    relpath: str,
    level: str | Level,
    expires: int,
    secret: bytes,
    user: str = "",
    *,
    realm: str,
) -> dict[str, str]:
    """The query parameters of a link for *relpath* in *realm* (the caller builds the URL).

    *realm* must be the realm of the root that will check the link (its real path,
    unless ``imageguard.share_realm`` says otherwise).
    """
    grant = parse_level(str(level))
    if grant is Level.DENY:
        raise ShareLinkError("a share link cannot grant 'deny'")
    if user:
        check_name(user, "user")
    (key,) = check_secrets((secret,), "share link secret")
    stamp = int(expires)
    params = {PARAM_EXPIRES: str(stamp), PARAM_LEVEL: grant.label}
    if user:
        params[PARAM_USER] = user
    message = _message(check_realm(realm), relpath, grant, stamp, user)
    params[PARAM_SIGNATURE] = _signer((key,)).sign(message)
    return params


def link(url_path: str, relpath: str, params: Mapping[str, str]) -> str:
    """The URL path of a share link: *url_path* (e.g. ``/images``), the image, the query."""
    path = url_path.rstrip("/") + "/" + urllib.parse.quote(relpath)
    return path + "?" + urllib.parse.urlencode(params)


def carries_link(query: str) -> bool:
    """True when a query string holds a share-link signature (cheap pre-check)."""
    return PARAM_SIGNATURE + "=" in query


def verify(
    relpath: str,
    query: str,
    secrets: Sequence[bytes],
    now: float | None = None,
    *,
    realm: str,
) -> ShareGrant:
    """Check the link in *query* for the image *relpath* of *realm*.

    Raises :class:`ShareLinkError` for any link that does not grant anything, whatever
    bytes the query holds: :class:`~imageguard.errors.MalformedShareLink`,
    :class:`~imageguard.errors.ShareLinkMismatch` (tampered, for another image or realm,
    its secret retired) or :class:`~imageguard.errors.ShareLinkExpired`.
    """
    keys = check_secrets(secrets, "share link secrets")
    fields = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    signature = fields.get(PARAM_SIGNATURE, "")
    expiry = fields.get(PARAM_EXPIRES, "")
    # Checked for shape before anything is compared: an HMAC compares bytes, and
    # int() would accept digits of every script and surrounding spaces.
    if not _SIGNATURE_SHAPE.fullmatch(signature) or not _EXPIRY_SHAPE.fullmatch(expiry):
        raise MalformedShareLink("share link is missing or has malformed parameters")
    try:
        level = parse_level(fields.get(PARAM_LEVEL, ""))
    except ValueError:
        raise MalformedShareLink("share link is missing or has malformed parameters") from None
    if level is Level.DENY:
        raise MalformedShareLink("share link names level deny")
    user = fields.get(PARAM_USER, "")
    try:  # signed as UTF-8: text that has none (lone surrogates) was never signed
        relpath.encode("utf-8")
        user.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedShareLink("share link names an image or a user that is not UTF-8") from None
    expires = int(expiry)
    _signer(keys).verify(signature, _message(realm, relpath, level, expires, user))
    if (time.time() if now is None else now) > expires:
        raise ShareLinkExpired("share link has expired")
    return ShareGrant(relpath, level, expires, user, signature)
