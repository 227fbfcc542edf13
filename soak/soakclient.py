"""The soak's clients: keep-alive HTTP/1.1 over raw sockets, many threads per process.

Each client thread owns one connection and sends one request after the other on it,
as a browser's connection does, for as long as the run lasts. Every request is logged
as one tuple (:data:`RECORD_FIELDS`) with the moment just before its first byte was
sent and the moment its last byte was received (``time.monotonic()``, the clock the
writer logs its writes with). The answer is classified on the spot: the original
(its bytes compared with the file's), a preview or a thumbnail (told apart by the
JPEG's dimensions), a refusal, or something unexpected.

A connection the server closed while it was idle (Apache ends keep-alive connections
at a graceful restart, after ``MaxKeepAliveRequests``, after ``KeepAliveTimeout``) can
fail the next request before a single byte of answer arrives; like a browser, the
client then sends that request again once on a new connection, and counts it
(``retried``). A failure on a new connection, or after part of an answer, is a failed
connection.
"""

from __future__ import annotations

import pickle
import random
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from soakmodel import NO_ANSWER, REFUSED, UNRECOGNISED

from imageguard.identity.tickets import issue_ticket
from imageguard.policy.levels import Level

#: The fields of a logged request, in order.
RECORD_FIELDS = (
    "sent",
    "received",
    "kind",
    "user",
    "image",
    "asked",
    "stamp",
    "status",
    "delivered",
    "retried",
    "error",
)
#: Login kinds: a session on the session site, a ticket on the ticket site, nobody on each.
SESSION, TICKET, ANON_SESSION_SITE, ANON_TICKET_SITE = range(4)
KIND_NAMES = ("session", "ticket", "anonymous", "anonymous")
QUERIES = {Level.FULL: "", Level.PREVIEW: "?v=preview", Level.THUMB: "?v=thumb"}
#: A request not answered by then is a failed connection. Long: an overloaded machine's
#: stalls (all prefork children cold after a graceful restart) show in the latencies.
TIMEOUT_S = 120.0


