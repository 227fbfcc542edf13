"""Property tests of everything that reads what a client sends: tickets, cookies, share
links, and the gate's judgement of the file name a request maps to.

Each parser must refuse bad input with its documented exception and nothing else, give
back what was signed, refuse every one-character change of a signed value (or, where a
spelling is documented as equivalent, give back exactly the same thing), and the gate
must never admit anything but the plain image files inside its root.
"""

from __future__ import annotations

import base64
import http.cookies
import os
import stat
import tempfile
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imageguard.errors import (
    BadSignature,
    ShareLinkError,
    TicketError,
    TicketExpired,
    TicketFromFuture,
)
from imageguard.files.gate import (
    FORBIDDEN,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    OK,
    Gate,
    relative_to_root,
)
from imageguard.identity import sharelinks
from imageguard.identity.cookies import find_cookie, unquote
from imageguard.identity.tickets import (
    TicketVerifier,
    VerifiedTicket,
    decode_cookie_value,
    issue_ticket,
    parse_ticket,
)
from imageguard.policy.levels import Level
from imageguard.policy.principals import check_name

SETTINGS = settings(max_examples=200, deadline=None)
FIXTURE_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

SECRET = b"property-test-secret-0123456789"
OTHER_SECRET = b"another-secret-of-enough-length"
DIGESTS = ("md5", "sha256", "sha512")
REALM = "/srv/images"

# Text as a client can send it, and text as Python gives bytes that are not UTF-8
# (lone surrogates): every parser must take both.
hostile_text = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
)


@st.composite
def mutations(draw: st.DrawFn, text: str) -> tuple[int, str]:
    """One position of *text* and a character different from the one there."""
    where = draw(st.integers(0, len(text) - 1))
    char = draw(
        st.one_of(
            st.sampled_from('0123456789abcdefABCDEF!%,=&;"\\ +-_/\x00é'),
            st.characters(),
            st.just(text[where].swapcase()),
        ).filter(lambda c: c != text[where])
    )
    return where, char


def mutate(text: str, where: tuple[int, str]) -> str:
    i, c = where
    return text[:i] + c + text[i + 1 :]


# --------------------------------------------------------------------------- tickets

NAME_ALPHABET = st.sampled_from("abcXYZ019._-@+*~%é€")
user_names = st.text(NAME_ALPHABET, min_size=1, max_size=12).filter(
    lambda u: u not in (".", "..") and urllib.parse.unquote(u) == u
)
group_names = st.text(NAME_ALPHABET, min_size=1, max_size=8).filter(lambda g: g not in (".", ".."))
user_datas = st.text(max_size=40).filter(lambda d: "\0" not in d and "userid_type:" not in d)
timestamps = st.integers(0, 0xFFFFFFFF)


@dataclass(frozen=True)
class Issued:
    user: str
    groups: frozenset[str]
    user_data: str
    timestamp: int
    digest: str
    cookie: str

    @property
    def text(self) -> str:
        return base64.b64decode(self.cookie).decode("utf-8")


@st.composite
def issued_tickets(draw: st.DrawFn) -> Issued:
    user = draw(user_names)
    groups = draw(st.lists(group_names, max_size=4))
    user_data = draw(user_datas)
    stamp = draw(timestamps)
    digest = draw(st.sampled_from(DIGESTS))
    cookie = issue_ticket(user, groups, SECRET, user_data=user_data, digest=digest, timestamp=stamp)
    return Issued(user, frozenset(groups), user_data, stamp, digest, cookie)


def verifier(digest: str, **options: object) -> TicketVerifier:
    return TicketVerifier(secrets=[OTHER_SECRET, SECRET], digest=digest, **options)  # type: ignore[arg-type]


def fields(ticket: VerifiedTicket) -> tuple[str, frozenset[str], str, int]:
    return (ticket.user, ticket.groups, ticket.user_data, ticket.timestamp)


