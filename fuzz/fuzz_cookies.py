"""atheris target: Cookie headers (imageguard.identity.cookies).

Input: the first byte picks a mode and a cookie name, the rest is the payload.

* mode 0, any headers (the payload's lines): find_cookie raises nothing and returns
  None or text; unquote leaves a value without surrounding quotes as it is;
* mode 1, a value written as Python's http.cookies and WebOb write it (quoted, with
  octal escapes), after any other header text: it reads back exactly as written (the
  last pair of a name wins), and so does the value alone through unquote.

Run it through fuzz/run.py; ``--seeds DIR`` writes the seed corpus into DIR.
"""

from __future__ import annotations

import http.cookies

import atheris
import fuzzmain

with atheris.instrument_imports(include=["imageguard"]):
    from imageguard.identity.cookies import find_cookie, unquote

NAMES = ("auth_tkt", "pysid", "x", "a-b.c")


def quoted(value: str) -> str:
    """*value* as http.cookies writes it into a header."""
    morsel: http.cookies.Morsel[str] = http.cookies.Morsel()
    morsel.set("n", value, http.cookies._quote(value))
    return morsel.coded_value


def check_headers(text: str, name: str) -> None:
    headers = text.split("\n")
    found = find_cookie(headers, name)
    assert found is None or isinstance(found, str)
    for header in headers:
        result = unquote(header)
        if len(header) < 2 or header[0] != '"' or header[-1] != '"':
            assert result == header
        else:
            assert len(result) <= len(header) - 2


def check_round_trip(text: str, name: str) -> None:
    before, _, value = text.partition("\n")
    coded = quoted(value)
    assert unquote(coded) == value, (value, coded)
    # After whatever else the header holds, the last pair of the name wins.
    header = f"{before}; {name}={coded}"
    assert find_cookie([header], name) == value, (header, value)
    assert find_cookie(["other=1", header, f"not{name}=2"], name) == value


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    name = NAMES[(data[0] >> 1) % len(NAMES)]
    text = data[1:].decode("utf-8", "surrogateescape")
    if data[0] % 2 == 0:
        check_headers(text, name)
    else:
        check_round_trip(text, name)


def seeds() -> list[bytes]:
    headers = [
        'auth_tkt="abc\\054def\\"\\\\"; pysid=0123abcd; x=',
        "a-b.c=1; a-b.c=2;;=; auth_tkt",
        'pysid=""; x="\\377\\000"',
    ]
    values = ["plain", "with space", 'quo"te', "back\\slash", "semi;colon", "é€", ""]
    found = [bytes([0]) + h.encode("utf-8") for h in headers]
    found += [bytes([1 + 2 * i]) + b"x=1\n" + v.encode("utf-8") for i, v in enumerate(values)]
    return found


if __name__ == "__main__":
    fuzzmain.main(TestOneInput, seeds)
