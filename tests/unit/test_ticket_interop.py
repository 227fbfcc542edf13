"""imageguard's auth_tkt tickets against Pyramid's own implementation (no Apache).

Pyramid's ``pyramid.authentication`` (``AuthTicket``, ``parse_ticket``,
``calculate_digest``, ``AuthTktCookieHelper``) is the reference on the Python side; the
real mod_auth_tkt is checked in ``tests/integration/test_mod_auth_tkt.py``. Every
timestamp is fixed (``now=`` and ``timestamp=``/``time=``): nothing depends on the clock.

The matrix: digest (md5, sha256, sha512) x address (unbound ``0.0.0.0``, IPv4, IPv6)
x cookie dress (raw, base64, ``%21``-escaped, double-quoted) x peer (the address the
ticket was signed for, another one), in both directions (Pyramid issues and imageguard
verifies; imageguard issues and Pyramid parses).
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable

import pytest
from pyramid.authentication import (
    AuthTicket,
    AuthTktCookieHelper,
    BadTicket,
    calculate_digest,
    parse_ticket,
)
from pyramid.testing import DummyRequest

from imageguard.errors import (
    BadSignature,
    ConfigError,
    MalformedTicket,
    TicketExpired,
    TicketFromFuture,
)
from imageguard.identity.tickets import (
    MAX_CLOCK_SKEW_S,
    TicketVerifier,
    decode_cookie_value,
    digest_hex_length,
    issue_ticket,
    ticket_digest,
)

SECRET = "interop-secret-0123456789abcdef"
OLD_SECRET = "interop-old-secret-0123456789ab"
NOW = 1_700_000_000  # 0x6553f100: timestamp bytes above 0x7f, as latin-1 must handle
T = NOW - 60  # when the tickets were issued
TIMEOUT = 7200
DIGESTS = ["md5", "sha256", "sha512"]

#: family -> (address signed into the ticket, another address of the same family)
ADDRESSES = {
    "unbound": ("0.0.0.0", None),
    "ipv4": ("192.0.2.7", "192.0.2.8"),
    "ipv6": ("2001:db8::7", "2001:db8::8"),
}

DRESSES: dict[str, Callable[[str], str]] = {
    "raw": lambda text: text,
    "base64": lambda text: base64.b64encode(text.encode()).decode(),
    "pct21": lambda text: text.replace("!", "%21"),
    "quoted": lambda text: f'"{text}"',
    "quoted-base64": lambda text: f'"{base64.b64encode(text.encode()).decode()}"',
}


def verifier(digest: str = "sha256", *, bind_ip: bool = False, **kwargs: object) -> TicketVerifier:
    kwargs.setdefault("secrets", [SECRET.encode()])
    kwargs.setdefault("timeout", TIMEOUT)
    return TicketVerifier(digest=digest, bind_ip=bind_ip, **kwargs)  # type: ignore[arg-type]


def refused(cls: type[Exception], call: Callable[[], object]) -> Exception:
    """Run *call*; it must raise exactly *cls* (not a sibling or a parent class)."""
    with pytest.raises(cls) as info:
        call()
    assert type(info.value) is cls, f"{type(info.value).__name__}: {info.value}"
    return info.value


def pyramid_ticket(
    digest: str,
    ip: str = "0.0.0.0",
    userid: str = "bob@example.com",
    tokens: tuple[str, ...] = ("staff", "editors"),
    user_data: str = "lang=en",
    when: int = T,
    secret: str = SECRET,
) -> str:
    """A ticket as Pyramid's AuthTicket writes it (raw text, uid URL-quoted)."""
    return AuthTicket(
        secret, userid, ip, tokens=tokens, user_data=user_data, time=when, hashalg=digest
    ).cookie_value()


def plain(cookie: str) -> str:
    """The ticket text of an issue_ticket() cookie value (base64)."""
    return base64.b64decode(cookie).decode()


# ----------------------------------------------------------------- Pyramid -> imageguard


