"""Share links: a signed URL that grants one level on one image until it expires.

A link is the image's URL with four query parameters::

    /images/gallery/cat.jpg?ig_exp=1795470000&ig_lvl=preview&ig_user=bob&ig_sig=...

``ig_user`` is optional (without it, whoever holds the link may use it, logged in or
not). ``ig_sig`` is an HMAC-SHA256, base64url without padding, over the path below the
root, the level, the expiry (Unix time) and the user, each on its own line after a
version tag. Its key is derived from a secret of the secret file with its own label,
so a share-link signature can never be replayed as a ticket digest or the other way round.
Verification tries every secret of the file (rotation), compares in constant time, and
refuses a link whose path, level, expiry or user was changed, that has expired, or
whose secret has left the file. Links can also be revoked one by one (in the store).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import ShareLinkError
from .levels import Level, parse_level
from .principals import check_name

PARAM_EXPIRES = "ig_exp"
PARAM_LEVEL = "ig_lvl"
PARAM_USER = "ig_user"
PARAM_SIGNATURE = "ig_sig"
PARAMS = (PARAM_EXPIRES, PARAM_LEVEL, PARAM_USER, PARAM_SIGNATURE)
_VERSION = b"imageguard-share-v1"
_KEY_LABEL = b"imageguard share link key"


def _key(secret: bytes) -> bytes:
    return hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()


def _signature(secret: bytes, relpath: str, level: Level, expires: int, user: str) -> str:
    payload = b"\n".join(
        [
            _VERSION,
            relpath.encode("utf-8"),
            level.label.encode(),
            str(expires).encode(),
            user.encode("utf-8"),
        ]
    )
    mac = hmac.new(_key(secret), payload, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class ShareGrant:
    """What a verified link grants: *level* on *relpath*, to *user* only if set."""

    relpath: str
    level: Level
    expires: int
    user: str
    signature: str


def sign(
    relpath: str, level: str | Level, expires: int, secret: bytes, user: str = ""
) -> dict[str, str]:
    """The query parameters of a link for *relpath* (the caller builds the URL)."""
    grant = parse_level(str(level))
    if grant is Level.DENY:
        raise ShareLinkError("a share link cannot grant 'deny'")
    if user:
        check_name(user, "user")
    params = {PARAM_EXPIRES: str(int(expires)), PARAM_LEVEL: grant.label}
    if user:
        params[PARAM_USER] = user
    params[PARAM_SIGNATURE] = _signature(secret, relpath, grant, int(expires), user)
    return params


def link(url_path: str, relpath: str, params: Mapping[str, str]) -> str:
    """The URL path of a share link: *url_path* (e.g. ``/images``), the image, the query."""
    path = url_path.rstrip("/") + "/" + urllib.parse.quote(relpath)
    return path + "?" + urllib.parse.urlencode(params)


def carries_link(query: str) -> bool:
    """True when a query string holds a share-link signature (cheap pre-check)."""
    return PARAM_SIGNATURE + "=" in query


def verify(
    relpath: str, query: str, secrets: Sequence[bytes], now: float | None = None
) -> ShareGrant:
    """Check the link in *query* for the image *relpath*; :class:`ShareLinkError` if bad."""
    fields = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    try:
        signature = fields[PARAM_SIGNATURE]
        expires = int(fields[PARAM_EXPIRES])
        level = parse_level(fields[PARAM_LEVEL])
    except (KeyError, ValueError):
        raise ShareLinkError("share link is missing or has malformed parameters") from None
    user = fields.get(PARAM_USER, "")
    if level is Level.DENY:
        raise ShareLinkError("share link names level deny")
    matched = False
    for secret in secrets:
        if hmac.compare_digest(_signature(secret, relpath, level, expires, user), signature):
            matched = True
    if not matched:
        raise ShareLinkError("share link signature does not match (changed, or secret retired)")
    if (time.time() if now is None else now) > expires:
        raise ShareLinkError("share link has expired")
    return ShareGrant(relpath, level, expires, user, signature)
