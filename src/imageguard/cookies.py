"""Reading one cookie out of ``Cookie`` request headers, without trusting them."""

from __future__ import annotations

from collections.abc import Iterable


def find_cookie(headers: Iterable[str], name: str) -> str | None:
    """Return the value of cookie *name* in the given ``Cookie`` header values.

    When the name occurs more than once the last value wins, as in mod_python's own
    ``Cookie.get_cookie``, so imageguard reads the same session the application reads.
    Surrounding double quotes are removed. Malformed pairs are skipped.
    """
    found: str | None = None
    for header in headers:
        for pair in header.split(";"):
            key, sep, value = pair.partition("=")
            if sep and key.strip() == name:
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                found = value
    return found
