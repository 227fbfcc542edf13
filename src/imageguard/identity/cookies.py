"""Reading one cookie out of ``Cookie`` request headers, without trusting them."""

from __future__ import annotations

import re
from collections.abc import Iterable

_QUOTED_ESCAPE = re.compile(r"\\(?:([0-3][0-7]{2})|(.))", re.DOTALL)
#: What a cookie name can be (an HTTP token): a cookie named otherwise is never found.
COOKIE_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


def unquote(value: str) -> str:
    """A cookie value without its surrounding double quotes, its backslash escapes undone.

    Python's ``http.cookies`` and WebOb quote a value holding characters such as ``,``
    and write those as three-digit octal escapes (``,`` becomes ``\\054``); a
    backslash before any other character stands for that character. A value that is
    not quoted is returned as it is.
    """
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return value
    return _QUOTED_ESCAPE.sub(
        lambda m: chr(int(m.group(1), 8)) if m.group(1) else m.group(2), value[1:-1]
    )


def find_cookie(headers: Iterable[str], name: str) -> str | None:
    """Return the value of cookie *name* in the given ``Cookie`` header values.

    When the name occurs more than once the last value wins, as in mod_python's own
    ``Cookie.get_cookie``, so imageguard reads the same session the application reads.
    A quoted value is unquoted (see :func:`unquote`). Malformed pairs are skipped.
    """
    found: str | None = None
    for header in headers:
        for pair in header.split(";"):
            key, sep, value = pair.partition("=")
            if sep and key.strip() == name:
                found = unquote(value.strip())
    return found