@pytest.mark.parametrize("dress", DRESSES)
@pytest.mark.parametrize("family", ADDRESSES)
@pytest.mark.parametrize("digest", DIGESTS)
def test_pyramid_ticket_is_accepted(digest: str, family: str, dress: str) -> None:
    ip, other = ADDRESSES[family]
    cookie = DRESSES[dress](pyramid_ticket(digest, ip))
    bound = other is not None
    check = verifier(digest, bind_ip=bound)
    ticket = check.verify(cookie, client_ip=ip, now=NOW)
    assert ticket.user == "bob@example.com"
    assert ticket.groups == {"staff", "editors"}
    assert ticket.user_data == "lang=en"
    assert ticket.timestamp == T
    if bound:  # the same ticket from another address of the same family
        refused(BadSignature, lambda: check.verify(cookie, client_ip=other, now=NOW))
    else:  # an unbound ticket is good from anywhere
        assert check.verify(cookie, client_ip="198.51.100.1", now=NOW).user == ticket.user


@pytest.mark.parametrize(
    "userid", ["bob@example.com", "zoë", "o'brien", "a+b=c", "100%", "a%41", "x;y,z"]
)
def test_pyramid_quotes_the_userid_and_imageguard_unquotes_it(userid: str) -> None:
    cookie = pyramid_ticket("sha512", userid=userid)
    assert cookie != pyramid_ticket("sha512", userid="bob")  # sanity
    assert verifier("sha512").verify(cookie, now=NOW).user == userid


def test_userid_that_is_no_path_segment_is_refused() -> None:
    """'ann smith' is signed correctly, but a user name must be usable as a path segment
    (``users/{user}/**``), so imageguard refuses it (Pyramid would accept it)."""
    for userid in ("ann smith", "a/b", ".."):
        cookie = pyramid_ticket("sha256", userid=userid)
        assert parse_ticket(SECRET, cookie, "0.0.0.0", "sha256")[1] == userid
        error = refused(MalformedTicket, lambda c=cookie: verifier().verify(c, now=NOW))
        assert "usable user" in str(error)


def test_pyramid_ticket_without_tokens_uses_the_short_form() -> None:
    cookie = pyramid_ticket("sha256", tokens=(), user_data="lang=en")
    assert cookie.endswith("bob%40example.com!lang=en")  # no empty tokens field
    ticket = verifier().verify(cookie, now=NOW)
    assert (ticket.groups, ticket.user_data) == (frozenset(), "lang=en")


def test_short_form_with_a_bang_in_the_user_data_is_refused_by_both() -> None:
    """Without tokens, Pyramid writes ``uid!x!y`` for user data ``x!y``, which every
    reader (Pyramid itself, mod_auth_tkt, imageguard) splits as tokens ``x``, data ``y``:
    the digest no longer matches. Such a ticket cannot be used anywhere."""
    cookie = pyramid_ticket("sha256", tokens=(), user_data="x!y")
    with pytest.raises(BadTicket):
        parse_ticket(SECRET, cookie, "0.0.0.0", "sha256")
    refused(BadSignature, lambda: verifier().verify(cookie, now=NOW))


# ----------------------------------------------------------------- AuthTktCookieHelper


def helper_cookie(
    userid: object,
    tokens: tuple[str, ...] = (),
    *,
    digest: str = "sha512",
    ip: str | None = None,
) -> tuple[str, AuthTktCookieHelper, DummyRequest]:
    """The cookie value (as the browser sends it back) from AuthTktCookieHelper.remember."""
    helper = AuthTktCookieHelper(SECRET, hashalg=digest, include_ip=ip is not None, timeout=60)
    helper.AuthTicket = functools.partial(AuthTicket, time=T)  # type: ignore[misc]
    helper.now = NOW  # type: ignore[assignment]
    request = DummyRequest(environ={"REMOTE_ADDR": ip or "203.0.113.9"})
    headers = helper.remember(request, userid, tokens=tokens)
    set_cookie = next(value for name, value in headers if name == "Set-Cookie")
    return set_cookie.split(";")[0].partition("=")[2], helper, request


