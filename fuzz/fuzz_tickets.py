"""atheris target: auth_tkt cookie values (imageguard.identity.tickets).

Input: the first byte picks a mode, the second a digest, the rest is the payload.

* mode 0, any cookie value: decoding, parsing and verifying raise nothing but
  TicketError; what parses is parsed the same when written out again; a value that
  verifies (the seeds are tickets signed with this target's secret) proves the same
  user, groups, data and time in its canonical spelling, and when issued anew;
* mode 1, a ticket issued from fuzzed fields: refused with ValueError as documented, or
  verified back to exactly those fields; one character of it changed is refused, or (a
  spelling of the same ticket) proves exactly the same.

Run it through fuzz/run.py; ``--seeds DIR`` writes the seed corpus into DIR.
"""

from __future__ import annotations

import base64

import atheris
import fuzzmain

with atheris.instrument_imports(include=["imageguard"]):
    from imageguard.errors import TicketError
    from imageguard.identity.tickets import (
        ParsedTicket,
        TicketVerifier,
        VerifiedTicket,
        decode_cookie_value,
        issue_ticket,
        parse_ticket,
    )

SECRET = b"fuzz-tickets-secret-0123456789ab"
DIGESTS = ("md5", "sha256", "sha512")
#: Later than any ticket's timestamp (8 hex digits): no ticket is from the future.
NOW = float(2**32)
VERIFIERS = {
    name: TicketVerifier(secrets=[SECRET], digest=name, timeout=0, allow_no_timeout=True)
    for name in DIGESTS
}


def fields(ticket: VerifiedTicket) -> tuple[str, frozenset[str], str, int]:
    return (ticket.user, ticket.groups, ticket.user_data, ticket.timestamp)


def written(parsed: ParsedTicket) -> str:
    return f"{parsed.digest}{parsed.timestamp:08x}{parsed.uid}!{parsed.tokens}!{parsed.user_data}"


def check_value(value: str, digest: str) -> None:
    try:
        parsed = parse_ticket(decode_cookie_value(value), digest)
    except TicketError:
        parsed = None
    if parsed is not None:
        assert parse_ticket(written(parsed), digest) == parsed, value
    try:
        ticket = VERIFIERS[digest].verify(value, now=NOW)
    except TicketError:
        return
    assert parsed is not None, value
    # Written out canonically, raw and in base64, it proves exactly the same.
    canonical = written(parsed)
    for dress in (canonical, base64.b64encode(canonical.encode("utf-8")).decode("ascii")):
        assert fields(VERIFIERS[digest].verify(dress, now=NOW)) == fields(ticket), value
    if "userid_type:" in ticket.user_data or "%" in ticket.user:
        return  # Pyramid's encodings of the uid: not what issue_ticket writes
    again = issue_ticket(
        ticket.user,
        sorted(ticket.groups),
        SECRET,
        user_data=ticket.user_data,
        digest=digest,
        timestamp=ticket.timestamp,
    )
    assert fields(VERIFIERS[digest].verify(again, now=NOW)) == fields(ticket), value


def check_issued(fdp: atheris.FuzzedDataProvider, digest: str) -> None:
    user = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 24))
    groups = [
        fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 12))
        for _ in range(fdp.ConsumeIntInRange(0, 4))
    ]
    user_data = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 40))
    stamp = fdp.ConsumeIntInRange(0, 2**32 - 1)
    try:
        cookie = issue_ticket(
            user, groups, SECRET, user_data=user_data, digest=digest, timestamp=stamp
        )
    except ValueError:
        return  # a name, group or data issue_ticket documents it refuses
    ticket = VERIFIERS[digest].verify(cookie, now=NOW)
    assert (ticket.user, ticket.groups, ticket.timestamp) == (user, frozenset(groups), stamp)
    if "userid_type:" not in user_data:
        assert ticket.user_data == user_data
    for value in (cookie, base64.b64decode(cookie).decode("utf-8")):
        changed = fuzzmain.one_char_changed(fdp, value)
        if changed is None:
            continue
        try:
            other = VERIFIERS[digest].verify(changed, now=NOW)
        except TicketError:
            continue
        assert fields(other) == fields(ticket), (value, changed)


def TestOneInput(data: bytes) -> None:
    if len(data) < 2:
        return
    digest = DIGESTS[data[1] % len(DIGESTS)]
    if data[0] % 2 == 0:
        check_value(data[2:].decode("utf-8", "surrogateescape"), digest)
    else:
        check_issued(atheris.FuzzedDataProvider(data[2:]), digest)


def seeds() -> list[bytes]:
    """Valid tickets in every dress, for each digest, plus a few near misses."""
    found = []
    for index, digest in enumerate(DIGESTS):
        cookie = issue_ticket(
            "bob", ["staff", "team"], SECRET, user_data="x|y", digest=digest, timestamp=1000
        )
        text = base64.b64decode(cookie).decode("utf-8")
        for value in (cookie, text, f'"{text}"', text.replace("!", "%21"), text.upper()):
            found.append(bytes([0, index]) + value.encode("utf-8"))
        found.append(bytes([1, index]) + b"bob\x00staff\x00data" * 3)
    found.append(bytes([0, 1]) + b"0" * 72 + b"bob!!")
    return found


if __name__ == "__main__":
    fuzzmain.main(TestOneInput, seeds)
