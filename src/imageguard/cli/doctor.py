"""``imageguard doctor URL``: a deployment's self-check, over real HTTP.

Given the protected directory's URL, an image a viewer may see, and that viewer's
cookie (or a ticket secret to make one), it asks the server the questions an attacker
and a browser would, and says in one line each whether the answer is the one
imageguard gives. It never follows a redirect and never needs to run on the server.

**How imageguard's answers are told from others.** Every refusal imageguard makes
carries ``Cache-Control: private, no-store``; every image it admits carries
``X-Content-Type-Options: nosniff`` and ``Vary: Cookie``. Apache's own refusals and
files carry none of these, so a 403 without the first is Apache's (a ``Require env``
left without its handler, say), not imageguard's.

**The canaries** are names the gate refuses from the name alone, before it looks at the
disk or at the login, so a live gate answers 403 for each, whether or not such a file
exists and whoever asks (they are sent with the viewer's login, when there is one), while
a directory nothing gates answers what the disk says:

* ``imageguard-doctor-canary.txt``: not an image's extension. No such file exists, so
  without a gate Apache answers 404: a 404 here means no gate ran.
* ``IMAGE/imageguard-doctor-canary.txt``: extra path after the real image. Apache's
  file handler answers 404 (it takes no extra path), a script engine (PHP, CGI) may
  answer 200; the gate refuses any extra path.
* ``.imageguard-doctor-canary.jpg``: a hidden name, refused by the gate; 404 without.

``..`` and ``%2e%2e`` make no canary: Apache removes dot segments from the path before
any handler runs, so such a request never reaches the gate and proves nothing.

**Apache's own file handler** is what must send the image (sendfile, ``Range``,
``HEAD``, ``ETag`` and ``304``, checked by their answers): a content handler that
streams the file itself (a mod_python handler, PHP, CGI, an SSI filter) sends no
``ETag``, ignores ``Range`` and ``If-None-Match``, and often sends it chunked.

Exit status: 0 when no check failed (warnings allowed), 1 when one did, 2 for a usage
error.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import re
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ..errors import ImageGuardError
from ..identity.secretfile import SecretFile
from ..identity.tickets import DEFAULT_DIGEST, UNBOUND_IP, issue_ticket
from ..policy.decision import NO_STORE
from ..support.safetext import one_line
from .doctorconf import ConfFacts, read_conf, static_problems

__all__ = [
    "CANARY",
    "Check",
    "DoctorUsage",
    "Response",
    "Unreachable",
    "add_doctor_command",
    "cmd_doctor",
    "image_format",
    "run_checks",
]

CANARY = "imageguard-doctor-canary"
#: How much of a body is kept: enough for an image's magic bytes, the Range check's
#: bytes and an error page; the rest is counted, not kept.
_BODY_KEPT = 64 * 1024
#: How much of a body is counted at most (then it is judged as cut short).
_BODY_COUNTED = 1 << 30
_READ_SIZE = 64 * 1024
_RANGE_END = 15
#: What a path of the URL keeps as it is: its own %-escapes and RFC 3986's sub-delims.
_PATH_SAFE = "/%:@!$&'()*+,;=~"
PASS, WARN, FAIL = "PASS", "WARN", "FAIL"


class DoctorUsage(ImageGuardError):
    """A usage problem of ``imageguard doctor`` (exit status 2)."""


class Unreachable(Exception):
    """The server could not be asked (connection, name, TLS or timeout): one line."""


@dataclass(frozen=True)
class Response:
    """One answer: the status, the headers (lower-case names; repeated ones joined with
    ", ", Set-Cookie with newlines), the first :data:`_BODY_KEPT` bytes of the body, how
    many bytes of body came (``size``; ``len(body)`` when not given), and whether the
    body came to its end (``complete``; not when the time was up)."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    size: int = -1
    complete: bool = True

    def __post_init__(self) -> None:
        if self.size < 0:
            object.__setattr__(self, "size", len(self.body))

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    @property
    def by_imageguard(self) -> bool:
        """True for an answer only imageguard gives: a refusal with its Cache-Control,
        or an image with its nosniff and Vary: Cookie."""
        if self.status == 200:
            return self.header("x-content-type-options").lower() == "nosniff" and _varies_on_cookie(
                self
            )
        return self.header("cache-control") == NO_STORE

    def who(self) -> str:
        """Who gave the answer, for a reason: imageguard, or Apache itself."""
        return "by imageguard" if self.by_imageguard else "by Apache itself, not imageguard"


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    verdict: str
    name: str
    reason: str

    def line(self) -> str:
        return f"{self.verdict}  {self.name}: {one_line(self.reason)}"


