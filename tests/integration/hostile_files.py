"""Files an uploader could put below a protected root: valid images that are something
else too, for whatever handler or filter of Apache would read them as that.

Each is a real JPEG (Pillow reads it, imageguard's content check passes it) whose
comment segment holds the other thing: a type map with an inline HTML body for
mod_negotiation, a server-side include for mod_include, a script for the browser.
"""

from __future__ import annotations

import io
import struct

from PIL import Image

#: What the SSI file makes mod_include print if it ever runs the command.
SSI_MARK = b"SSI-RAN-42"
#: The script the type map and the HTML file carry.
SCRIPT = b"<script>alert(document.domain)</script>"


def _comment(payload: bytes) -> bytes:
    """A JPEG COM segment holding *payload*."""
    return b"\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload


def _small_jpeg(colour: tuple[int, int, int], *, no_newline: bool = False) -> bytes:
    """A 16x16 JPEG; with *no_newline*, one whose bytes after the start marker hold no
    newline (a line-based parser then reads them as one line)."""
    for quality in range(5, 96):
        out = io.BytesIO()
        Image.new("RGB", (16, 16), colour).save(out, "JPEG", quality=quality, optimize=True)
        data = out.getvalue()
        if not no_newline or b"\n" not in data[2:]:
            return data
    raise RuntimeError("no JPEG without a newline byte")


def with_comment(payload: bytes, colour: tuple[int, int, int] = (90, 140, 30)) -> bytes:
    """A valid JPEG whose first segment is a comment holding *payload*."""
    data = _small_jpeg(colour)
    return data[:2] + _comment(payload) + data[2:]


def type_map_jpeg(script: bytes = SCRIPT) -> bytes:
    """A valid JPEG that mod_negotiation's type-map handler reads as a map whose one
    variant is an inline ``text/html`` body holding *script*.

    The map parser reads lines: the first ends at the first newline and must hold a
    ``:`` with text after it (the comment's length is chosen so that its second byte
    is ``:``); the comment then holds the map, a blank line ending its one variant,
    and a ``#`` that makes everything after it (the rest of the JPEG, chosen free of
    newlines) one comment line.
    """
    body = b" x\nContent-Type: text/html\nBody:--end--\n" + script + b"\n--end--\n\n#"
    length = 0x13A  # bytes 0x01 0x3a: ':'
    payload = body + b" " * (length - 2 - len(body))
    rest = _small_jpeg((200, 40, 90), no_newline=True)[2:]
    return b"\xff\xd8" + _comment(payload) + rest


def ssi_jpeg() -> bytes:
    """A valid JPEG holding a server-side include that runs a shell command."""
    return with_comment(b'<!--#exec cmd="echo SSI-RAN-$((6*7))" -->', (10, 60, 200))


def html_jpeg() -> bytes:
    """A valid JPEG holding an HTML script (what a browser sniffing it would run)."""
    return with_comment(b"<html><body>" + SCRIPT + b"</body></html>", (250, 250, 10))


#: A CGI script named like an image (not an image: for a root without verification).
CGI_SCRIPT = b"#!/bin/sh\nprintf 'Content-Type: text/html\\n\\nCGI-RAN'\n"
