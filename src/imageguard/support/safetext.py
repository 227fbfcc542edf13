"""Text from outside (file names, request paths, error messages quoting them) made safe
to print on one line: in Apache's error log, or on a terminal."""

from __future__ import annotations


def one_line(text: str) -> str:
    """*text* with every character that is not printable (newlines, escape sequences,
    other control and format characters) written as its Python escape (``\\n``,
    ``\\x1b``, ``\\u202e``), so it stays on one line and cannot drive a terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
