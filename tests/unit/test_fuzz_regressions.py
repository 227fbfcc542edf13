"""Defects the property tests and fuzz targets found, each pinned by a plain test.

A pattern was silently trimmed into a rule about another file; a {user} folder after a
``**`` was compared to the wrong folder, so such a deny rule did not apply; and text
holding lone surrogates (what Python makes of bytes that are not UTF-8) or a NUL
escaped the ticket parser, the share-link check and the gate as UnicodeEncodeError or
ValueError instead of their documented refusals.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from imageguard.errors import MalformedTicket, PatternError, ShareLinkError
from imageguard.files.gate import NOT_FOUND, Gate
from imageguard.identity import sharelinks
from imageguard.identity.tickets import TicketVerifier, issue_ticket, parse_ticket
from imageguard.policy.acl import Rule, decide
from imageguard.policy.levels import Level
from imageguard.policy.patterns import compile_pattern
from imageguard.policy.principals import Identity
from imageguard.store import AclStore

SECRET = b"regression-secret-0123456789abcdef"


@pytest.mark.parametrize(
    "text", [" secret.jpg", "secret.jpg ", "gallery/ ", "\tgallery/", "a\u3000"]
)
def test_a_pattern_with_whitespace_around_it_is_refused_not_trimmed(text: str) -> None:
    # Trimmed, ' secret.jpg' was a rule about secret.jpg: another file than named.
    with pytest.raises(PatternError, match="whitespace"):
        compile_pattern(text)


def test_the_store_keeps_nothing_of_a_pattern_with_whitespace_around_it(tmp_path: Path) -> None:
    with AclStore.create(str(tmp_path / "acl.db")) as store:
        with pytest.raises(PatternError):
            store.grant(" secret.jpg", "user:bob", "full")
        assert store.rules() == []
    assert compile_pattern("with space/a b.jpg").text == "with space/a b.jpg"  # inside: literal


def test_a_ticket_holding_lone_surrogates_is_malformed() -> None:
    text = base64.b64decode(issue_ticket("bob", ["staff"], SECRET, timestamp=100)).decode()
    for bad in (text.replace("bob", "b\udcffb"), text + "\ud800", text.replace("staff", "\udc80")):
        with pytest.raises(MalformedTicket, match="not UTF-8"):
            parse_ticket(bad)
        with pytest.raises(MalformedTicket):
            TicketVerifier(secrets=[SECRET]).verify(bad, now=100)
    assert TicketVerifier(secrets=[SECRET]).verify(text, now=100).user == "bob"


def test_a_share_link_naming_lone_surrogates_is_refused() -> None:
    params = sharelinks.sign("a.jpg", "full", 1000, SECRET, realm="/srv/images")
    query = "&".join(f"{k}={v}" for k, v in params.items())
    with pytest.raises(ShareLinkError, match="not UTF-8"):
        sharelinks.verify("a.jpg", query + "&ig_user=\udcff", [SECRET], 0, realm="/srv/images")
    with pytest.raises(ShareLinkError, match="not UTF-8"):
        sharelinks.verify("\ud800.jpg", query, [SECRET], 0, realm="/srv/images")
    assert sharelinks.verify("a.jpg", query, [SECRET], 0, realm="/srv/images").relpath == "a.jpg"


@pytest.mark.parametrize("name", ["a\0.jpg", "a\0/b.jpg", "\ud800.jpg", "sub/\ud800x.png"])
@pytest.mark.parametrize("hide", [False, True])
def test_the_gate_refuses_a_name_no_file_can_have(tmp_path: Path, name: str, hide: bool) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "sub").mkdir()  # so that the walk down reaches the name itself
    gate = Gate.create(str(tmp_path), hide_existence=hide)
    verdict = gate.check("GET", os.path.join(gate.root, name), "")
    assert verdict.status == NOT_FOUND and "cannot name a file" in verdict.reason
    assert gate.check("GET", os.path.join(gate.root, "a.jpg"), "").allowed


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("**/{user}/**", "a/bob/c/d.jpg", True),
        ("**/{user}/**", "bob/c/d.jpg", True),
        ("**/{user}/*.jpg", "x/bob/y/bob/a.jpg", True),
        ("**/{user}/**/{user}/a.jpg", "bob/x/bob/a.jpg", True),
        ("**/{user}/**", "a/alice/c/d.jpg", False),
        ("users/{user}/**", "users/bob/a.jpg", True),
    ],
)
def test_user_after_a_recursive_wildcard_is_any_folder_of_that_name(
    pattern: str, path: str, expected: bool
) -> None:
    # The {user} folder was captured greedily, then compared: 'c', not 'bob'.
    assert compile_pattern(pattern).matches(path, "bob") is expected


def test_a_deny_rule_with_user_after_a_recursive_wildcard_applies() -> None:
    # Bob may see everything but what is below a folder named after him, anywhere:
    # the deny did not apply, and he saw it all.
    rules = [
        Rule.parse("**/{user}/**", "authenticated", "deny"),
        Rule.parse("**", "authenticated", "full"),
    ]
    bob = Identity("bob")
    assert decide(rules, "home/bob/x/me.jpg", bob).level is Level.DENY
    assert decide(rules, "home/alice/x/me.jpg", bob).level is Level.FULL