class JpegMaker:
    """Every image of the tree: one small JPEG, made different per file by a comment
    (``COM`` segment) naming the file, after the JFIF header."""

    def __init__(self, base: bytes) -> None:
        if base[:4] != b"\xff\xd8\xff\xe0":
            raise ValueError("expected a JFIF JPEG")
        end = 4 + int.from_bytes(base[4:6], "big")
        self.head, self.tail = base[:end], base[end:]

    def image(self, relpath: str) -> bytes:
        comment = f"imageguard soak: {relpath}".encode()
        return self.head + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + self.tail


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, or None when it is not a JPEG."""
    if data[:2] != b"\xff\xd8":
        return None
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if at + 9 > len(data):
                return None
            height = int.from_bytes(data[at + 5 : at + 7], "big")
            width = int.from_bytes(data[at + 7 : at + 9], "big")
            return width, height
        at += 2 + length
    return None


@dataclass(frozen=True)
class Plan:
    """What the clients need to know: the server, the logins, the images, the mix."""

    port: int
    users: tuple[str, ...]
    login_groups: tuple[tuple[str, ...], ...]
    sids: tuple[str, ...]
    secret: str
    relpaths: tuple[str, ...]
    base_jpeg: bytes
    sizes: dict[int, tuple[int, int]]  # Level value -> (width, height)
    hot_users: tuple[int, ...]
    hot_images: tuple[int, ...]
    hot_album_images: tuple[int, ...]
    own_images: tuple[tuple[int, ...], ...]  # per user: the images below users/NAME/
    session_prefix: str = "/images"
    ticket_prefix: str = "/tkt"


class ConnectionFailed(Exception):
    """A request that got no complete answer."""


class _Stale(Exception):
    """The connection failed before any byte of the answer: the server may have closed it."""


class HttpConnection:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1."""

    def __init__(self, port: int, timeout: float = TIMEOUT_S) -> None:
        self.port = port
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buffer = b""
        self.answered = 0  # answers on the current socket

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.buffer = b""
        self.answered = 0

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        except OSError as exc:
            raise ConnectionFailed(f"connect: {exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.buffer, self.answered = sock, b"", 0
        return sock

    def exchange(self, request: bytes) -> tuple[float, float, int, bytes, bool]:
        """Send *request*, read its answer: (sent, received, status, body, retried)."""
        retried = False
        while True:
            sock = self.sock if self.sock is not None else self._connect()
            reused = self.answered > 0
            sent = time.monotonic()
            try:
                try:
                    sock.sendall(request)
                except OSError as exc:  # reset or closed by the server (its restart, say)
                    raise _Stale(f"send: {exc}") from None
                status, body, close = self._read(sock)
            except _Stale as exc:
                self.close()
                if reused and not retried:
                    retried = True
                    continue
                raise ConnectionFailed(str(exc)) from None
            except ConnectionFailed:
                self.close()
                raise
            received = time.monotonic()
            self.answered += 1
            if close:
                self.close()
            return sent, received, status, body, retried

    def _recv(self, sock: socket.socket, started: bool) -> bytes:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            raise ConnectionFailed(f"no answer within {self.timeout:g} s") from None
        except OSError as exc:
            if not started:
                raise _Stale(f"before any answer: {exc}") from None
            raise ConnectionFailed(f"during the answer: {exc}") from None
        if not chunk:
            if not started:
                raise _Stale("closed before any answer")
            raise ConnectionFailed("closed during the answer")
        return chunk

    def _read(self, sock: socket.socket) -> tuple[int, bytes, bool]:
        data = self.buffer
        while b"\r\n\r\n" not in data:
            data += self._recv(sock, bool(data))
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        try:
            version, code = lines[0].split(b" ", 2)[:2]
            status = int(code)
        except ValueError:
            raise ConnectionFailed(f"malformed status line {lines[0][:80]!r}") from None
        length = -1
        chunked = False
        close = version != b"HTTP/1.1"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = close or b"close" in value.lower()
        if chunked:
            body, data = self._read_chunked(sock, data)
        elif length >= 0:
            while len(data) < length:
                data += self._recv(sock, True)
            body, data = data[:length], data[length:]
        else:  # until the server closes
            close = True
            parts = [data]
            while True:
                try:
                    chunk = sock.recv(65536)
                except OSError as exc:
                    raise ConnectionFailed(f"during the answer: {exc}") from None
                if not chunk:
                    break
                parts.append(chunk)
            body, data = b"".join(parts), b""
        self.buffer = data
        return status, body, close

    def _read_chunked(self, sock: socket.socket, data: bytes) -> tuple[bytes, bytes]:
        parts: list[bytes] = []
        while True:
            while b"\r\n" not in data:
                data += self._recv(sock, True)
            size_line, _, data = data.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:  # the last chunk, then trailer lines up to an empty one
                while True:
                    while b"\r\n" not in data:
                        data += self._recv(sock, True)
                    line, _, data = data.partition(b"\r\n")
                    if not line:
                        return b"".join(parts), data
            while len(data) < size + 2:
                data += self._recv(sock, True)
            parts.append(data[:size])
            data = data[size + 2 :]


class Chooser:
    """Picks each request: who (session, ticket or nobody; a hot user or any), which
    image (a hot one, one of a hot album, the user's own, or any) and which variant."""

    def __init__(self, plan: Plan, rng: random.Random) -> None:
        self.plan = plan
        self.rng = rng
        self.all_users = range(len(plan.users))
        self.all_images = range(len(plan.relpaths))

    def pick(self) -> tuple[int, int, int, Level]:
        rng, plan = self.rng, self.plan
        r = rng.random()
        kind = SESSION if r < 0.42 else TICKET if r < 0.84 else ANON_SESSION_SITE
        if kind == ANON_SESSION_SITE and r >= 0.92:
            kind = ANON_TICKET_SITE
        user = rng.choice(plan.hot_users) if rng.random() < 0.6 else rng.choice(self.all_users)
        r = rng.random()
        own = plan.own_images[user]
        if r < 0.35 and plan.hot_images:
            image = rng.choice(plan.hot_images)
        elif r < 0.6 and plan.hot_album_images:
            image = rng.choice(plan.hot_album_images)
        elif r < 0.75 and own:
            image = rng.choice(own)
        else:
            image = rng.choice(self.all_images)
        r = rng.random()
        asked = Level.FULL if r < 0.5 else Level.PREVIEW if r < 0.75 else Level.THUMB
        return kind, user, image, asked


class Classifier:
    """What a 200 delivered: the original (byte for byte), a preview or a thumbnail."""

    def __init__(self, plan: Plan) -> None:
        self.jpeg = JpegMaker(plan.base_jpeg)
        self.by_size = {size: level for level, size in plan.sizes.items()}

    def delivered(self, status: int, body: bytes, relpath: str) -> int:
        if status in (401, 403):
            return REFUSED
        if status != 200:
            return NO_ANSWER
        level = self.by_size.get(jpeg_size(body) or (0, 0))
        if level is None:
            return UNRECOGNISED
        if level == Level.FULL and body != self.jpeg.image(relpath):
            return UNRECOGNISED
        return int(level)


Record = tuple[float, float, int, int, int, int, int, int, int, bool, str]


def client_loop(
    plan: Plan,
    stamps: Any,  # a shared array of each user's current ticket timestamp
    seed: int,
    start_at: float,
    end_at: float,
    records: list[Record],
) -> None:
    """One client: requests on one keep-alive connection from *start_at* to *end_at*."""
    rng = random.Random(seed)
    chooser = Chooser(plan, rng)
    classifier = Classifier(plan)
    tickets: dict[tuple[int, int], str] = {}
    conn = HttpConnection(plan.port)
    host = f"Host: 127.0.0.1:{plan.port}\r\n"
    delay = start_at - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    try:
        while time.monotonic() < end_at:
            kind, user, image, asked = chooser.pick()
            relpath = plan.relpaths[image]
            stamp = 0
            if kind == SESSION:
                cookie = f"Cookie: pysid={plan.sids[user]}\r\n"
                prefix = plan.session_prefix
            elif kind == TICKET:
                stamp = int(stamps[user])
                ticket = tickets.get((user, stamp))
                if ticket is None:
                    ticket = tickets[(user, stamp)] = issue_ticket(
                        plan.users[user], plan.login_groups[user], plan.secret, timestamp=stamp
                    )
                cookie = f"Cookie: auth_tkt={ticket}\r\n"
                prefix = plan.ticket_prefix
            else:
                cookie = ""
                prefix = plan.session_prefix if kind == ANON_SESSION_SITE else plan.ticket_prefix
                user = -1
            request = (
                f"GET {prefix}/{relpath}{QUERIES[asked]} HTTP/1.1\r\n{host}"
                "User-Agent: imageguard-soak\r\nAccept: image/avif,image/webp,*/*\r\n"
                f"{cookie}\r\n"
            ).encode()
            try:
                sent, received, status, body, retried = conn.exchange(request)
            except ConnectionFailed as exc:
                now = time.monotonic()
                records.append(
                    (now, now, kind, user, image, int(asked), stamp, 0, NO_ANSWER, False, str(exc))
                )
                time.sleep(0.01)  # no busy loop against a server that is not there
                continue
            delivered = classifier.delivered(status, body, relpath)
            records.append(
                (
                    sent,
                    received,
                    kind,
                    user,
                    image,
                    int(asked),
                    stamp,
                    status,
                    delivered,
                    retried,
                    "",
                )
            )
    finally:
        conn.close()


def run_worker(
    plan: Plan,
    stamps: Any,
    threads: int,
    seed: int,
    start_at: float,
    end_at: float,
    out: str,
) -> None:
    """A client process: *threads* clients; their records, pickled into *out*."""
    lists: list[list[Record]] = [[] for _ in range(threads)]
    cpu = time.process_time()
    workers = [
        threading.Thread(
            target=client_loop,
            args=(plan, stamps, seed * 1000 + n, start_at, end_at, lists[n]),
            daemon=True,
        )
        for n in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    records = [record for found in lists for record in found]
    with open(out, "wb") as handle:
        pickle.dump({"records": records, "cpu_s": time.process_time() - cpu}, handle)


def merge(paths: Sequence[str]) -> tuple[list[Record], float]:
    """The records of every client process, and the CPU time they used."""
    records: list[Record] = []
    cpu = 0.0
    for path in paths:
        with open(path, "rb") as handle:
            found = pickle.load(handle)
        records.extend(found["records"])
        cpu += found["cpu_s"]
    return records, cpu
