"""imageguard's tickets against the real mod_auth_tkt, in a real Apache 2.4.

One Apache per MPM (event, prefork) loads Debian's ``mod_auth_tkt.so`` and serves the
same two directories of small files on three extra loopback ports, one
``<VirtualHost>`` per digest type, because ``TKTAuthSecret``, ``TKTAuthSecretOld`` and
``TKTAuthDigestType`` are per-server directives:

* ``/open``: ``TKTAuthIgnoreIP on`` (tickets signed for ``0.0.0.0``);
* ``/bound``: ``TKTAuthIgnoreIP off`` (tickets signed for the client's IPv4 address);
* ``/doc``, on a fourth port: the mod_auth_tkt configuration docs/tickets.md shows, read
  from the page and run as it is written there (its directory aside).

Every ticket is made by :func:`imageguard.identity.tickets.issue_ticket` (tampered ones by editing
its decoded text), sent to mod_auth_tkt, and given to :class:`TicketVerifier` configured
like the virtual host: both must accept, or both refuse. mod_auth_tkt refuses with a
307 to ``TKTAuthLoginURL`` (``TKTAuthTimeoutURL`` for an expired ticket), so a refusal
cannot be mistaken for anything else; an acceptance is a 200 with the file's bytes, and
the access log's ``%u`` shows the ticket's user.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import itertools
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from imageguard.errors import (
    BadSignature,
    MalformedTicket,
    TicketExpired,
    TicketFromFuture,
)
from imageguard.identity.tickets import TicketVerifier, digest_hex_length, issue_ticket
from imageguard_devtools.localserver import (
    MODULES_DIR,
    ApacheConfig,
    ApacheError,
    LocalApache,
    free_port,
    make_workdir,
    prepare_readable,
)

from .conftest import needs_apache

pytestmark = needs_apache("auth_tkt")

MPMS = ["event", "prefork"]
DIGESTS = ["md5", "sha256", "sha512"]
SECRETS = {d: f"{d}-current-secret-0123456789" for d in DIGESTS}
OLD_SECRETS = {d: f"{d}-previous-secret-0123456789" for d in DIGESTS}
WRONG_SECRET = "an-unrelated-secret-0123456789"
TIMEOUT = 600  # TKTAuthTimeout 10m
LOGIN_URL = "http://login.test/login"
TIMEOUT_URL = "http://login.test/timeout"
FILE_BYTES = b"image bytes \x00\x01\x02 for the ticket test\n"
USER, GROUPS, DATA = "alice", ("staff", "editors"), "lang=en"


@dataclass
class TktServer:
    server: LocalApache
    ports: dict[str, int]  # digest -> port of its virtual host
    tkt_log: Path
    doc_port: int = 0  # the virtual host of docs/tickets.md's configuration

    def verifier(self, digest: str, *, old: bool = False, bind_ip: bool = False) -> TicketVerifier:
        """A TicketVerifier configured like the virtual host of *digest*."""
        secrets = [SECRETS[digest].encode()]
        if old:
            secrets.append(OLD_SECRETS[digest].encode())
        return TicketVerifier(secrets=secrets, digest=digest, timeout=TIMEOUT, bind_ip=bind_ip)


def directory(path: Path, ignore_ip: str) -> str:
    return f"""
<Directory {path}>
    AuthType None
    AuthName "tickets"
    TKTAuthLoginURL {LOGIN_URL}
    TKTAuthTimeoutURL {TIMEOUT_URL}
    TKTAuthTimeout 10m
    # No refresh of a valid ticket (a ticket signed with the old secret is still renewed).
    TKTAuthTimeoutRefresh 0
    TKTAuthIgnoreIP {ignore_ip}
    Require valid-user