# As many hex digits as a digest and a timestamp have, give or take one.
hex_heads = st.tuples(st.sampled_from([32, 64, 128]), st.integers(7, 9)).flatmap(
    lambda n: st.text(alphabet="0123456789abcdefABCDEF", min_size=sum(n), max_size=sum(n))
)


@st.composite
def ticket_shaped(draw: st.DrawFn) -> str:
    """Text that gets past the first checks: hex, then hostile uid, tokens and data."""
    text = draw(hex_heads) + "!".join(draw(st.lists(hostile_text, min_size=1, max_size=3)))
    dress = draw(st.sampled_from(["raw", "quoted", "base64"]))
    if dress == "quoted":
        return f'"{text}"'
    if dress == "base64":
        return base64.b64encode(text.encode("utf-8", "surrogatepass")).decode("ascii")
    return text


@SETTINGS
@given(st.one_of(hostile_text, ticket_shaped()), st.sampled_from(DIGESTS))
def test_any_cookie_value_is_a_ticket_or_a_ticket_error(value: str, digest: str) -> None:
    try:
        text = decode_cookie_value(value)
        parsed = parse_ticket(text, digest)
    except TicketError:
        pass
    else:
        # What parses once parses the same when written out again.
        again = f"{parsed.digest}{parsed.timestamp:08x}{parsed.uid}!{parsed.tokens}!"
        again += parsed.user_data
        assert parse_ticket(again, digest) == parsed
    try:
        verifier(digest, timeout=0, allow_no_timeout=True).verify(value, now=0)
    except TicketError:
        pass
    else:  # a signature cannot be guessed
        raise AssertionError(f"an unsigned value was accepted: {value!r}")


@SETTINGS
@given(issued_tickets())
def test_a_ticket_gives_back_what_was_signed_in_every_dress(issued: Issued) -> None:
    check = verifier(issued.digest, timeout=60).verify
    expected = (issued.user, issued.groups, issued.user_data, issued.timestamp)
    text = issued.text
    escaped = "".join(
        "\\" + c if c in '"\\' else f"\\{ord(c):03o}" if c in ",;" else c for c in text
    )
    dresses = [issued.cookie, f'"{escaped}"', f"  {issued.cookie} "]
    if text == text.strip():  # unquoted, a cookie value loses surrounding whitespace
        dresses.append(text)
        if "%" not in text:
            dresses.append(text.replace("!", "%21"))
    for dress in dresses:
        assert fields(check(dress, now=issued.timestamp)) == expected, dress


@SETTINGS
@given(issued_tickets(), st.data())
def test_a_changed_ticket_is_refused(issued: Issued, data: st.DataObject) -> None:
    check = verifier(issued.digest, timeout=0, allow_no_timeout=True).verify
    original = fields(check(issued.cookie, now=issued.timestamp))
    for value in (issued.text, issued.cookie):
        changed = mutate(value, data.draw(mutations(value)))
        try:
            ticket = check(changed, now=issued.timestamp)
        except TicketError:
            continue
        # Only spellings of the same ticket pass (hex digits in either case, base64's
        # unused low bits): they must prove exactly the same.
        assert fields(ticket) == original, (value, changed)


@SETTINGS
@given(
    issued_tickets(),
    st.integers(1, 10**6),
    st.integers(0, 3600),
    st.integers(-(10**6), 10**6),
)
def test_a_ticket_is_valid_exactly_within_its_time_window(
    issued: Issued, timeout: int, skew: int, offset: int
) -> None:
    now = issued.timestamp + offset
    check = verifier(issued.digest, timeout=timeout, max_clock_skew=skew)
    if issued.timestamp > now + skew:
        with pytest.raises(TicketFromFuture):
            check.verify(issued.cookie, now=now)
    elif issued.timestamp + timeout < now:
        with pytest.raises(TicketExpired):
            check.verify(issued.cookie, now=now)
    else:
        assert check.verify(issued.cookie, now=now).user == issued.user