@pytest.mark.parametrize("ip", [None, "192.0.2.7", "2001:db8::7"])
@pytest.mark.parametrize("digest", DIGESTS)
@pytest.mark.parametrize(
    ("userid", "user"),
    [("alice", "alice"), ("bobby", "bobby"), ("zoë@example.com", "zoë@example.com"), (42, "42")],
)
def test_cookie_helper_ticket_gives_the_decoded_user(
    userid: object, user: str, digest: str, ip: str | None
) -> None:
    cookie, helper, request = helper_cookie(userid, ("staff",), digest=digest, ip=ip)
    ticket = verifier(digest, bind_ip=ip is not None).verify(cookie, client_ip=ip or "", now=NOW)
    assert (ticket.user, ticket.groups) == (user, {"staff"})
    assert ticket.user_data.startswith("userid_type:")
    # Pyramid reads the same cookie back to the same user.
    request.cookies["auth_tkt"] = cookie
    assert str(helper.identify(request)["userid"]) == user


def test_cookie_helper_base64_userid_padding_is_url_quoted() -> None:
    cookie, _, _ = helper_cookie("bobby")  # base64 "Ym9iYnk=": Pyramid quotes '=' as %3D
    assert "Ym9iYnk%3D!" in cookie
    assert verifier("sha512").verify(cookie, now=NOW).user == "bobby"


@pytest.mark.filterwarnings("ignore:Cookie value contains invalid bytes")
def test_cookie_helper_ticket_with_two_tokens() -> None:
    cookie, _, _ = helper_cookie("ann", ("staff", "admin"))
    assert cookie.startswith('"') and "\\054" in cookie  # what the browser sends back
    ticket = verifier("sha512").verify(cookie, now=NOW)
    assert (ticket.user, ticket.groups) == ("ann", {"staff", "admin"})


# ----------------------------------------------------------------- imageguard -> Pyramid


@pytest.mark.parametrize("family", ADDRESSES)
@pytest.mark.parametrize("digest", DIGESTS)
def test_issued_ticket_is_parsed_by_pyramid(digest: str, family: str) -> None:
    ip, other = ADDRESSES[family]
    cookie = issue_ticket(
        "carol@example.com",
        ["staff", "editors"],
        SECRET,
        user_data="lang=en",
        digest=digest,
        ip=ip,
        timestamp=T,
    )
    text = plain(cookie)
    assert parse_ticket(SECRET, text, ip, digest) == (
        T,
        "carol@example.com",
        ["staff", "editors"],
        "lang=en",
    )
    if other is not None:
        with pytest.raises(BadTicket):
            parse_ticket(SECRET, text, other, digest)
    with pytest.raises(BadTicket):
        parse_ticket(OLD_SECRET, text, ip, digest)
    # ... and by imageguard, in every dress.
    for dress in DRESSES.values():
        check = verifier(digest, bind_ip=other is not None)
        assert check.verify(dress(text), client_ip=ip, now=NOW).user == "carol@example.com"


def test_issuing_refuses_a_user_name_that_pyramid_would_unquote() -> None:
    # mod_auth_tkt reads 'a%41' as written, Pyramid URL-unquotes it to 'aA': no ticket
    # can name the same user to both, so none is issued.
    with pytest.raises(ValueError, match="Pyramid would read it as 'aA'"):
        issue_ticket("a%41", [], SECRET, timestamp=T)


def test_issued_ticket_for_a_user_name_with_a_lone_percent_is_parsed_by_pyramid() -> None:
    text = plain(issue_ticket("50%off", [], SECRET, timestamp=T))
    assert verifier().verify(text, now=NOW).user == "50%off"
    assert parse_ticket(SECRET, text, "0.0.0.0", "sha256")[1] == "50%off"


@pytest.mark.parametrize(
    ("cookie", "text"),
    [
        ('"abc\\054def!x"', "abc,def!x"),
        ('"a\\"b\\\\c!"', 'a"b\\c!'),
        ('"plain!text"', "plain!text"),
    ],
)
def test_quoted_cookie_escapes_are_undone(cookie: str, text: str) -> None:
    assert decode_cookie_value(cookie) == text


@pytest.mark.parametrize("digest", DIGESTS)
def test_issued_ticket_without_groups_is_parsed_by_pyramid(digest: str) -> None:
    text = plain(issue_ticket("dave", [], SECRET, digest=digest, timestamp=T))
    assert text.endswith("dave!!")
    assert parse_ticket(SECRET, text, "0.0.0.0", digest) == (T, "dave", [""], "")
    ticket = verifier(digest).verify(text, now=NOW)
    assert (ticket.user, ticket.groups, ticket.user_data) == ("dave", frozenset(), "")