</Directory>
"""


DOC_PAGE = Path(__file__).resolve().parents[2] / "docs" / "tickets.md"
#: The first line of the mod_auth_tkt configuration docs/tickets.md shows, and the
#: directory it protects there.
DOC_BLOCK_START = "LoadModule auth_tkt_module /usr/lib/apache2/modules/mod_auth_tkt.so"
DOC_DIRECTORY = "/srv/other"


def doc_block() -> str:
    """The mod_auth_tkt configuration block of docs/tickets.md, as the page shows it."""
    for block in re.findall(r"```apache\n(.*?)```", DOC_PAGE.read_text(), flags=re.DOTALL):
        if block.startswith(DOC_BLOCK_START + "\n"):
            return str(block)
    raise AssertionError(f"docs/tickets.md shows no block starting {DOC_BLOCK_START!r}")


def doc_setting(name: str) -> str:
    """The value of directive *name* in the page's block (quotes removed)."""
    found = re.search(rf"^\s*{name}\s+(.+?)\s*$", doc_block(), flags=re.MULTILINE)
    assert found, f"the block of docs/tickets.md has no {name}"
    return found.group(1).strip('"')


def doc_vhost(port: int, directory: Path) -> str:
    """The page's block as one virtual host on *port*, protecting *directory* (served at
    /doc) where the page says /srv/other. Its LoadModule line must name the module the
    server loads already (LoadModule is not allowed in a virtual host)."""
    load, _, rest = doc_block().partition("\n")
    assert load.split()[2] == str(MODULES_DIR / "mod_auth_tkt.so"), load
    assert f"<Directory {DOC_DIRECTORY}>" in rest
    return f"""
Listen 127.0.0.1:{port}
<VirtualHost 127.0.0.1:{port}>
    ServerName tkt-doc.test
    Alias /doc {directory}
{rest.replace(DOC_DIRECTORY, str(directory))}
</VirtualHost>
"""


def server_body(root: Path, ports: dict[str, int], tkt_log: Path, doc_port: int) -> str:
    vhosts = "".join(
        f"""
Listen 127.0.0.1:{port}
<VirtualHost 127.0.0.1:{port}>
    ServerName tkt-{digest}.test
    TKTAuthSecret "{SECRETS[digest]}"
    TKTAuthSecretOld "{OLD_SECRETS[digest]}"
    TKTAuthDigestType {digest.upper()}
</VirtualHost>
"""
        for digest, port in ports.items()
    )
    log_format = "%u|%{REMOTE_USER_TOKENS}e|%{REMOTE_USER_DATA}e|%U%q|%>s"
    return f"""
CustomLog "{tkt_log}" "{log_format}"
Alias /open {root / "open"}
Alias /bound {root / "bound"}
{directory(root / "open", "on")}
{directory(root / "bound", "off")}
{vhosts}
{doc_vhost(doc_port, root / "doc")}
"""


@pytest.fixture(scope="module", params=MPMS)
def tkt(request: pytest.FixtureRequest) -> Iterator[TktServer]:
    workdir = make_workdir(f"imageguard-tkt-{request.param}-")
    root = workdir / "files"
    for name in ("open", "bound", "doc"):
        (root / name).mkdir(parents=True)
        (root / name / "a.txt").write_bytes(FILE_BYTES)
    prepare_readable(workdir)
    tkt_log = workdir / "apache" / "logs" / "tkt.log"
    try:
        for attempt in itertools.count():
            ports = {digest: free_port() for digest in DIGESTS}
            doc_port = free_port()
            config = ApacheConfig(
                workdir=workdir / "apache",
                body=server_body(root, ports, tkt_log, doc_port),
                mpm=request.param,
                extra_modules=("auth_tkt",),
                start_servers=1,
            )
            server = LocalApache(config)
            try:
                server.start()
                break
            except ApacheError:  # a port chosen above was taken in the meantime
                if attempt >= 2:
                    raise
        try:
            yield TktServer(server, ports, tkt_log, doc_port)
        finally:
            server.stop()
    finally:
        if not os.environ.get("IMAGEGUARD_KEEP_WORKDIR"):
            shutil.rmtree(workdir, ignore_errors=True)