@SETTINGS
@given(user_names, st.ip_addresses(), st.ip_addresses(), st.sampled_from(DIGESTS))
def test_a_bound_ticket_is_valid_from_its_address_only(
    user: str, ip: object, other: object, digest: str
) -> None:
    cookie = issue_ticket(user, (), SECRET, digest=digest, ip=str(ip), timestamp=1000)
    check = verifier(digest, bind_ip=True)
    assert check.verify(cookie, client_ip=str(ip), now=1000).user == user
    if str(other) != str(ip):
        with pytest.raises(BadSignature):
            check.verify(cookie, client_ip=str(other), now=1000)


@SETTINGS
@given(st.text(max_size=20), st.lists(st.text(max_size=8), max_size=3), st.text(max_size=20))
def test_issuing_refuses_what_could_not_be_read_back(
    user: str, groups: list[str], user_data: str
) -> None:
    try:
        cookie = issue_ticket(user, groups, SECRET, user_data=user_data, timestamp=5)
    except ValueError:
        return
    ticket = verifier("sha256").verify(cookie, now=5)
    assert (ticket.user, ticket.groups) == (user, frozenset(groups))
    if "userid_type:" not in user_data:
        assert ticket.user_data == user_data


# --------------------------------------------------------------------------- cookies

cookie_names = st.sampled_from(["auth_tkt", "pysid", "x", "auth_tkt2", "Auth_tkt"])
cookie_values = st.one_of(st.text(max_size=30), st.sampled_from(['"', '"a"', "\\", "a b", ""]))


def quoted(value: str) -> str:
    """The value as Python's http.cookies (and WebOb) writes it in a header."""
    morsel: http.cookies.Morsel[str] = http.cookies.Morsel()
    morsel.set("n", value, http.cookies._quote(value))
    return morsel.coded_value


@SETTINGS
@given(st.lists(hostile_text, max_size=3), hostile_text)
def test_find_cookie_never_raises(headers: list[str], name: str) -> None:
    found = find_cookie(headers, name)
    assert found is None or isinstance(found, str)


@SETTINGS
@given(hostile_text)
def test_unquote_never_raises_and_leaves_unquoted_values_alone(value: str) -> None:
    result = unquote(value)
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        assert result == value
    else:
        assert len(result) <= len(value) - 2


@SETTINGS
@given(cookie_values)
def test_a_quoted_value_reads_back_as_written(value: str) -> None:
    assert unquote(quoted(value)) == value


