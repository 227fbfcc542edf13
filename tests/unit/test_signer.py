"""The one signer of tickets and share links: rotation, refusals, and both wire formats."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from imageguard.errors import (
    BadSignature,
    ConfigError,
    MalformedShareLink,
    MalformedTicket,
    MalformedValue,
    ShareLinkError,
    ShareLinkExpired,
    ShareLinkMismatch,
    SignatureExpired,
    SignatureMismatch,
    SignedInFuture,
    SignedValueError,
    TicketError,
    TicketExpired,
    TicketFromFuture,
)
from imageguard.identity import sharelinks
from imageguard.identity.signer import HMACAlgorithm, Signer
from imageguard.identity.tickets import (
    AuthTktAlgorithm,
    TicketVerifier,
    issue_ticket,
    ticket_digest,
    ticket_signer,
)
from imageguard.policy.levels import Level

NEW = b"new-secret-0123456789"
OLD = b"old-secret-0123456789"
GONE = b"gone-secret-0123456789"
ALGORITHM = HMACAlgorithm(label=b"test label")
MESSAGE = (b"one", b"two")


def test_signs_with_the_newest_secret_and_accepts_any() -> None:
    rotated = Signer(secrets=(NEW, OLD), algorithm=ALGORITHM)
    by_old = Signer(secrets=(OLD,), algorithm=ALGORITHM).sign(MESSAGE)
    by_new = Signer(secrets=(NEW,), algorithm=ALGORITHM).sign(MESSAGE)
    assert rotated.sign(MESSAGE) == by_new != by_old
    rotated.verify(by_old, MESSAGE)
    rotated.verify(by_new, MESSAGE)
    with pytest.raises(SignatureMismatch, match="matches no configured secret"):
        Signer(secrets=(GONE,), algorithm=ALGORITHM).verify(by_old, MESSAGE)


def test_a_changed_part_or_another_label_does_not_verify() -> None:
    signer = Signer(secrets=(NEW,), algorithm=ALGORITHM)
    signature = signer.sign(MESSAGE)
    with pytest.raises(SignatureMismatch):
        signer.verify(signature, (b"one", b"twO"))
    with pytest.raises(SignatureMismatch):  # one part more, even an empty one
        signer.verify(signature, (b"one", b"two", b""))
    other = Signer(secrets=(NEW,), algorithm=HMACAlgorithm(label=b"other label"))
    with pytest.raises(SignatureMismatch):
        other.verify(signature, MESSAGE)


def test_the_callers_exception_and_reason() -> None:
    signer = Signer(
        secrets=(NEW,), algorithm=ALGORITHM, mismatch=ShareLinkMismatch, reason="not ours"
    )
    with pytest.raises(ShareLinkMismatch, match=r"^not ours$") as caught:
        signer.verify("A" * 43, MESSAGE)
    assert isinstance(caught.value, ShareLinkError)
    with pytest.raises(ShareLinkMismatch):  # text no encoding writes: refused, not a crash
        signer.verify("é" * 43, MESSAGE)


def test_match_names_the_candidate_that_was_signed() -> None:
    signer = Signer(secrets=(NEW, OLD), algorithm=ALGORITHM)
    signature = Signer(secrets=(OLD,), algorithm=ALGORITHM).sign((b"b",))
    assert signer.match(signature, [(b"a",), (b"b",), (b"c",)]) == 1
    with pytest.raises(SignatureMismatch):
        signer.match(signature, [(b"a",), (b"c",)])


@pytest.mark.parametrize("secrets", [(), (b"short",), (NEW, b"")])
def test_no_signer_without_usable_secrets(secrets: tuple[bytes, ...]) -> None:
    with pytest.raises(ConfigError):
        Signer(secrets=secrets, algorithm=ALGORITHM)


def test_an_unknown_encoding_is_refused() -> None:
    with pytest.raises(ValueError, match="encoding"):
        Signer(secrets=(NEW,), algorithm=ALGORITHM, encoding="base32")


def test_encodings() -> None:
    raw = ALGORITHM.signature(ALGORITHM.derive_key(NEW), MESSAGE)
    hexed = Signer(secrets=(NEW,), algorithm=ALGORITHM, encoding="hex").sign(MESSAGE)
    b64 = Signer(secrets=(NEW,), algorithm=ALGORITHM, encoding="base64url").sign(MESSAGE)
    assert hexed == raw.hex()
    assert b64 == base64.urlsafe_b64encode(raw).decode().rstrip("=")


# ---------------------------------------------------------------- the two wire formats


def test_ticket_digest_is_the_documented_double_hash() -> None:
    ip, stamp = "192.0.2.7", 0x5F5E1000
    signed = bytes([192, 0, 2, 7]) + stamp.to_bytes(4, "big")
    rest = "zoë".encode() + b"\0a,b\0data"
    for digest in ("md5", "sha256", "sha512"):
        new = getattr(hashlib, digest)
        inner = new(signed + NEW + rest).hexdigest()
        expected = new(inner.encode() + NEW).hexdigest()
        assert ticket_digest(NEW, ip, stamp, "zoë", "a,b", "data", digest) == expected
        signer = ticket_signer((NEW,), digest)
        assert signer.sign((signed, rest)) == expected
        assert isinstance(signer.algorithm, AuthTktAlgorithm)


def test_share_link_signature_is_the_documented_hmac() -> None:
    params = sharelinks.sign("gallery/cat.jpg", "preview", 1795470000, NEW, "bob", realm="/srv")
    key = hmac.new(NEW, b"imageguard share link key", hashlib.sha256).digest()
    payload = b"imageguard-share-v2\n/srv\ngallery/cat.jpg\npreview\n1795470000\nbob"
    mac = hmac.new(key, payload, hashlib.sha256).digest()
    assert params["ig_sig"] == base64.urlsafe_b64encode(mac).decode().rstrip("=")


def test_share_link_refusals_have_their_kind() -> None:
    params = sharelinks.sign("a.jpg", "full", 2000, NEW, realm="/srv")
    query = "&".join(f"{k}={v}" for k, v in params.items())
    assert sharelinks.verify("a.jpg", query, (OLD, NEW), now=1000, realm="/srv").level is Level.FULL
    with pytest.raises(ShareLinkMismatch, match="does not match"):
        sharelinks.verify("b.jpg", query, (NEW,), now=1000, realm="/srv")
    with pytest.raises(ShareLinkMismatch, match="secret retired"):
        sharelinks.verify("a.jpg", query, (OLD,), now=1000, realm="/srv")
    with pytest.raises(ShareLinkExpired):
        sharelinks.verify("a.jpg", query, (NEW,), now=3000, realm="/srv")
    with pytest.raises(MalformedShareLink):
        sharelinks.verify("a.jpg", query.replace("ig_exp=2000", "ig_exp=x"), (NEW,), realm="/srv")


def test_ticket_refusals_have_their_kind() -> None:
    verifier = TicketVerifier(secrets=(NEW, OLD), timeout=60)
    cookie = issue_ticket("bob", ["staff"], OLD, timestamp=1000)
    assert verifier.verify(cookie, now=1010).groups == frozenset({"staff"})
    with pytest.raises(BadSignature):
        TicketVerifier(secrets=(NEW,), timeout=60).verify(cookie, now=1010)
    with pytest.raises(TicketExpired):
        verifier.verify(cookie, now=2000)
    with pytest.raises(TicketFromFuture):
        verifier.verify(cookie, now=0)
    with pytest.raises(MalformedTicket):
        verifier.verify("not a ticket", now=1010)


def test_ticket_groups_that_cannot_name_a_group_grant_nothing() -> None:
    tokens = "staff,a b,.., x ,,g/h"
    mac = ticket_digest(NEW, "0.0.0.0", 1000, "bob", tokens, "")
    text = f"{mac}{1000:08x}bob!{tokens}!"
    ticket = TicketVerifier(secrets=(NEW,), timeout=60).verify(text, now=1010)
    assert (ticket.user, ticket.groups) == ("bob", frozenset({"staff", "x"}))


@pytest.mark.parametrize(
    ("error", "kinds"),
    [
        (MalformedTicket, (TicketError, MalformedValue)),
        (BadSignature, (TicketError, SignatureMismatch)),
        (TicketExpired, (TicketError, SignatureExpired)),
        (TicketFromFuture, (TicketError, SignedInFuture)),
        (MalformedShareLink, (ShareLinkError, MalformedValue)),
        (ShareLinkMismatch, (ShareLinkError, SignatureMismatch)),
        (ShareLinkExpired, (ShareLinkError, SignatureExpired)),
    ],
)
def test_each_refusal_is_of_its_value_and_of_its_fault(
    error: type[Exception], kinds: tuple[type[Exception], ...]
) -> None:
    for kind in (*kinds, SignedValueError):
        assert issubclass(error, kind)
