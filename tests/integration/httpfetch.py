"""One HTTP request to a local test server, the way every integration test makes them."""

from __future__ import annotations

import http.client
import socket

Response = tuple[int, dict[str, str], bytes]


def fetch(
    port: int,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: str | bytes | None = None,
    source: str | None = None,
    host: str = "127.0.0.1",
) -> Response:
    """Send one request to *host*:*port*; return (status, lower-cased headers, body).

    Redirects are not followed. Repeated headers are joined with a newline (so several
    ``Set-Cookie`` lines stay apart).
    """
    source_address = (source, 0) if source else None
    conn = http.client.HTTPConnection(host, port, timeout=20, source_address=source_address)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        found: dict[str, str] = {}
        for name, value in response.getheaders():
            key = name.lower()
            found[key] = f"{found[key]}\n{value}" if key in found else value
        return response.status, found, data
    finally:
        conn.close()


def fetch_raw(port: int, request: bytes, host: str = "127.0.0.1") -> Response:
    """Send *request* byte for byte (any bytes, in the request line too) and read the
    answer to the end; returns (status, lower-cased headers, body).

    The request should ask for ``Connection: close``; the answer is read until the
    server closes the connection.
    """
    with socket.create_connection((host, port), timeout=20) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    found: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        found[key] = f"{found[key]}\n{value.strip()}" if key in found else value.strip()
    return status, found, body