# ----------------------------------------------------------------------------- helpers

_case_numbers = itertools.count()


@dataclass
class Answer:
    status: int
    location: str
    set_cookie: str
    body: bytes
    case: str


def get(
    port: int, directory: str, cookie: str | None = None, *, source: str = "127.0.0.1"
) -> Answer:
    """GET /<directory>/a.txt from *source* (a loopback address); the query names the case."""
    case = f"c{next(_case_numbers)}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        headers = {"Cookie": f"auth_tkt={cookie}"} if cookie is not None else {}
        conn.request("GET", f"/{directory}/a.txt?case={case}", headers=headers)
        response = conn.getresponse()
        body = response.read()
        return Answer(
            response.status,
            response.getheader("Location", ""),
            response.getheader("Set-Cookie", ""),
            body,
            case,
        )
    finally:
        conn.close()


def log_fields(path: Path, case: str) -> list[str]:
    """The mod_auth_tkt log line of request *case*: [user, tokens, user data, uri, status].

    Apache writes the log after the response has gone out, hence the short wait.
    """
    deadline = time.monotonic() + 5
    while True:
        with contextlib.suppress(FileNotFoundError):
            for line in path.read_text(errors="replace").splitlines():
                fields = line.split("|")
                if fields[3].endswith(f"?case={case}"):
                    return fields
        if time.monotonic() > deadline:
            raise AssertionError(f"no log line for case {case} in {path}")
        time.sleep(0.02)


def access_log_user(server: LocalApache, case: str) -> str:
    """The ``%u`` field of request *case* in the server's (combined) access log."""
    deadline = time.monotonic() + 5
    while True:
        for line in server.access_log_lines():
            if f"?case={case} " in line:
                return line.split()[2]
        if time.monotonic() > deadline:
            raise AssertionError(f"no access log line for case {case}")
        time.sleep(0.02)


def decoded(cookie: str) -> str:
    return base64.b64decode(cookie).decode()


