"""docs/tickets.md's code is run, so what the page tells people to paste keeps working.

Code blocks are found by their first line, ``# imageguard-doc: NAME``. The standalone
issuing function is executed and checked against ``issue_ticket()`` and
``TicketVerifier``; the Pyramid security policy is executed with Pyramid (installed for
the interop tests); the Flask and Django blocks are only compiled, since neither
framework is a dependency of the test suite.
"""

from __future__ import annotations

import base64
import functools
import re
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pyramid.authentication import AuthTicket
from pyramid.testing import DummyRequest

from imageguard.apache.settings import OPTIONS
from imageguard.identity.tickets import TicketVerifier, issue_ticket

DOC = (Path(__file__).resolve().parents[2] / "docs" / "tickets.md").read_text()
SECRET = "docs-test-secret-0123456789abcdef"
NOW = 1_700_000_000


def python_blocks() -> dict[str, str]:
    """The ```python blocks of the page, by the name on their marker line."""
    blocks = {}
    for code in re.findall(r"```python\n(.*?)```", DOC, flags=re.DOTALL):
        marker = re.match(r"# imageguard-doc: ([\w-]+)\n", code)
        blocks[marker.group(1) if marker else f"unnamed-{len(blocks)}"] = code
    return blocks


def run_block(name: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": f"docs_tickets_{name.replace('-', '_')}"}
    exec(compile(python_blocks()[name], f"docs/tickets.md:{name}", "exec"), namespace)
    return namespace


def test_the_expected_blocks_are_there() -> None:
    assert {
        "pyramid-policy",
        "pyramid-views",
        "flask-app",
        "standalone-issuer",
        "django-tickets",
    } <= set(python_blocks())


@pytest.mark.parametrize("name", sorted(python_blocks()))
def test_every_python_block_compiles(name: str) -> None:
    compile(python_blocks()[name], f"docs/tickets.md:{name}", "exec")


# ----------------------------------------------------------------- the standalone issuer


@pytest.fixture(scope="module")
def make_auth_tkt() -> Any:
    return run_block("standalone-issuer")["make_auth_tkt"]


@pytest.mark.parametrize("ip", ["0.0.0.0", "192.0.2.250", "2001:db8::7"])
@pytest.mark.parametrize("digest", ["md5", "sha256", "sha512"])
def test_standalone_issuer_matches_issue_ticket(make_auth_tkt: Any, digest: str, ip: str) -> None:
    for user, groups, data in (
        ("alice", ("staff", "editors"), "lang=en"),
        ("zoë@example.com", (), ""),
        ("bob", ("staff",), "données|x"),
    ):
        ours = make_auth_tkt(SECRET, user, groups, data, digest=digest, ip=ip, now=NOW - 5)
        theirs = issue_ticket(
            user, groups, SECRET, user_data=data, digest=digest, ip=ip, timestamp=NOW - 5
        )
        assert ours == theirs
        bound = ip != "0.0.0.0"
        verifier = TicketVerifier(secrets=[SECRET.encode()], digest=digest, bind_ip=bound)
        ticket = verifier.verify(ours, client_ip=ip, now=NOW)
        assert (ticket.user, ticket.groups, ticket.user_data) == (user, set(groups), data)


def test_standalone_issuer_uses_the_clock_by_default(make_auth_tkt: Any) -> None:
    verifier = TicketVerifier(secrets=[SECRET.encode()])
    assert verifier.verify(make_auth_tkt(SECRET.encode(), "carol")).user == "carol"


@pytest.mark.parametrize(
    ("user", "groups", "data", "secret"),
    [
        ("bo!b", (), "", SECRET),
        ("bob", ("a!b",), "", SECRET),
        ("bob", ("a,b",), "", SECRET),
        ("bo\0b", (), "", SECRET),
        ("bob", (), "x\0", SECRET),
        ("bob", (), "", ""),
    ],
)
def test_standalone_issuer_refuses_what_issue_ticket_refuses(
    make_auth_tkt: Any, user: str, groups: tuple[str, ...], data: str, secret: str
) -> None:
    with pytest.raises(ValueError):
        make_auth_tkt(secret, user, groups, data, now=NOW)
    with pytest.raises(ValueError):
        issue_ticket(user, groups, secret, user_data=data, timestamp=NOW)


# ----------------------------------------------------------------- the worked example


def test_worked_example_ticket_is_right() -> None:
    section = DOC[DOC.index("Example: secret") : DOC.index("## Why tickets")]
    text, cookie = re.findall(r"```\n(.+?)\n```", section)
    value = issue_ticket(
        "alice",
        ["staff", "editors"],
        "correct-horse-battery-staple",
        user_data="lang=en",
        digest="sha256",
        timestamp=1_700_000_000,
    )
    assert cookie == value
    assert base64.b64decode(cookie).decode() == text
    verifier = TicketVerifier(secrets=[b"correct-horse-battery-staple"])
    for dress in (text, cookie, text.replace("!", "%21"), f'"{text}"'):
        assert verifier.verify(dress, now=1_700_000_060).groups == {"staff", "editors"}


# ----------------------------------------------------------------- Pyramid


def pyramid_cookie(groups: tuple[str, ...]) -> tuple[str, Any, Any]:
    policy = run_block("pyramid-policy")["TicketSecurityPolicy"](SECRET)
    policy.helper.AuthTicket = functools.partial(AuthTicket, time=NOW - 5)
    request = DummyRequest(environ={"REMOTE_ADDR": "192.0.2.7"})
    headers = policy.remember(request, "alice", groups=groups)
    set_cookie = next(value for name, value in headers if name == "Set-Cookie")
    assert "HttpOnly" in set_cookie and "secure" in set_cookie.lower()
    return set_cookie.split(";")[0].partition("=")[2], policy, request


def test_pyramid_policy_ticket_is_accepted() -> None:
    cookie, policy, request = pyramid_cookie(("staff",))
    verifier = TicketVerifier(secrets=[SECRET.encode()], digest="sha256", timeout=7200)
    ticket = verifier.verify(cookie, now=NOW)
    assert (ticket.user, ticket.groups) == ("alice", {"staff"})
    assert ticket.user_data == "userid_type:b64unicode"
    policy.helper.now = NOW
    request.cookies["auth_tkt"] = cookie
    assert policy.authenticated_userid(request) == "alice"


@pytest.mark.filterwarnings("ignore:Cookie value contains invalid bytes")
def test_pyramid_policy_ticket_with_two_groups_is_accepted() -> None:
    # WebOb quotes a value holding ',' and writes the comma as the octal escape \054.
    cookie, _, _ = pyramid_cookie(("staff", "editors"))
    assert cookie.startswith('"') and "\\054" in cookie
    verifier = TicketVerifier(secrets=[SECRET.encode()], digest="sha256", timeout=7200)
    assert verifier.verify(cookie, now=NOW).groups == {"staff", "editors"}


def test_newest_secret_reads_the_first_secret(tmp_path: Path) -> None:
    newest_secret = run_block("pyramid-policy")["newest_secret"]
    path = tmp_path / "secrets"
    path.write_text("# rotated 2024-05-01\n\nnew-secret-0123456789\nold-secret-0123456789\n")
    assert newest_secret(str(path)) == "new-secret-0123456789"
    path.write_text("# nothing\n")
    with pytest.raises(RuntimeError):
        newest_secret(str(path))


# ----------------------------------------------------------------- options


def test_every_ticket_option_is_documented() -> None:
    table = DOC[DOC.index("| option | default | meaning |") :]
    table = table[: table.index("\n\n")]
    documented = set(re.findall(r"^\| `(imageguard\.[a-z_]+)`", table, flags=re.MULTILINE))
    ticket_options = {
        name for name in OPTIONS if name.startswith(("imageguard.tkt_", "imageguard.session"))
    }
    assert documented == ticket_options


class RecordingStore:
    """Stands in for AclStore in the Pyramid views: records the revocations."""

    revoked: ClassVar[list[str]] = []

    def __init__(self, path: str) -> None:
        assert path == "/var/lib/imageguard/acl.db"

    def __enter__(self) -> RecordingStore:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def revoke_user(self, user: str) -> int:
        self.revoked.append(user)
        return NOW


def test_pyramid_views_log_in_and_out(monkeypatch: pytest.MonkeyPatch) -> None:
    from pyramid.request import Request

    # The two Pyramid blocks as one module (Configurator looks its caller up in sys.modules).
    module = types.ModuleType("docs_tickets_pyramid_app")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    for name in ("pyramid-policy", "pyramid-views"):
        exec(compile(python_blocks()[name], f"docs/tickets.md:{name}", "exec"), namespace)
    namespace["newest_secret"] = lambda: SECRET
    namespace["AclStore"] = RecordingStore
    namespace["check_password"] = lambda user, password: (
        ["staff"] if (user, password) == ("alice", "pw") else None
    )
    app = namespace["main"]({})

    refused = Request.blank("/login", POST={"user": "alice", "password": "wrong"})
    assert "Set-Cookie" not in refused.get_response(app).headers

    response = Request.blank("/login", POST={"user": "alice", "password": "pw"}).get_response(app)
    assert response.status_int == 302 and response.location.endswith("/gallery/")
    cookie = response.headers["Set-Cookie"].split(";")[0].partition("=")[2]
    ticket = TicketVerifier(secrets=[SECRET.encode()]).verify(cookie)
    assert (ticket.user, ticket.groups) == ("alice", {"staff"})

    RecordingStore.revoked.clear()
    logout = Request.blank("/logout", POST={}, headers={"Cookie": f"auth_tkt={cookie}"})
    response = logout.get_response(app)
    assert RecordingStore.revoked == ["alice"]
    assert "auth_tkt=;" in response.headers["Set-Cookie"].replace('""', "")
