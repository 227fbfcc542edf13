"""One signer for the signed values imageguard reads: auth_tkt tickets and share links.

Built after the design of itsdangerous's ``Signer``: one class, configured with keywords,
whose *algorithm* says how a key and a message make a signature, and whose refusals are
exceptions of one family (:class:`~imageguard.errors.SignedValueError`). What it adds is
what both of imageguard's formats need:

* **rotation**: it holds every secret of the secret file, newest first; it signs with
  the first and accepts a signature made with any (so a secret can be replaced without
  logging everyone out: add the new one on top, remove the old one later);
* **no early exit**: :meth:`Signer.match` computes the signature of every candidate
  message with every secret and compares each in constant time, so the time a refusal
  takes says nothing about which secret or how much of a signature was right;
* **the caller's exception**: a signature that matches nothing raises the *mismatch*
  class it was given (:class:`~imageguard.errors.BadSignature` for tickets,
  :class:`~imageguard.errors.ShareLinkMismatch` for share links), both
  :class:`~imageguard.errors.SignatureMismatch`, so callers catch either the kind of
  value or the kind of fault.

A message is a sequence of byte strings (its parts); the algorithm decides how they are
combined with the key, because the wire formats differ: auth_tkt puts the secret between
the address-and-time and the rest (:class:`imageguard.identity.tickets.AuthTktAlgorithm`), share
links use an HMAC over the lines (:class:`HMACAlgorithm`). The formats themselves
(which parts, in which order) belong to :mod:`imageguard.identity.tickets` and
:mod:`imageguard.identity.sharelinks`.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..errors import SignatureMismatch
from .secretfile import check_secrets

#: The parts of a signed message, as the algorithm combines them.
Message = Sequence[bytes]


class SigningAlgorithm(Protocol):
    """How a secret and a message make a signature (raw bytes, before encoding)."""

    def derive_key(self, secret: bytes) -> bytes:
        """The key signatures are made with, from one secret (worked out once per signer)."""
        ...

    def signature(self, key: bytes, message: Message) -> bytes:
        """The signature of *message* with *key*."""
        ...


@dataclass(frozen=True)
class HMACAlgorithm:
    """An HMAC over the message's parts joined by newlines.

    Its key is derived from the secret as HMAC(secret, *label*): a secret shared with
    other uses (the secret file also signs tickets) then signs nothing here that any of
    them would accept, nor the other way round.
    """

    label: bytes
    digest: str = "sha256"

    def derive_key(self, secret: bytes) -> bytes:
        """HMAC(*secret*, *label*)."""
        return hmac.new(secret, self.label, self.digest).digest()

    def signature(self, key: bytes, message: Message) -> bytes:
        """HMAC(*key*, the parts joined by ``\\n``)."""
        return hmac.new(key, b"\n".join(message), self.digest).digest()


def _hex(raw: bytes) -> str:
    return raw.hex()


def _base64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


#: How a signature is written: lower-case hex (auth_tkt), or base64url without padding.
ENCODINGS: dict[str, Callable[[bytes], str]] = {"hex": _hex, "base64url": _base64url}


class Signer:
    """Signs with the newest of *secrets* and verifies against all of them.

    Configure with keywords::

        signer = Signer(
            secrets=(b"new secret ......", b"old secret ......"),
            algorithm=HMACAlgorithm(label=b"what these signatures are for"),
            encoding="base64url",
            mismatch=ShareLinkMismatch,
            reason="share link signature does not match",
        )
        signature = signer.sign(parts)   # with the first secret
        signer.verify(signature, parts)  # ShareLinkMismatch(reason) unless a secret made it

    *secrets* must hold at least one secret of
    :data:`~imageguard.identity.secretfile.MIN_SECRET_LENGTH` bytes or more (else
    :class:`~imageguard.errors.ConfigError`: no signer exists that an empty key could
    satisfy). *encoding* is a key of :data:`ENCODINGS`; a signature is compared as
    written, so callers normalise what they read first (auth_tkt digests lower-cased).
    The object is immutable and may be shared by threads.
    """

    __slots__ = ("_encode", "_keys", "algorithm", "encoding", "mismatch", "reason", "secrets")

    def __init__(
        self,
        *,
        secrets: Sequence[bytes],
        algorithm: SigningAlgorithm,
        encoding: str = "base64url",
        mismatch: type[SignatureMismatch] = SignatureMismatch,
        reason: str = "signature matches no configured secret",
    ) -> None:
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown signature encoding {encoding!r}: use hex or base64url")
        #: The secrets, newest first (the tuple given, when it was one).
        self.secrets = check_secrets(secrets)
        self.algorithm = algorithm
        self.encoding = encoding
        self.mismatch = mismatch
        self.reason = reason
        self._encode = ENCODINGS[encoding]
        self._keys = tuple(algorithm.derive_key(secret) for secret in self.secrets)

    def sign(self, message: Message) -> str:
        """The signature of *message* with the newest secret, encoded."""
        return self._encode(self.algorithm.signature(self._keys[0], message))

    def verify(self, signature: str, message: Message) -> None:
        """Return if some secret signed *message* with *signature*; else raise *mismatch*."""
        self.match(signature, (message,))

    def match(self, signature: str, candidates: Sequence[Message]) -> int:
        """The index of the first of *candidates* that some secret signed with *signature*
        (for a value that may have been signed in more than one spelling); *mismatch*
        when none was. Every candidate is tried with every secret, whatever matched."""
        if not signature.isascii():  # no encoding writes anything else; nothing to compare
            raise self.mismatch(self.reason)
        given = signature.encode("ascii")
        matched = -1
        for key in self._keys:
            for index, message in enumerate(candidates):
                expected = self._encode(self.algorithm.signature(key, message)).encode("ascii")
                if hmac.compare_digest(expected, given) and not 0 <= matched <= index:
                    matched = index
        if matched < 0:
            raise self.mismatch(self.reason)
        return matched