def _varies_on_cookie(response: Response) -> bool:
    words = [word.strip().lower() for word in response.header("vary").split(",")]
    return "cookie" in words or "*" in words


# --------------------------------------------------------------------------- the bytes

_MAGIC: tuple[tuple[Callable[[bytes], bool], str, str], ...] = (
    (lambda b: b.startswith(b"\xff\xd8\xff"), "JPEG", "image/jpeg"),
    (lambda b: b.startswith(b"\x89PNG\r\n\x1a\n"), "PNG", "image/png"),
    (lambda b: b[:6] in (b"GIF87a", b"GIF89a"), "GIF", "image/gif"),
    (lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP", "WebP", "image/webp"),
    (lambda b: b[4:12] in (b"ftypavif", b"ftypavis"), "AVIF", "image/avif"),
    (lambda b: b[:2] == b"BM", "BMP", "image/bmp"),
    (lambda b: b[:4] in (b"II*\x00", b"MM\x00*"), "TIFF", "image/tiff"),
)


def image_format(data: bytes) -> tuple[str, str] | None:
    """The (name, media type) of the image format *data* starts with, or None."""
    for test, name, media in _MAGIC:
        if test(data):
            return name, media
    return None


# --------------------------------------------------------------------------- asking


class Site:
    """The protected directory's URL, and one request at a time to it (no redirect is
    ever followed; every failure to get an answer is :class:`Unreachable`)."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DoctorUsage(f"{one_line(repr(url))} is not an http:// or https:// URL")
        if parts.query or parts.fragment:
            raise DoctorUsage(f"{url}: give the directory's URL, without a query or fragment")
        if parts.username is not None or parts.password is not None:
            raise DoctorUsage(
                "give the URL without a user or password: the doctor logs in with --cookie "
                "or --ticket-secret"
            )
        try:
            port = parts.port
        except ValueError:
            raise DoctorUsage(f"{url}: the port is not a number") from None
        if any(not ch.isprintable() or ch.isspace() for ch in parts.netloc):
            raise DoctorUsage(f"{one_line(repr(url))}: the host name holds spaces or controls")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = port or (443 if parts.scheme == "https" else 80)
        self.path = _escaped((parts.path or "/").rstrip("/") + "/", _PATH_SAFE)
        self.timeout = timeout
        self.url = f"{self.scheme}://{parts.netloc}{self.path}"

    def path_of(self, name: str) -> str:
        """The request path of *name* below the directory (every byte of it that is not
        a letter, digit, ``/`` or ``-._~`` %-escaped: ``%``, ``?`` and ``#`` are part of a
        file's name)."""
        return self.path + _escaped(name, "/")

    def _connection(self) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def client_address(self) -> str:
        """The address this machine reaches the server from (for a ticket bound to it)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout) as sock:
                return str(sock.getsockname()[0])
        except OSError as exc:
            raise Unreachable(self._failure(exc)) from None

    def _failure(self, exc: BaseException) -> str:
        where = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        if isinstance(exc, TimeoutError | socket.timeout):
            return f"no answer from {where} within {self.timeout:g} s"
        if isinstance(exc, ssl.SSLError):
            return f"TLS with {where} failed: {exc.reason or exc}"
        if isinstance(exc, OSError):
            return f"cannot reach {where}: {exc.strerror or exc}"
        return f"{where} did not answer in HTTP: {type(exc).__name__} {exc}"

    def ask(self, method: str, name: str, headers: dict[str, str]) -> Response:
        """One request, answered within the timeout as a whole: a server that does not
        answer in time is :class:`Unreachable`, a body still coming is cut short there
        (``complete`` False)."""
        cutoff = _Cutoff(time.monotonic() + self.timeout)
        connection = self._connection()
        try:
            connection.connect()
            cutoff.watch(connection.sock)
            connection.request(
                method, self.path_of(name), headers={"Connection": "close", **headers}
            )
            answer = connection.getresponse()
            found: dict[str, str] = {}
            for key, value in answer.getheaders():
                key = key.lower()
                joiner = "\n" if key == "set-cookie" else ", "
                found[key] = f"{found[key]}{joiner}{value}" if key in found else value
            body, size, complete = _read_body(answer, cutoff)
            return Response(answer.status, found, body, size, complete)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # ValueError: what http.client raises for some malformed answers
            raise Unreachable(self._failure(TimeoutError() if cutoff.fired else exc)) from None
        finally:
            cutoff.cancel()
            connection.close()


def _escaped(text: str, safe: str) -> str:
    """*text* %-escaped as UTF-8, but for *safe* (a byte of a command-line argument that
    is not UTF-8, which Python holds as a surrogate, is escaped as that byte)."""
    return urllib.parse.quote(text.encode("utf-8", "surrogateescape"), safe=safe)


class _Cutoff:
    """Ends a connection at its deadline, whatever it is waiting for: a server that
    sends a byte now and then never lets a socket's own timeout run out."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._fired = threading.Event()
        self._timer: threading.Timer | None = None

    @property
    def fired(self) -> bool:
        """True once the deadline has cut the connection."""
        return self._fired.is_set()

    def watch(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        self._timer = threading.Timer(max(self.deadline - time.monotonic(), 0), self._cut, (sock,))
        self._timer.daemon = True
        self._timer.start()

    def _cut(self, sock: socket.socket) -> None:
        self._fired.set()
        with contextlib.suppress(OSError):  # the plain socket's: TLS state is left alone
            socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _read_body(answer: http.client.HTTPResponse, cutoff: _Cutoff) -> tuple[bytes, int, bool]:
    """The first :data:`_BODY_KEPT` bytes of *answer*'s body, how many bytes came, and
    whether the body came to its end (not when *cutoff* ended it, nor past
    :data:`_BODY_COUNTED`)."""
    kept = bytearray()
    size = 0
    while size < _BODY_COUNTED:
        try:
            chunk = answer.read1(_READ_SIZE)
        except (OSError, http.client.HTTPException):
            if cutoff.fired:
                return bytes(kept), size, False
            raise
        if not chunk:
            return bytes(kept), size, not cutoff.fired
        if len(kept) < _BODY_KEPT:
            kept += chunk[: _BODY_KEPT - len(kept)]
        size += len(chunk)
    return bytes(kept), size, False


# --------------------------------------------------------------------------- judging

IMAGE_ACCEPT = "image/avif,image/webp,image/*,*/*;q=0.8"
PAGE_ACCEPT = "text/html,application/xhtml+xml,*/*;q=0.8"


def _redirect(response: Response, site: Site, name: str) -> Check | None:
    """A redirect: imageguard's is a refusal (to the login page); the same image
    elsewhere, or a redirect imageguard did not make, is a warning (it proves nothing)."""
    if not 300 <= response.status < 400:
        return None
    status, location = response.status, response.header("location")
    target = urllib.parse.urlsplit(location)
    if target.path == site.path_of(name) and (target.scheme, target.hostname) != (
        site.scheme,
        site.host,
    ):
        return Check(
            WARN, "", f"redirected to the same image at {location}: run the doctor against that URL"
        )
    if not response.by_imageguard:
        return Check(
            WARN,
            "",
            f"redirected ({status}) to {location or '(no Location)'}, not by imageguard: "
            "whether imageguard would refuse it is not known",
        )
    return Check(PASS, "", f"refused by redirect ({status}) to {location or '(no Location)'}")


def _not_there(response: Response, name: str) -> Check | None:
    """Apache's own 404 for an image that should be refused: no such file there, it
    seems (imageguard answers for every name in its directory, with its headers), which
    proves nothing of the refusal."""
    if response.status != 404 or response.by_imageguard:
        return None
    return Check(
        WARN,
        "",
        f"404 from Apache itself, not imageguard: no such file as {name} there? (a name "
        "imageguard gates gets its answer, whether the file exists or not)",
    )


def judge_canary(response: Response) -> Check:
    """A name the gate refuses whatever is on disk: imageguard's 403, or why not."""
    status = response.status
    if status == 200:
        return Check(FAIL, "", "200: served; nothing gates this directory")
    if response.by_imageguard and status == 403:
        return Check(PASS, "", "refused by imageguard's gate (403)")
    if response.by_imageguard and status >= 500:
        return Check(
            FAIL,
            "",
            f"imageguard answered {status}: it cannot work; Apache's error "
            "log has an `imageguard:` line saying why",
        )
    if response.by_imageguard:
        return Check(WARN, "", f"refused by imageguard with {status}, not the gate's 403")
    if status == 404:
        return Check(
            FAIL,
            "",
            "404: Apache looked the name up on disk, so no imageguard gate "
            "ran here (an .htaccess gate under AllowOverride None? a URL outside the "
            "protected <Directory>?)",
        )
    if status == 403:
        return Check(
            WARN,
            "",
            "refused (403) by Apache itself, not imageguard: its handler "
            "did not run (a `Require env IMAGEGUARD_ADMITTED` without its handler "
            "line, or `Require all denied`)",
        )
    if 300 <= status < 400:
        return Check(
            WARN,
            "",
            f"redirected ({status}) to {response.header('location')}: not imageguard's answer",
        )
    if status >= 500:
        return Check(
            FAIL, "", f"{status} without imageguard's headers: Apache's error log says why"
        )
    return Check(WARN, "", f"{status}: refused, but not by imageguard's gate")


def judge_anonymous(response: Response, site: Site, name: str, gate_only: bool) -> Check:
    """An image asked for without any login: refused, or why it is a problem."""
    unproven = _redirect(response, site, name) or _not_there(response, name)
    if unproven is not None:
        return unproven
    status = response.status
    if status in (401, 403, 404):
        if response.by_imageguard:
            return Check(PASS, "", f"refused by imageguard ({status})")
        return Check(PASS, "", f"refused ({status}), by Apache itself, not imageguard")
    if status == 200 and response.by_imageguard:
        if gate_only:
            return Check(
                WARN,
                "",
                "served to anyone: the configuration is a gate without "
                "logins (no imageguard.acl_db), which refuses non-images, not viewers",
            )
        return Check(
            FAIL,
            "",
            f"imageguard served {name} to a viewer who is not logged in: "
            f"a rule grants `anyone` it (imageguard explain {name}), or this is an "
            ".htaccess gate without logins; give an --image only logged-in viewers may see",
        )
    if status == 200:
        return Check(FAIL, "", "served without imageguard: the directory is not protected")
    if status >= 500:
        return _failed(response)
    return Check(WARN, "", f"{status}: not an answer imageguard gives")


def _failed(response: Response) -> Check:
    """A 5xx where a refusal was due."""
    who = "imageguard" if response.by_imageguard else "the server"
    return Check(FAIL, "", f"{response.status}: {who} failed; Apache's error log says why")


def judge_viewer(response: Response, site: Site, name: str) -> Check:
    """The viewer's image: 200, an image whose bytes are the type it is sent as."""
    status = response.status
    if status == 200 and not response.body:
        return Check(FAIL, "", "200, but without a byte of body")
    if status == 200:
        sent_as = response.header("content-type").split(";")[0].strip().lower()
        found = image_format(response.body)
        size = f"{sent_as or 'no Content-Type'}, {_size(response)}"
        if not sent_as.startswith("image/"):
            return Check(FAIL, "", f"200, but sent as {sent_as or 'no type'}, not an image")
        if found is None:
            return Check(
                WARN, "", f"200, {size}: the doctor cannot tell which image format the bytes are"
            )
        if found[1] != sent_as:
            return Check(FAIL, "", f"200, sent as {sent_as} but the bytes are a {found[0]} image")
        return Check(PASS, "", f"200, {size}, the bytes are a {found[0]} image")
    if 300 <= status < 400:
        return Check(
            FAIL,
            "",
            f"redirected ({status}) to {response.header('location')}: the "
            "viewer is not logged in for imageguard (the cookie's name, path or domain? "
            "an expired session?)",
        )
    if status == 401:
        return Check(
            FAIL,
            "",
            "401: imageguard does not see a login in this cookie (the "
            "cookie's name or path? an expired session? imageguard's session options "
            "differ from the application's?)",
        )
    if status in (403, 404) and response.by_imageguard:
        return Check(
            FAIL,
            "",
            f"imageguard refused this viewer ({status}): the ACL does not grant "
            f"them {name} (imageguard explain --user NAME {name})",
        )
    if status == 403:
        return Check(
            FAIL,
            "",
            "403 by Apache itself, not imageguard: imageguard's handler did "
            "not run (`Require env IMAGEGUARD_ADMITTED` without its handler line "
            "refuses everything)",
        )
    if status == 415:
        return Check(FAIL, "", "415: the file's bytes are not the image its extension names")
    if status >= 500 and response.by_imageguard:
        return Check(
            FAIL,
            "",
            f"imageguard refused it with {status}: Apache's error log says why "
            "(`fixup: no imageguard handler admitted` means a phase's handler line is missing)",
        )
    return Check(FAIL, "", f"{status}: the viewer is not sent the image")


def _size(response: Response) -> str:
    return f"{response.size} bytes" + ("" if response.complete else " (cut short at the timeout)")


def _shown(name: str, value: str) -> str:
    return f"{name}: {value}" if value else f"no {name}"


def judge_headers(response: Response) -> Check:
    """What a shared cache and a browser need to be told about a private image."""
    problems = []
    cache = response.header("cache-control")
    words = {word.strip().split("=")[0].lower() for word in cache.split(",")}
    if not words & {"private", "no-store"}:
        problems.append(
            f"{_shown('Cache-Control', cache)}: a shared cache may keep the image and "
            "hand it to others (want private)"
        )
    if not _varies_on_cookie(response):
        problems.append(
            f"{_shown('Vary', response.header('vary'))}: a cache may answer the next "
            "viewer with this viewer's image (want Cookie)"
        )
    if response.header("x-content-type-options").lower() != "nosniff":
        problems.append(
            "no `X-Content-Type-Options: nosniff`: a browser may read the bytes as "
            "something else than an image"
        )
    if "set-cookie" in response.headers:
        problems.append(
            "the image sets a cookie (imageguard never does: a content handler making sessions?)"
        )
    if problems:
        return Check(FAIL, "", "; ".join(problems))
    return Check(
        PASS,
        "",
        f"Cache-Control: {cache}; Vary: {response.header('vary')}; X-Content-Type-Options: nosniff",
    )


def judge_denied(response: Response, site: Site, name: str) -> Check:
    """An image the viewer may not see: refused."""
    unproven = _redirect(response, site, name) or _not_there(response, name)
    if unproven is not None:
        return unproven
    status = response.status
    if status in (401, 403, 404):
        return Check(PASS, "", f"refused ({status}) {response.who()}")
    if status == 200:
        return Check(
            FAIL,
            "",
            f"200: the viewer is sent {name}; the ACL grants it "
            f"(imageguard explain --user NAME {name}), or nothing protects it",
        )
    if status >= 500:
        return _failed(response)
    return Check(WARN, "", f"{status}: not a refusal imageguard gives")


def judge_file_handler(image: Response) -> Check:
    """The headers Apache's own file handler always sends with a file."""
    missing = []
    if not image.header("etag"):
        missing.append("no ETag")
    if not image.header("last-modified"):
        missing.append("no Last-Modified")
    if image.header("accept-ranges").lower() != "bytes":
        missing.append("no `Accept-Ranges: bytes`")
    length = image.header("content-length")
    if not length.isdigit():
        missing.append("no Content-Length")
    elif int(length) != image.size and image.complete:
        missing.append(f"Content-Length {length} for {image.size} bytes")
    if "chunked" in image.header("transfer-encoding").lower():
        missing.append("sent chunked")
    if image.header("x-powered-by"):
        missing.append(f"X-Powered-By: {image.header('x-powered-by')}")
    if missing:
        return Check(
            FAIL,
            "",
            f"{', '.join(missing)}: another handler than Apache's own file "
            "handler sent the image (a mod_python content handler, PHP, CGI, an SSI filter?)",
        )
    return Check(
        PASS,
        "",
        f"Apache's file handler: ETag {image.header('etag')}, Last-Modified, "
        f"Accept-Ranges: bytes, Content-Length {image.header('content-length')}",
    )


def judge_head(head: Response, image: Response) -> Check:
    if head.status != 200:
        return Check(FAIL, "", f"HEAD got {head.status} where GET got 200")
    if head.size:
        return Check(FAIL, "", f"HEAD got {head.size} bytes of body")
    if head.header("content-length") != image.header("content-length"):
        return Check(
            FAIL,
            "",
            f"HEAD says Content-Length {head.header('content-length') or '(none)'}, "
            f"GET sent {image.header('content-length') or '(none)'}",
        )
    length = head.header("content-length") or "(none)"
    return Check(PASS, "", f"200, Content-Length {length}, no body")


def judge_range(ranged: Response, image: Response) -> Check:
    end = min(_RANGE_END, image.size - 1)
    total = image.header("content-length") or str(image.size)
    if ranged.status != 206:
        return Check(
            FAIL,
            "",
            f"`Range: bytes=0-{end}` got {ranged.status}, not 206: the image is "
            "not sent by Apache's file handler",
        )
    wanted = f"bytes 0-{end}/{total}"
    if ranged.header("content-range") != wanted or ranged.body != image.body[: end + 1]:
        return Check(
            FAIL,
            "",
            f"206 with Content-Range {ranged.header('content-range')!r}, "
            f"not {wanted!r}, or other bytes",
        )
    return Check(PASS, "", f"206, Content-Range: {wanted}")


def judge_not_modified(conditional: Response | None, image: Response) -> Check:
    if conditional is None:
        return Check(FAIL, "", "no ETag to ask `If-None-Match` with")
    if conditional.status != 304:
        return Check(
            FAIL, "", f"`If-None-Match: {image.header('etag')}` got {conditional.status}, not 304"
        )
    return Check(PASS, "", "304 Not Modified for the image's own ETag")


# --------------------------------------------------------------------------- the config


def compare_with_conf(
    conf: ConfFacts, site: Site, image: str, seen: dict[str, Response], cookie_name: str
) -> list[Check]:
    """Where the server's answers (*seen*, by check name) disagree with what *conf* sets up."""
    found = [Check(verdict, "config", reason) for verdict, reason in static_problems(conf)]
    name = conf.path
    canaries = [seen[key] for key in ("canary-name", "canary-path", "canary-hidden") if key in seen]
    gated = [response.by_imageguard and response.status == 403 for response in canaries]
    if conf.mode != "none" and canaries and not any(gated):
        if conf.kind == "htaccess":
            found.append(
                Check(
                    FAIL,
                    "config",
                    f"Apache ignores {name}: the names its gate refuses "
                    f"got {', '.join(str(r.status) for r in canaries)}, not its 403. An "
                    ".htaccess is read only where the server's <Directory> has an "
                    "AllowOverride other than None (and AccessFileName .htaccess)",
                )
            )
        else:
            found.append(
                Check(
                    FAIL,
                    "config",
                    f"the server does not run {name}'s block at "
                    f"{site.url}: is it enabled (a2enconf imageguard) and Apache "
                    "reloaded? does the URL lead into its <Directory "
                    f"{conf.directory}>?",
                )
            )
    if conf.alias and not (site.path.rstrip("/") + "/").startswith(conf.alias.rstrip("/") + "/"):
        found.append(
            Check(WARN, "config", f"{site.url} is not below {name}'s `Alias {conf.alias}`")
        )
    extension = "." + image.rsplit(".", 1)[-1].lower() if "." in image else ""
    if conf.extensions and extension not in conf.extensions:
        found.append(
            Check(
                WARN,
                "config",
                f"{image}: {extension or 'no extension'} is not among "
                f"{name}'s imageguard.extensions",
            )
        )
    if cookie_name and cookie_name != conf.login_cookie:
        found.append(
            Check(
                WARN,
                "config",
                f"the viewer's cookie is {cookie_name}, but {name} reads "
                f"the login from {conf.login_cookie}",
            )
        )
    refusal = seen.get("denied")
    if (
        refusal is not None
        and refusal.by_imageguard
        and refusal.status in (403, 404)
        and refusal.status != conf.deny_status
    ):
        found.append(
            Check(
                WARN,
                "config",
                f"{name} sets deny_status {conf.deny_status}, but "
                f"the server refused with {refusal.status}: it runs another "
                "configuration (not reloaded?)",
            )
        )
    page = seen.get("anonymous-page")
    login_url = conf.setting("imageguard.login_url") or ""
    if login_url and page is not None and conf.mode in ("one-phase", "three-phase"):
        location = urllib.parse.urlsplit(page.header("location")).path
        if page.status != 302:
            found.append(
                Check(
                    WARN,
                    "config",
                    f"{name} sets login_url {login_url}, but a page "
                    f"navigation got {page.status}, not a redirect to it (not reloaded?)",
                )
            )
        elif location != urllib.parse.urlsplit(login_url).path:
            found.append(
                Check(
                    WARN,
                    "config",
                    f"a page navigation is sent to {location}, but "
                    f"{name} sets login_url {login_url}",
                )
            )
    image_response = seen.get("viewer")
    max_age = str(conf.setting("imageguard.max_age"))
    if image_response is not None and image_response.status == 200 and image_response.by_imageguard:
        control = image_response.header("cache-control")
        sent = re.search(r"max-age=(\d+)", control)
        if sent is None or sent.group(1) != max_age:
            found.append(
                Check(
                    WARN,
                    "config",
                    f"{name} sets max_age {max_age}, the server sends "
                    f"Cache-Control: {control} (not reloaded?)",
                )
            )
    if not found:
        found.append(
            Check(
                PASS,
                "config",
                f"the server answers as {name} says ({conf.mode}"
                f"{', deny_status ' + str(conf.deny_status)}"
                f"{', login_url ' + login_url if login_url else ''})",
            )
        )
    return found


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class Viewer:
    """Whose login the viewer's checks send: a Cookie header value and how it is named."""

    cookie: str
    described: str

    @property
    def cookie_name(self) -> str:
        return self.cookie.split("=", 1)[0].strip()


def _viewer(args: argparse.Namespace, site: Site, conf: ConfFacts | None) -> Viewer | None:
    if args.cookie is not None:
        if "=" not in args.cookie or not args.cookie.split("=", 1)[0].strip():
            raise DoctorUsage(f"--cookie {args.cookie!r}: give it as NAME=VALUE")
        if not all(" " <= ch <= "~" for ch in args.cookie):
            raise DoctorUsage(
                "--cookie: a Cookie header is printable ASCII (no line break, control or "
                "other character): copy the value as the browser shows it"
            )
        return Viewer(args.cookie, f"cookie {args.cookie.split('=', 1)[0].strip()}")
    if args.ticket_secret is None:
        return None
    digest = args.digest or (conf.setting("imageguard.tkt_digest") if conf else DEFAULT_DIGEST)
    bound = conf is not None and bool(conf.setting("imageguard.tkt_bind_ip"))
    address = site.client_address() if bound else UNBOUND_IP
    secret = SecretFile(args.ticket_secret).secrets()[0]
    try:
        value = issue_ticket(args.user, args.group, secret, digest=digest, ip=address)
    except ValueError as exc:
        raise DoctorUsage(str(exc)) from None
    name = conf.login_cookie if conf is not None and conf.tickets else "auth_tkt"
    return Viewer(f"{name}={value}", f"a {digest} ticket for {args.user} in cookie {name}")


def run_checks(
    site: Site,
    image: str,
    denied: str | None,
    viewer: Viewer | None,
    conf: ConfFacts | None,
) -> Iterator[Check]:
    """Every check, in order, as it is made (stops after a request that got no answer)."""
    seen: dict[str, Response] = {}

    def ask(check: str, method: str, name: str, headers: dict[str, str]) -> Response:
        response = site.ask(method, name, headers)
        seen[check] = response
        return response

    anonymous = {"Accept": IMAGE_ACCEPT}
    # The canaries go with the viewer's login: the gate refuses them to anyone, while a
    # gate that only asks for a login lets a logged-in viewer have them.
    logged_in = anonymous if viewer is None else {**anonymous, "Cookie": viewer.cookie}
    try:
        for check, name in (
            ("canary-name", f"{CANARY}.txt"),
            ("canary-path", f"{image}/{CANARY}.txt"),
            ("canary-hidden", f".{CANARY}.jpg"),
        ):
            yield _named(check, name, judge_canary(ask(check, "GET", name, logged_in)))
        gate_only = conf is not None and conf.mode == "gate"
        response = ask("anonymous", "GET", image, anonymous)
        yield _named(
            "anonymous", f"{image} as an <img>", judge_anonymous(response, site, image, gate_only)
        )
        response = ask("anonymous-page", "GET", image, {"Accept": PAGE_ACCEPT})
        yield _named(
            "anonymous-page",
            f"{image} as a page",
            judge_anonymous(response, site, image, gate_only),
        )
        if viewer is None:
            why = "not checked: give --cookie NAME=VALUE, or --ticket-secret FILE --user NAME"
            for check in (
                "viewer",
                "headers",
                "denied",
                "file-handler",
                "head",
                "range",
                "not-modified",
            ):
                yield Check(WARN, check, why)
        else:
            yield from _viewer_checks(site, image, denied, viewer, ask)
    except Unreachable as exc:
        yield Check(FAIL, "reach", f"{exc}; the checks after this one were not made")
        return
    if conf is not None:
        yield from compare_with_conf(conf, site, image, seen, viewer.cookie_name if viewer else "")


def _named(check: str, subject: str, judged: Check) -> Check:
    return Check(judged.verdict, check, f"{subject}: {judged.reason}")


def _viewer_checks(
    site: Site,
    image: str,
    denied: str | None,
    viewer: Viewer,
    ask: Callable[[str, str, str, dict[str, str]], Response],
) -> Iterator[Check]:
    sent = {"Accept": IMAGE_ACCEPT, "Cookie": viewer.cookie}
    got = ask("viewer", "GET", image, sent)
    yield _named("viewer", f"{image} for {viewer.described}", judge_viewer(got, site, image))
    if got.status == 200:
        yield _named("headers", image, judge_headers(got))
    else:
        yield Check(FAIL, "headers", "not checked: the viewer was not sent the image")
    if denied is None:
        yield Check(
            WARN, "denied", "not checked: give --denied NAME, an image this viewer may not see"
        )
    else:
        yield _named(
            "denied", denied, judge_denied(ask("denied", "GET", denied, sent), site, denied)
        )
    if got.status != 200 or not got.body:
        for check in ("file-handler", "head", "range", "not-modified"):
            yield Check(FAIL, check, "not checked: the viewer was not sent the image")
        return
    yield Check(*_split(judge_file_handler(got), "file-handler"))
    yield Check(*_split(judge_head(ask("head", "HEAD", image, sent), got), "head"))
    ranged = ask(
        "range", "GET", image, {**sent, "Range": f"bytes=0-{min(_RANGE_END, got.size - 1)}"}
    )
    yield Check(*_split(judge_range(ranged, got), "range"))
    etag = got.header("etag")
    conditional = (
        ask("not-modified", "GET", image, {**sent, "If-None-Match": etag}) if etag else None
    )
    yield Check(*_split(judge_not_modified(conditional, got), "not-modified"))


def _split(judged: Check, name: str) -> tuple[str, str, str]:
    return judged.verdict, name, judged.reason


def report(checks: Iterator[Check], out: TextIO) -> int:
    """Print each check as it comes, then the summary; the exit status."""
    counts = {PASS: 0, WARN: 0, FAIL: 0}
    for check in checks:
        counts[check.verdict] += 1
        print(check.line(), file=out, flush=True)
    total = sum(counts.values())
    print(
        f"{total} check{'' if total == 1 else 's'}: {counts[PASS]} passed, "
        f"{counts[WARN]} warned, {counts[FAIL]} failed",
        file=out,
    )
    return 1 if counts[FAIL] else 0


# --------------------------------------------------------------------------- the command


def _relative(name: str, flag: str) -> str:
    cleaned = name.strip("/")
    if not cleaned or any(part in ("", ".", "..") for part in cleaned.split("/")):
        raise DoctorUsage(
            f"{flag} {name!r}: give an image's path below the URL, e.g. gallery/cat.jpg"
        )
    return cleaned


def cmd_doctor(args: argparse.Namespace) -> int:
    """``imageguard doctor``: the checks, printed; 1 when one failed."""
    if args.timeout <= 0:
        raise DoctorUsage("--timeout must be more than 0 seconds")
    if (args.ticket_secret is None) != (args.user is None):
        raise DoctorUsage(
            "--ticket-secret and --user go together: the ticket is made for that user"
        )
    if args.cookie is not None and args.ticket_secret is not None:
        raise DoctorUsage("give --cookie or --ticket-secret, not both")
    if args.group and args.ticket_secret is None:
        raise DoctorUsage("--group goes with --ticket-secret")
    site = Site(args.url, args.timeout)
    image = _relative(args.image, "--image")
    denied = _relative(args.denied, "--denied") if args.denied is not None else None
    conf = None
    if args.conf is not None:
        try:
            text = Path(args.conf).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DoctorUsage(
                f"--conf {args.conf}: {getattr(exc, 'strerror', None) or exc}"
            ) from None
        conf = read_conf(text, args.conf, site.path)
    try:
        viewer = _viewer(args, site, conf)
    except Unreachable as exc:
        print(f"imageguard doctor {site.url}", flush=True)
        return report(iter([Check(FAIL, "reach", str(exc))]), sys.stdout)
    who = viewer.described if viewer else "no viewer"
    print(one_line(f"imageguard doctor {site.url} (image {image}, {who})"), flush=True)
    return report(run_checks(site, image, denied, viewer, conf), sys.stdout)


def add_doctor_command(command: Callable[[str, object, str], argparse.ArgumentParser]) -> None:
    """doctor: the deployment's self-check."""
    p = command(
        "doctor",
        cmd_doctor,
        "check a deployment over HTTP: the gate is live, anonymous viewers are refused, "
        "the viewer gets the image from Apache's file handler with the right headers",
    )
    p.add_argument(
        "url", metavar="URL", help="the protected directory, e.g. http://127.0.0.1/images/"
    )
    p.add_argument(
        "--image", required=True, metavar="NAME", help="an image below URL the viewer may see"
    )
    p.add_argument("--denied", metavar="NAME", help="an image below URL the viewer may not see")
    p.add_argument(
        "--cookie", metavar="NAME=VALUE", help="the viewer's login cookie, e.g. pysid=..."
    )
    p.add_argument(
        "--ticket-secret",
        metavar="FILE",
        help="make the viewer an auth_tkt ticket with this secret file",
    )
    p.add_argument("--user", metavar="NAME", help="with --ticket-secret: the ticket's user")
    p.add_argument(
        "--group", metavar="G", action="append", default=[], help="with --ticket-secret: a group"
    )
    p.add_argument(
        "--digest",
        choices=["sha256", "sha512", "md5"],
        help="with --ticket-secret: the ticket's digest (default: --conf's, else sha256)",
    )
    p.add_argument(
        "--conf",
        metavar="FILE",
        help="the installed block or .htaccess: warn where the server's answers disagree with it",
    )
    p.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="per request (default: 10)"
    )
