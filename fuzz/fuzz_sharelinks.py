"""atheris target: share links (imageguard.identity.sharelinks).

Input: the first byte picks a mode, the rest is the payload.

* mode 0, an image path and a query (the payload's first line and the rest): verify
  raises nothing but ShareLinkError; a link that verifies (the seeds are links signed
  with this target's secret) grants what signing its grant anew gives, with the same
  signature, and never ``deny``;
* mode 1, a link signed for fuzzed fields: refused as documented (ShareLinkError, or a
  ValueError for a user name that cannot be one), or verified back to exactly those
  fields, expired one second after its expiry; one character of its query changed is
  refused, or (a spelling of the same link) grants exactly the same.

Run it through fuzz/run.py; ``--seeds DIR`` writes the seed corpus into DIR.
"""

from __future__ import annotations

import urllib.parse

import atheris
import fuzzmain

with atheris.instrument_imports(include=["imageguard"]):
    from imageguard.errors import ShareLinkError
    from imageguard.identity import sharelinks
    from imageguard.policy.levels import Level

SECRET = b"fuzz-links-secret-0123456789abcd"
REALM = "/srv/images"
LEVELS = ("full", "preview", "thumb", "deny", "FULL", "nothing")


def grant_of(grant: sharelinks.ShareGrant) -> tuple[str, Level, int, str]:
    return (grant.relpath, grant.level, grant.expires, grant.user)


def check_query(relpath: str, query: str) -> None:
    try:
        grant = sharelinks.verify(relpath, query, [SECRET], 0, realm=REALM)
    except ShareLinkError:
        return
    assert grant.relpath == relpath and grant.level is not Level.DENY, query
    params = sharelinks.sign(
        grant.relpath, grant.level, grant.expires, SECRET, grant.user, realm=REALM
    )
    assert params[sharelinks.PARAM_SIGNATURE] == grant.signature, query
    again = sharelinks.verify(relpath, urllib.parse.urlencode(params), [SECRET], 0, realm=REALM)
    assert grant_of(again) == grant_of(grant), query


def check_signed(fdp: atheris.FuzzedDataProvider) -> None:
    relpath = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 40))
    level = fdp.PickValueInList(list(LEVELS))
    expires = fdp.ConsumeIntInRange(0, 10**12 - 1)
    user = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 16))
    try:
        params = sharelinks.sign(relpath, level, expires, SECRET, user, realm=REALM)
    except ValueError:  # LevelError, PrincipalError: the documented refusals of bad fields
        return
    except ShareLinkError:  # a link granting deny
        assert level.lower() == "deny"
        return
    query = urllib.parse.urlencode(params)
    grant = sharelinks.verify(relpath, query, [SECRET], expires, realm=REALM)
    assert grant_of(grant) == (relpath, Level[level.upper()], expires, user), query
    try:
        sharelinks.verify(relpath, query, [SECRET], expires + 1, realm=REALM)
    except ShareLinkError:
        pass
    else:
        raise AssertionError(f"an expired link was accepted: {query}")
    changed = fuzzmain.one_char_changed(fdp, query)
    if changed is None:
        return
    try:
        other = sharelinks.verify(relpath, changed, [SECRET], 0, realm=REALM)
    except ShareLinkError:
        return
    assert grant_of(other) == grant_of(grant), (query, changed)


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    if data[0] % 2 == 0:
        text = data[1:].decode("utf-8", "surrogateescape")
        relpath, _, query = text.partition("\n")
        check_query(relpath, query)
    else:
        check_signed(atheris.FuzzedDataProvider(data[1:]))


def seeds() -> list[bytes]:
    found = []
    for relpath, level, user in (
        ("gallery/cat.jpg", "full", ""),
        ("a b/é.png", "preview", "bob"),
        ("x.gif", "thumb", "al%ice"),
    ):
        params = sharelinks.sign(relpath, level, 1_795_470_000, SECRET, user, realm=REALM)
        query = urllib.parse.urlencode(params)
        found.append(b"\0" + f"{relpath}\n{query}".encode())
        found.append(b"\0" + f"{relpath}\n{query}&ig_lvl=deny".encode())
    found.append(b"\1" + b"gallery/cat.jpg\0full\0bob" * 2)
    return found


if __name__ == "__main__":
    fuzzmain.main(TestOneInput, seeds)
