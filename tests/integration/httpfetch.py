"""One HTTP request to a local test server, the way every integration test makes them."""

from __future__ import annotations

import http.client

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