def encoded(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def tamper(cookie: str, digest: str, part: str) -> str:
    """*cookie* (base64) with one part of its ticket changed, re-encoded as base64."""
    text = decoded(cookie)
    size = digest_hex_length(digest)
    mac, stamp, rest = text[:size], text[size : size + 8], text[size + 8 :]
    uid, tokens, data = rest.split("!", 2)
    if part == "uid":
        uid = "mallory"
    elif part == "tokens":
        tokens += ",admin"
    elif part == "user_data":
        data = "lang=de"
    elif part == "timestamp":
        stamp = f"{int(stamp, 16) + 1:08x}"
    elif part == "digest":
        mac = ("1" if mac[0] == "0" else "0") + mac[1:]
    else:  # pragma: no cover - a typo in a test
        raise ValueError(part)
    return encoded(f"{mac}{stamp}{uid}!{tokens}!{data}")


def ticket(digest: str, *, secret: str | None = None, **kwargs: object) -> str:
    return issue_ticket(
        USER, GROUPS, secret or SECRETS[digest], user_data=DATA, digest=digest, **kwargs
    )


def assert_served(tkt: TktServer, answer: Answer, user: str = USER) -> None:
    assert answer.status == 200, (answer.status, answer.location)
    assert answer.body == FILE_BYTES
    assert access_log_user(tkt.server, answer.case) == user
    logged_user, tokens, data, _uri, status = log_fields(tkt.tkt_log, answer.case)
    assert (logged_user, tokens, data, status) == (user, ",".join(GROUPS), DATA, "200")


def assert_refused(tkt: TktServer, answer: Answer, url: str = LOGIN_URL) -> None:
    assert answer.status == 307, answer
    assert answer.location.startswith(url + "?back="), answer.location
    assert answer.body != FILE_BYTES
    assert access_log_user(tkt.server, answer.case) == "-"


# ----------------------------------------------------------------------------- accepted

DRESSES = {
    "base64": lambda cookie: cookie,
    "raw": decoded,
    "pct21": lambda cookie: decoded(cookie).replace("!", "%21"),
    "quoted": lambda cookie: f'"{cookie}"',
}


@pytest.mark.parametrize("dress", DRESSES)
@pytest.mark.parametrize("digest", DIGESTS)
def test_issued_ticket_is_accepted_by_both(tkt: TktServer, digest: str, dress: str) -> None:
    cookie = DRESSES[dress](ticket(digest))
    answer = get(tkt.ports[digest], "open", cookie)
    assert_served(tkt, answer)
    assert answer.set_cookie == ""  # TKTAuthTimeoutRefresh 0: a good ticket is not renewed
    verified = tkt.verifier(digest).verify(cookie)
    assert (verified.user, verified.groups, verified.user_data) == (USER, set(GROUPS), DATA)


# ----------------------------------------------------------------------------- refused


@pytest.mark.parametrize("part", ["uid", "tokens", "user_data", "timestamp", "digest"])
@pytest.mark.parametrize("digest", DIGESTS)
def test_tampered_ticket_is_refused_by_both(tkt: TktServer, digest: str, part: str) -> None:
    good = ticket(digest)
    assert get(tkt.ports[digest], "open", good).status == 200
    cookie = tamper(good, digest, part)
    assert_refused(tkt, get(tkt.ports[digest], "open", cookie))
    with pytest.raises(BadSignature):
        tkt.verifier(digest, old=True).verify(cookie)


@pytest.mark.parametrize("digest", DIGESTS)
def test_wrong_secret_is_refused_by_both(tkt: TktServer, digest: str) -> None:
    cookie = ticket(digest, secret=WRONG_SECRET)
    assert_refused(tkt, get(tkt.ports[digest], "open", cookie))
    with pytest.raises(BadSignature):
        tkt.verifier(digest, old=True).verify(cookie)


@pytest.mark.parametrize("digest", DIGESTS)
def test_ticket_of_another_digest_is_refused_by_both(tkt: TktServer, digest: str) -> None:
    other = DIGESTS[(DIGESTS.index(digest) + 1) % len(DIGESTS)]
    cookie = ticket(other, secret=SECRETS[digest])
    assert_refused(tkt, get(tkt.ports[digest], "open", cookie))
    with pytest.raises((BadSignature, MalformedTicket)):
        tkt.verifier(digest, old=True).verify(cookie)


@pytest.mark.parametrize("digest", DIGESTS)
def test_expired_ticket_is_refused_by_both(tkt: TktServer, digest: str) -> None:
    cookie = ticket(digest, timestamp=int(time.time()) - TIMEOUT - 120)
    answer = get(tkt.ports[digest], "open", cookie)
    assert_refused(tkt, answer, TIMEOUT_URL)  # mod_auth_tkt knows it is a timeout
    assert "auth_tkt=;" in answer.set_cookie  # ... and deletes the cookie
    with pytest.raises(TicketExpired):
        tkt.verifier(digest).verify(cookie)


@pytest.mark.parametrize("digest", DIGESTS)
def test_no_ticket_and_garbage_are_refused(tkt: TktServer, digest: str) -> None:
    assert_refused(tkt, get(tkt.ports[digest], "open"))
    garbage = encoded("x" * 200)
    assert_refused(tkt, get(tkt.ports[digest], "open", garbage))
    with pytest.raises(MalformedTicket):
        tkt.verifier(digest).verify(garbage)


# ----------------------------------------------------------------------------- rotation


@pytest.mark.parametrize("digest", DIGESTS)
def test_old_secret_is_accepted_by_both_and_renewed(tkt: TktServer, digest: str) -> None:
    cookie = ticket(digest, secret=OLD_SECRETS[digest])
    answer = get(tkt.ports[digest], "open", cookie)
    assert_served(tkt, answer)
    assert tkt.verifier(digest, old=True).verify(cookie).user == USER
    with pytest.raises(BadSignature):  # without the old secret in the list: refused
        tkt.verifier(digest).verify(cookie)
    # mod_auth_tkt renews a ticket signed with TKTAuthSecretOld with the current secret;
    # the renewed ticket is one imageguard accepts with the current secret alone.
    assert answer.set_cookie.startswith("auth_tkt="), answer.set_cookie
    renewed = answer.set_cookie.split(";")[0].partition("=")[2]
    verified = tkt.verifier(digest).verify(renewed)
    assert (verified.user, verified.groups, verified.user_data) == (USER, set(GROUPS), DATA)


# ----------------------------------------------------------------------------- IP binding


@pytest.mark.parametrize("digest", DIGESTS)
def test_ipv4_binding_agrees(tkt: TktServer, digest: str) -> None:
    port = tkt.ports[digest]
    bound = tkt.verifier(digest, bind_ip=True)
    for ip, other in (("127.0.0.1", "127.0.0.2"), ("127.0.0.2", "127.0.0.1")):
        cookie = ticket(digest, ip=ip)
        assert_served(tkt, get(port, "bound", cookie, source=ip))
        assert bound.verify(cookie, client_ip=ip).user == USER
        assert_refused(tkt, get(port, "bound", cookie, source=other))
        with pytest.raises(BadSignature):
            bound.verify(cookie, client_ip=other)
        # Where addresses are ignored, a bound ticket is refused (it was not signed for
        # 0.0.0.0), by mod_auth_tkt and by imageguard with bind_ip off.
        assert_refused(tkt, get(port, "open", cookie, source=ip))
        with pytest.raises(BadSignature):
            tkt.verifier(digest).verify(cookie, client_ip=ip)
    unbound = ticket(digest)
    assert_refused(tkt, get(port, "bound", unbound))
    with pytest.raises(BadSignature):
        bound.verify(unbound, client_ip="127.0.0.1")


# ----------------------------------------------------------------------------- differences


@pytest.mark.parametrize("digest", DIGESTS)
def test_future_ticket_only_imageguard_refuses(tkt: TktServer, digest: str) -> None:
    """mod_auth_tkt only checks that a ticket is not too old; imageguard also refuses a
    ticket stamped further ahead than clocks drift (5 minutes)."""
    cookie = ticket(digest, timestamp=int(time.time()) + 3600)
    assert_served(tkt, get(tkt.ports[digest], "open", cookie))
    with pytest.raises(TicketFromFuture):
        tkt.verifier(digest).verify(cookie)


# ----------------------------------------------------------------------------- the docs


def test_the_configuration_docs_tickets_shows(tkt: TktServer) -> None:
    """docs/tickets.md's mod_auth_tkt block, as written: it accepts a ticket made as the
    page's issuers make them (its digest, not bound to an address) with its secret, and
    refuses one signed with another secret or with another digest."""
    secret = doc_setting("TKTAuthSecret")
    digest = doc_setting("TKTAuthDigestType").lower()
    login_url = doc_setting("TKTAuthLoginURL")
    assert (digest, doc_setting("TKTAuthIgnoreIP")) == ("sha256", "on")  # the page's tickets
    made = issue_ticket(USER, GROUPS, secret, user_data=DATA, digest=digest)
    assert_served(tkt, get(tkt.doc_port, "doc", made))
    assert TicketVerifier(secrets=[secret.encode()], digest=digest).verify(made).user == USER
    for other in (
        issue_ticket(USER, GROUPS, WRONG_SECRET, user_data=DATA, digest=digest),
        issue_ticket(USER, GROUPS, secret, user_data=DATA, digest="sha512"),
    ):
        assert_refused(tkt, get(tkt.doc_port, "doc", other), login_url)