@pytest.mark.parametrize(
    "ip", ["0.0.0.0", "192.0.2.7", "203.0.113.250", "255.255.255.255", "2001:db8::7", "::1"]
)
@pytest.mark.parametrize("digest", DIGESTS)
def test_digest_is_pyramids(digest: str, ip: str) -> None:
    for stamp in (0, T, 0xFFFFFFFF):
        for uid, tokens, data in (("bob", "", ""), ("zoë", "a,b", "données|x:y")):
            ours = ticket_digest(SECRET.encode(), ip, stamp, uid, tokens, data, digest)
            assert ours == calculate_digest(ip, stamp, SECRET, uid, tokens, data, digest)
            assert len(ours) == digest_hex_length(digest)


# ----------------------------------------------------------------- cookie dresses


def test_every_dress_decodes_to_the_same_text() -> None:
    text = plain(issue_ticket("erin", ["staff"], SECRET, user_data="k=v", timestamp=T))
    for name, dress in DRESSES.items():
        assert decode_cookie_value(dress(text)) == text, name
    assert decode_cookie_value(f"  {text}  ") == text


# ----------------------------------------------------------------- refusals


def good(digest: str = "sha256", **kwargs: object) -> str:
    """A valid issue_ticket() cookie for frank (stamped T unless told otherwise)."""
    kwargs.setdefault("timestamp", T)
    return issue_ticket(
        "frank",
        ["staff"],
        kwargs.pop("secret", SECRET),  # type: ignore[arg-type]
        user_data="k=v",
        digest=digest,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    "cookie",
    [
        "",
        "nonsense",
        '""',
        base64.b64encode(b"no separator in here at all, not one").decode(),
        "z" * 72 + "frank!!",  # digest and timestamp not hexadecimal
        "0" * 40 + "frank!!",  # too short for a sha256 digest
        "0" * 72 + "fr\0nk!!",
        "%21%21",
    ],
    ids=["empty", "word", "empty-quotes", "b64-no-bang", "not-hex", "short", "nul", "bangs"],
)
def test_malformed_is_refused(cookie: str) -> None:
    refused(MalformedTicket, lambda: verifier().verify(cookie, now=NOW))


@pytest.mark.parametrize("digest", DIGESTS)
def test_wrong_secret_is_refused(digest: str) -> None:
    cookie = good(digest, secret="another-secret-0123456789")
    refused(BadSignature, lambda: verifier(digest).verify(cookie, now=NOW))


@pytest.mark.parametrize("digest", DIGESTS)
def test_old_secret_is_accepted_when_listed(digest: str) -> None:
    cookie = good(digest, secret=OLD_SECRET)
    refused(BadSignature, lambda: verifier(digest).verify(cookie, now=NOW))
    both = verifier(digest, secrets=[SECRET.encode(), OLD_SECRET.encode()])
    assert both.verify(cookie, now=NOW).user == "frank"


def tampered(text: str, digest: str, part: str) -> str:
    size = digest_hex_length(digest)
    mac, stamp, rest = text[:size], text[size : size + 8], text[size + 8 :]
    uid, tokens, data = rest.split("!", 2)
    if part == "uid":
        uid = "frani"
    elif part == "tokens":
        tokens = "staff,admin"
    elif part == "user_data":
        data = "k=w"
    elif part == "timestamp":
        stamp = f"{int(stamp, 16) - 1:08x}"
    elif part == "digest":
        mac = mac[:-1] + ("1" if mac[-1] == "0" else "0")
    return f"{mac}{stamp}{uid}!{tokens}!{data}"


@pytest.mark.parametrize("part", ["uid", "tokens", "user_data", "timestamp", "digest"])
@pytest.mark.parametrize("digest", DIGESTS)
def test_tampered_ticket_is_refused(digest: str, part: str) -> None:
    text = tampered(plain(good(digest)), digest, part)
    for dress in ("raw", "base64"):
        cookie = DRESSES[dress](text)
        refused(BadSignature, lambda c=cookie: verifier(digest).verify(c, now=NOW))
    with pytest.raises(BadTicket):  # Pyramid agrees
        parse_ticket(SECRET, text, "0.0.0.0", digest)