@SETTINGS
@given(
    st.lists(st.tuples(cookie_names, cookie_values), max_size=8),
    st.lists(st.text(alphabet="ab \t", max_size=4), max_size=3),
    st.integers(1, 3),
    cookie_names,
)
def test_the_last_value_of_a_cookie_wins_across_headers(
    pairs: list[tuple[str, str]], junk: list[str], headers: int, wanted: str
) -> None:
    parts = [f"{name}={quoted(value)}" for name, value in pairs] + junk
    expected = None
    for name, value in pairs:
        if name == wanted:
            expected = value
    # Junk without '=' is skipped wherever it stands; the pairs keep their order.
    ordered = parts[: len(pairs)]
    for index, piece in enumerate(junk):
        ordered.insert(min(index * 2, len(ordered)), piece)
    size = max(1, -(-len(ordered) // headers))
    values = ["; ".join(ordered[i : i + size]) for i in range(0, len(ordered), size)]
    assert find_cookie(values, wanted) == expected


# --------------------------------------------------------------------------- share links

relpaths = st.lists(
    st.text(st.characters(codec="utf-8", exclude_characters="/\0"), min_size=1, max_size=8),
    min_size=1,
    max_size=3,
).map("/".join)
levels = st.sampled_from([Level.FULL, Level.PREVIEW, Level.THUMB])
link_users = st.one_of(st.just(""), user_names)
expiries = st.integers(0, 10**12 - 1)


@st.composite
def link_shaped(draw: st.DrawFn) -> str:
    """A query with every parameter present and well shaped but the user, or hostile."""
    params = {
        "ig_exp": draw(st.from_regex(r"[0-9]{1,12}", fullmatch=True)),
        "ig_lvl": draw(st.sampled_from(["full", "preview", "thumb", "deny", "FULL", ""])),
        "ig_user": draw(hostile_text),
        "ig_sig": draw(st.from_regex(r"[A-Za-z0-9_-]{43}", fullmatch=True)),
    }
    for name in draw(st.sets(st.sampled_from(sorted(params)), max_size=2)):
        params[name] = draw(hostile_text)
    return "&".join(f"{k}={v}" for k, v in params.items())


@SETTINGS
@given(hostile_text, st.one_of(hostile_text, link_shaped()), st.floats(allow_nan=False) | st.none())
def test_any_query_is_a_grant_or_a_share_link_error(
    relpath: str, query: str, now: float | None
) -> None:
    try:
        sharelinks.verify(relpath, query, [SECRET], now, realm=REALM)
    except ShareLinkError:
        pass
    else:
        raise AssertionError(f"an unsigned link was accepted: {query!r}")


@SETTINGS
@given(relpaths, levels, expiries, link_users, st.text(min_size=1).filter(str.isprintable))
def test_a_link_grants_what_was_signed(
    relpath: str, level: Level, expires: int, user: str, realm: str
) -> None:
    params = sharelinks.sign(relpath, level, expires, SECRET, user, realm=realm)
    url = sharelinks.link("/images/", relpath, params)
    path, _, query = url.partition("?")
    assert urllib.parse.unquote(path.removeprefix("/images/")) == relpath
    grant = sharelinks.verify(relpath, query, [OTHER_SECRET, SECRET], expires, realm=realm)
    assert (grant.relpath, grant.level, grant.expires, grant.user) == (
        relpath,
        level,
        expires,
        user,
    )
    with pytest.raises(ShareLinkError, match="expired"):
        sharelinks.verify(relpath, query, [SECRET], expires + 0.5, realm=realm)
    for wrong in ({"secrets": [OTHER_SECRET]}, {"realm": realm + "x"}, {"relpath": relpath + "x"}):
        args = {"relpath": relpath, "secrets": [SECRET], "realm": realm, **wrong}
        with pytest.raises(ShareLinkError):
            sharelinks.verify(args["relpath"], query, args["secrets"], 0, realm=args["realm"])  # type: ignore[arg-type]


@SETTINGS
@given(relpaths, levels, expiries, link_users, st.data())
def test_a_changed_link_is_refused(
    relpath: str, level: Level, expires: int, user: str, data: st.DataObject
) -> None:
    params = sharelinks.sign(relpath, level, expires, SECRET, user, realm=REALM)
    query = urllib.parse.urlencode(params)
    changed = mutate(query, data.draw(mutations(query)))
    try:
        grant = sharelinks.verify(relpath, changed, [SECRET], 0, realm=REALM)
    except ShareLinkError:
        return
    # Only another spelling of the same link may pass, granting exactly the same.
    assert (grant.relpath, grant.level, grant.expires, grant.user) == (
        relpath,
        level,
        expires,
        user,
    ), changed


@SETTINGS
@given(relpaths, levels, expiries, st.text(max_size=20))
def test_signing_refuses_with_documented_errors_only(
    relpath: str, level: Level, expires: int, user: str
) -> None:
    try:
        params = sharelinks.sign(relpath, level, expires, SECRET, user, realm=REALM)
    except ValueError:  # PrincipalError for a user name that cannot be one
        with pytest.raises(ValueError):
            check_name(user, "user")
        return
    query = urllib.parse.urlencode(params)
    assert sharelinks.verify(relpath, query, [SECRET], 0, realm=REALM).user == user


# --------------------------------------------------------------------------- the gate

IMAGES = ("a.jpg", "sub/b.png", "sub/deep/c.gif", "sp ace/é.jpeg", "back\\slash.jpg")


@dataclass(frozen=True)
class Tree:
    root: str
    alias: str
    images: frozenset[str]  # the real paths of every file the gate may ever admit
    gates: tuple[Gate, ...]


@pytest.fixture(scope="module")
def tree() -> Iterator[Tree]:
    with tempfile.TemporaryDirectory() as top:
        top = os.path.realpath(top)
        root = os.path.join(top, "root")
        for rel in IMAGES:
            os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
            with open(os.path.join(root, rel), "wb") as out:
                out.write(b"x")
        for rel in (".hidden.jpg", "sub/.x/d.jpg", "notes.txt", "a.jpg.txt"):
            os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
            with open(os.path.join(root, rel), "wb") as out:
                out.write(b"x")
        os.mkdir(os.path.join(root, "dir.jpg"))
        os.mkfifo(os.path.join(root, "fifo.jpg"))
        # Beside the root, under names that start like it, and above it.
        for rel in ("rootx/secret.jpg", "secret.jpg"):
            os.makedirs(os.path.dirname(os.path.join(top, rel)), exist_ok=True)
            with open(os.path.join(top, rel), "wb") as out:
                out.write(b"x")
        links = {
            "in.jpg": "a.jpg",
            "sub/up.jpg": "../a.jpg",
            "out.jpg": "../secret.jpg",
            "prefix.jpg": "../rootx/secret.jpg",
            "hidden.jpg": ".hidden.jpg",
            "txt.jpg": "notes.txt",
            "subdir": "sub",
            "updir": "..",
            "loop.jpg": "loop.jpg",
            "abs.jpg": os.path.join(top, "secret.jpg"),
        }
        for name, target in links.items():
            os.symlink(target, os.path.join(root, name))
        alias = os.path.join(top, "alias")
        os.symlink("root", alias)
        gates = (
            Gate.create(root),
            Gate.create(root, hide_existence=True),
            Gate.create(alias, extensions="jpg png gif jpeg"),
        )
        yield Tree(root, alias, frozenset(os.path.join(root, r) for r in IMAGES), gates)


NAMES = [
    *IMAGES,
    *IMAGES,
    "a.jpg",
    "sub",
    "deep",
    "b.png",
    "..",
    ".",
    "",
    "in.jpg",
    "out.jpg",
    "prefix.jpg",
    "hidden.jpg",
    "txt.jpg",
    "subdir",
    "updir",
    "loop.jpg",
    "abs.jpg",
    ".hidden.jpg",
    ".x",
    "dir.jpg",
    "fifo.jpg",
    "notes.txt",
    "a.jpg.txt",
    "root",
    "rootx",
    "secret.jpg",
    "alias",
    "..\\a.jpg",
    "a.jpg\0",
    "\0",
    "a.JPG",
    "%2e%2e",
    "\udcff.jpg",
    "\ud800.jpg",
    "e\u0301.jpeg",
]


# Names that lead somewhere in the tree (or just past it), most of them whole paths.
WALKS = [
    *IMAGES,
    "in.jpg",
    "sub/up.jpg",
    "subdir/b.png",
    "subdir/deep/c.gif",
    "updir/root/a.jpg",
    "updir/secret.jpg",
    "updir/rootx/secret.jpg",
    "sub/../a.jpg",
    "sub/deep/../../a.jpg",
    "sub/../../secret.jpg",
    "sub/.x/d.jpg",
    "subdir/.x/d.jpg",
    "../alias/a.jpg",
    "../rootx/secret.jpg",
]


@st.composite
def requested_names(draw: st.DrawFn, tree: Tree) -> str:
    top = os.path.dirname(tree.root)
    inside = [tree.root, tree.root, tree.root, tree.alias, tree.alias]
    start = draw(st.sampled_from([*inside, top + "/rootx", top, "/", "", "root"]))
    part = st.one_of(
        st.sampled_from(WALKS), st.sampled_from(WALKS), st.sampled_from(NAMES), st.text(max_size=6)
    )
    if draw(st.integers(0, 4)) < 3:
        parts = [draw(st.sampled_from(WALKS))]
    else:
        parts = draw(st.lists(part, min_size=0, max_size=3))
    name = "/".join([start, *parts])
    if draw(st.integers(0, 3)) == 0:
        trick = draw(st.sampled_from(["//", "/./", "\\", "/../root/", "/\0/"]))
        name = name.replace("/", trick, draw(st.integers(1, 3)))
    return name


def assert_admits_only_images(tree: Tree, gate: Gate, filename: str, path_info: str) -> None:
    method = "GET" if path_info else "HEAD"
    verdict = gate.check(method, filename, path_info)
    assert verdict.status in (OK, FORBIDDEN, NOT_FOUND), verdict
    if not verdict.allowed:
        return
    # Never anything but a plain image file inside the root, by its real path.
    assert not path_info
    assert verdict.path in tree.images, (filename, verdict)
    assert verdict.path == f"{tree.root}/{verdict.relpath}"
    assert os.path.realpath(verdict.path) == verdict.path
    assert os.path.commonpath([tree.root, verdict.path]) == tree.root
    segments = verdict.relpath.split("/")
    assert all(s and s not in (".", "..") and not s.startswith(".") for s in segments)
    assert "\0" not in verdict.relpath
    assert stat.S_ISREG(os.lstat(verdict.path).st_mode)
    # The file admitted is the one the name leads to.
    assert os.path.realpath(os.path.normpath(filename)) == verdict.path
    # Normalising is idempotent: the admitted path is admitted as itself.
    again = gate.check("GET", verdict.path, "")
    assert (again.status, again.relpath, again.path) == (OK, verdict.relpath, verdict.path)


@FIXTURE_SETTINGS
@given(st.data())
def test_the_gate_admits_nothing_but_image_files_inside_the_root(
    tree: Tree, data: st.DataObject
) -> None:
    gate = data.draw(st.sampled_from(tree.gates))
    filename = data.draw(requested_names(tree))
    path_info = data.draw(st.one_of(st.just(""), st.just(""), hostile_text))
    assert_admits_only_images(tree, gate, filename, path_info)


@FIXTURE_SETTINGS
@given(st.data())
def test_the_gate_judges_any_text_without_raising(tree: Tree, data: st.DataObject) -> None:
    gate = data.draw(st.sampled_from(tree.gates))
    filename = data.draw(st.one_of(hostile_text, hostile_text.map(lambda t: tree.root + "/" + t)))
    path_info = data.draw(st.one_of(st.just(""), hostile_text))
    method = data.draw(st.one_of(st.sampled_from(["GET", "HEAD", "POST", "get"]), hostile_text))
    verdict = gate.check(method, filename, path_info)
    if method not in ("GET", "HEAD"):
        assert verdict.status == METHOD_NOT_ALLOWED
    elif path_info:
        assert not verdict.allowed
    else:
        assert_admits_only_images(tree, gate, filename, "")


def test_the_images_themselves_are_admitted(tree: Tree) -> None:
    for gate in tree.gates:
        base = tree.alias if gate.alias else tree.root
        for rel in IMAGES:
            verdict = gate.check("GET", f"{base}/{rel}", "")
            assert (verdict.status, verdict.relpath) == (OK, rel)


@SETTINGS
@given(hostile_text, st.sampled_from(["/srv/images", "/srv/images/", "/"]))
def test_relative_to_root_rebuilds_the_path(path: str, root: str) -> None:
    relpath = relative_to_root(path, root)
    if relpath is None:
        assert not path.startswith(root.rstrip("/") + "/") and path != root
    elif relpath == "":
        assert path == root
    else:
        assert root.rstrip("/") + "/" + relpath == path