def test_expired_is_refused_from_the_second_after_the_timeout() -> None:
    cookie = good()
    assert verifier().verify(cookie, now=T + TIMEOUT).user == "frank"  # as mod_auth_tkt
    refused(TicketExpired, lambda: verifier().verify(cookie, now=T + TIMEOUT + 1))


def test_future_timestamp_is_refused_beyond_the_clock_skew() -> None:
    assert MAX_CLOCK_SKEW_S == 300
    assert verifier().verify(good(timestamp=NOW + 300), now=NOW).user == "frank"
    refused(TicketFromFuture, lambda: verifier().verify(good(timestamp=NOW + 301), now=NOW))


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_bound_ticket_from_another_address_is_refused(family: str) -> None:
    ip, other = ADDRESSES[family]
    check = verifier(bind_ip=True)
    for cookie in (good(ip=ip), pyramid_ticket("sha256", ip)):
        assert check.verify(cookie, client_ip=ip, now=NOW).timestamp == T
        refused(BadSignature, lambda c=cookie: check.verify(c, client_ip=other, now=NOW))
        # Unbound checking does not accept a bound ticket either.
        refused(BadSignature, lambda c=cookie: verifier().verify(c, client_ip=ip, now=NOW))


def test_binding_without_a_client_address_is_refused() -> None:
    refused(MalformedTicket, lambda: verifier(bind_ip=True).verify(good(), client_ip=""))


def test_ipv4_and_its_ipv6_mapped_form_differ() -> None:
    """A ticket is bound to the address text Apache reports (APR already writes an
    IPv4-mapped client as '192.0.2.7'); the mapped spelling is another text and another
    signature, as in Pyramid."""
    cookie = good(ip="192.0.2.7")
    check = verifier(bind_ip=True)
    refused(BadSignature, lambda: check.verify(cookie, client_ip="::ffff:192.0.2.7", now=NOW))


def test_ticket_of_another_digest_is_refused() -> None:
    refused(BadSignature, lambda: verifier("md5").verify(good("sha256"), now=NOW))
    refused(MalformedTicket, lambda: verifier("sha512").verify(good("md5"), now=NOW))


def test_timeout_zero_needs_allow_no_timeout() -> None:
    error = refused(ConfigError, lambda: verifier(timeout=0))
    assert "tkt_allow_no_timeout" in str(error)
    refused(ConfigError, lambda: verifier(timeout=-1))
    forever = verifier(timeout=0, allow_no_timeout=True)
    ancient = good(timestamp=NOW - 10 * 365 * 86400)
    assert forever.verify(ancient, now=NOW).user == "frank"


def test_configuration_errors() -> None:
    refused(ConfigError, lambda: verifier(secrets=[]).verify(good(), now=NOW))
    refused(ConfigError, lambda: verifier("sha1"))
    assert verifier("SHA-512").digest == "sha512"


# ----------------------------------------------------------------- issue_ticket refuses


@pytest.mark.parametrize(
    ("user", "groups", "data", "secret"),
    [
        ("bo!b", [], "", SECRET),
        ("bob", ["staff!"], "", SECRET),
        ("bob", ["staff,admin"], "", SECRET),
        ("bo\0b", [], "", SECRET),
        ("bob", ["st\0aff"], "", SECRET),
        ("bob", [], "a\0b", SECRET),
        ("bob", [], "", ""),
        ("bob", [], "", b""),
        ("bob", [], "", "fifteen-chars!!"),
    ],
    ids=["bang-user", "bang-group", "comma-group", "nul-user", "nul-group", "nul-data",
         "empty-secret", "empty-bytes-secret", "short-secret"],
)  # fmt: skip
def test_issue_ticket_refuses(user: str, groups: list[str], data: str, secret: str) -> None:
    with pytest.raises(ValueError):
        issue_ticket(user, groups, secret, user_data=data, timestamp=T)


def test_issue_ticket_refuses_an_unknown_digest() -> None:
    refused(ConfigError, lambda: issue_ticket("bob", [], SECRET, digest="sha1", timestamp=T))
