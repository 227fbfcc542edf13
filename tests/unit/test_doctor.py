"""``imageguard doctor``'s pure parts: how an answer is judged, what a configuration file
says, the command line's refusals, and a server that cannot be reached (tests/integration/
test_doctor.py runs it against a real Apache)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imageguard.apache.apacheconf import (
    EXAMPLE_SITE,
    EXAMPLE_TICKET_SITE,
    directory_block,
    htaccess,
)
from imageguard.apache.options import BY_NAME
from imageguard.cli import main
from imageguard.cli.doctor import (
    Check,
    Response,
    Site,
    compare_with_conf,
    image_format,
    judge_anonymous,
    judge_canary,
    judge_denied,
    judge_file_handler,
    judge_head,
    judge_headers,
    judge_not_modified,
    judge_range,
    judge_viewer,
    report,
)
from imageguard.cli.doctorconf import read_conf, static_problems

JPEG = b"\xff\xd8\xff\xe0" + bytes(60)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(60)
SITE = Site("http://images.example.org/images", 5)
SERVED = {
    "cache-control": "private, max-age=0",
    "x-content-type-options": "nosniff",
    "vary": "Cookie",
    "content-type": "image/jpeg",
    "etag": '"40-5f"',
    "last-modified": "Wed, 02 Dec 2026 01:07:29 GMT",
    "accept-ranges": "bytes",
    "content-length": str(len(JPEG)),
}


def refusal(status: int, *, ours: bool = True, **headers: str) -> Response:
    found = {"cache-control": "private, no-store"} if ours else {}
    found.update({name.replace("_", "-"): value for name, value in headers.items()})
    return Response(status, found, b"<html>refused</html>")


def served(body: bytes = JPEG, **changes: str | None) -> Response:
    headers = dict(SERVED)
    for name, value in changes.items():
        key = name.replace("_", "-")
        if value is None:
            headers.pop(key, None)
        else:
            headers[key] = value
    return Response(200, headers, body)


# --------------------------------------------------------------------------- the bytes


@pytest.mark.parametrize(
    ("data", "media"),
    [
        (JPEG, "image/jpeg"),
        (PNG, "image/png"),
        (b"GIF89a" + bytes(10), "image/gif"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"\x00\x00\x00\x1cftypavif", "image/avif"),
        (b"BM" + bytes(20), "image/bmp"),
        (b"II*\x00" + bytes(8), "image/tiff"),
    ],
)
def test_image_formats_are_told_by_their_bytes(data: bytes, media: str) -> None:
    found = image_format(data)
    assert found is not None and found[1] == media


def test_other_bytes_are_no_image() -> None:
    assert image_format(b"<html>") is None and image_format(b"") is None


# --------------------------------------------------------------------------- imageguard's marks


def test_imageguards_answers_are_told_from_apaches() -> None:
    assert refusal(403).by_imageguard and refusal(500).by_imageguard
    assert not refusal(403, ours=False).by_imageguard
    assert served().by_imageguard
    assert not served(x_content_type_options=None).by_imageguard
    assert not served(vary="Accept-Encoding").by_imageguard
    assert served(vary="Accept-Encoding, cookie").by_imageguard


@pytest.mark.parametrize(
    ("response", "verdict", "words"),
    [
        (refusal(403), "PASS", "refused by imageguard's gate (403)"),
        (refusal(500), "FAIL", "imageguard answered 500"),
        (refusal(404), "WARN", "not the gate's 403"),
        (refusal(404, ours=False), "FAIL", "no imageguard gate ran here"),
        (served(), "FAIL", "200: served"),
        (refusal(403, ours=False), "WARN", "by Apache itself, not imageguard"),
        (refusal(301, ours=False, location="https://x/"), "WARN", "redirected (301)"),
        (refusal(500, ours=False), "FAIL", "without imageguard's headers"),
        (refusal(401, ours=False), "WARN", "401: refused, but not by imageguard's gate"),
    ],
)
def test_a_canary(response: Response, verdict: str, words: str) -> None:
    judged = judge_canary(response)
    assert judged.verdict == verdict and words in judged.reason


def test_anonymous_viewers_are_refused() -> None:
    assert judge_anonymous(refusal(401), SITE, "a.jpg", False) == Check(
        "PASS", "", "refused by imageguard (401)"
    )
    assert judge_anonymous(refusal(403, ours=False), SITE, "a.jpg", False).verdict == "PASS"
    login = refusal(302, location="/login?back=%2Fimages%2Fa.jpg")
    assert judge_anonymous(login, SITE, "a.jpg", False) == Check(
        "PASS", "", "refused by redirect (302) to /login?back=%2Fimages%2Fa.jpg"
    )
    to_https = refusal(301, ours=False, location="https://images.example.org/images/a.jpg")
    judged = judge_anonymous(to_https, SITE, "a.jpg", False)
    assert judged.verdict == "WARN" and "run the doctor against that URL" in judged.reason
    judged = judge_anonymous(served(), SITE, "a.jpg", False)
    assert judged.verdict == "FAIL" and "imageguard explain a.jpg" in judged.reason
    assert judge_anonymous(served(), SITE, "a.jpg", True).verdict == "WARN"
    judged = judge_anonymous(served(x_content_type_options=None), SITE, "a.jpg", True)
    assert judged == Check("FAIL", "", "served without imageguard: the directory is not protected")


def test_the_viewers_image() -> None:
    assert judge_viewer(served(), SITE, "a.jpg").verdict == "PASS"
    judged = judge_viewer(served(content_type="image/png"), SITE, "a.jpg")
    assert judged == Check("FAIL", "", "200, sent as image/png but the bytes are a JPEG image")
    assert judge_viewer(served(content_type="text/html"), SITE, "a.jpg").verdict == "FAIL"
    assert judge_viewer(served(b"????" * 10), SITE, "a.jpg").verdict == "WARN"
    assert judge_viewer(served(b""), SITE, "a.jpg").reason == "200, but without a byte of body"
    assert "does not see a login" in judge_viewer(refusal(401), SITE, "a.jpg").reason
    assert "the ACL does not grant" in judge_viewer(refusal(403), SITE, "a.jpg").reason
    assert "by Apache itself" in judge_viewer(refusal(403, ours=False), SITE, "a.jpg").reason
    assert "refused it with 500" in judge_viewer(refusal(500), SITE, "a.jpg").reason
    assert "redirected (302)" in judge_viewer(refusal(302, location="/login"), SITE, "a.jpg").reason


def test_the_headers_a_private_image_needs() -> None:
    assert judge_headers(served()).verdict == "PASS"
    assert judge_headers(served(cache_control="no-store")).verdict == "PASS"
    judged = judge_headers(served(cache_control="public, max-age=600", vary=None))
    assert judged.verdict == "FAIL"
    assert "Cache-Control: public, max-age=600: a shared cache" in judged.reason
    assert "no Vary: a cache" in judged.reason
    assert "nosniff" in judge_headers(served(x_content_type_options=None)).reason
    assert "sets a cookie" in judge_headers(served(set_cookie="pysid=1")).reason


def test_a_denied_image() -> None:
    assert judge_denied(refusal(404), SITE, "b.jpg") == Check(
        "PASS", "", "refused (404) by imageguard"
    )
    assert judge_denied(served(), SITE, "b.jpg").verdict == "FAIL"
    assert judge_denied(refusal(500), SITE, "b.jpg") == Check(
        "FAIL", "", "500: imageguard failed; Apache's error log says why"
    )


def test_apaches_file_handler_is_known_by_its_headers() -> None:
    assert judge_file_handler(served()).verdict == "PASS"
    streamed = served(
        etag=None, accept_ranges=None, content_length=None, transfer_encoding="chunked"
    )
    judged = judge_file_handler(streamed)
    assert judged.verdict == "FAIL"
    for words in ("no ETag", "no `Accept-Ranges: bytes`", "no Content-Length", "sent chunked"):
        assert words in judged.reason
    assert "X-Powered-By: PHP/8" in judge_file_handler(served(x_powered_by="PHP/8")).reason


def test_head_range_and_304() -> None:
    image = served()
    head = Response(200, dict(SERVED), b"")
    assert judge_head(head, image).verdict == "PASS"
    assert judge_head(Response(200, dict(SERVED), JPEG), image).verdict == "FAIL"
    assert judge_head(Response(200, {}, b""), image).verdict == "FAIL"
    ranged = Response(206, {"content-range": f"bytes 0-15/{len(JPEG)}"}, JPEG[:16])
    assert judge_range(ranged, image) == Check(
        "PASS", "", f"206, Content-Range: bytes 0-15/{len(JPEG)}"
    )
    assert "not 206" in judge_range(served(), image).reason
    wrong = Response(206, {"content-range": f"bytes 0-15/{len(JPEG)}"}, JPEG[1:17])
    assert judge_range(wrong, image).verdict == "FAIL"
    assert judge_not_modified(Response(304, {}, b""), image).verdict == "PASS"
    assert judge_not_modified(served(), image).verdict == "FAIL"
    assert judge_not_modified(None, image).reason == "no ETag to ask `If-None-Match` with"


def test_the_report_counts_and_exits() -> None:
    out = io.StringIO()
    checks = [Check("PASS", "a", "fine"), Check("WARN", "b", "hm\nline"), Check("FAIL", "c", "no")]
    assert report(iter(checks), out) == 1
    assert out.getvalue().splitlines() == [
        "PASS  a: fine",
        "WARN  b: hm\\nline",
        "FAIL  c: no",
        "3 checks: 1 passed, 1 warned, 1 failed",
    ]
    assert report(iter(checks[:2]), io.StringIO()) == 0


# --------------------------------------------------------------------------- configuration


def test_the_generated_blocks_read_back() -> None:
    one = read_conf(directory_block(EXAMPLE_SITE), "one.conf", "/images/")
    assert (one.kind, one.mode, one.alias, one.directory) == (
        "block",
        "one-phase",
        "/images",
        "/srv/images",
    )
    assert one.requires_admitted and one.option("imageguard.login_url") == "/login"
    assert one.login_cookie == "pysid" and one.deny_status == 403
    assert static_problems(one) == []
    three = read_conf(
        directory_block(dataclasses.replace(EXAMPLE_SITE, mode="three-phase")), "3.conf"
    )
    assert three.mode == "three-phase" and three.requires_user and three.auth_type
    assert static_problems(three) == []
    tickets = read_conf(directory_block(EXAMPLE_TICKET_SITE), "t.conf")
    assert tickets.tickets and tickets.login_cookie == "auth_tkt"
    assert tickets.option("imageguard.tkt_digest") == "sha256"


def test_an_htaccess_reads_as_a_gate() -> None:
    gate = read_conf(htaccess("jpg png", "/srv/images"), ".htaccess")
    assert (gate.kind, gate.mode, gate.alias) == ("htaccess", "gate", "")
    assert gate.extensions == (".jpg", ".png")
    assert static_problems(gate) == []


def without(text: str, line: str) -> str:
    assert f"    {line}\n" in text
    return text.replace(f"    {line}\n", "")


def test_a_missing_handler_line_is_seen_in_the_file() -> None:
    block = without(directory_block(EXAMPLE_SITE), "PythonAccessHandler imageguard.gatekeeper")
    conf = read_conf(block, "x.conf")
    assert conf.mode == "none"
    assert static_problems(conf) == [
        (
            "FAIL",
            "x.conf has `Require env IMAGEGUARD_ADMITTED` without its handler line "
            "`PythonAccessHandler imageguard.gatekeeper`: Apache refuses every request",
        )
    ]
    block = without(directory_block(EXAMPLE_SITE), "Require env IMAGEGUARD_ADMITTED")
    assert [v for v, _ in static_problems(read_conf(block, "x.conf"))] == ["WARN"]


def test_a_three_phase_block_missing_a_phase_is_seen() -> None:
    block = directory_block(dataclasses.replace(EXAMPLE_SITE, mode="three-phase"))
    conf = read_conf(without(block, "PythonAuthzHandler imageguard.handlers"), "x.conf")
    assert static_problems(conf)[0][1].startswith(
        "x.conf lacks `PythonAuthzHandler imageguard.handlers`"
    )
    conf = read_conf(without(block, "Require valid-user"), "x.conf")
    assert "lacks `AuthType` and `Require valid-user`" in static_problems(conf)[0][1]


def test_the_block_for_the_url_is_chosen() -> None:
    photos = dataclasses.replace(
        EXAMPLE_SITE, root="/srv/photos", url_path="/photos", deny_status=404
    )
    both = directory_block(EXAMPLE_SITE) + directory_block(photos)
    conf = read_conf(both, "x.conf", "/photos/")
    assert (conf.directory, conf.deny_status, conf.blocks) == ("/srv/photos", 404, 2)
    assert read_conf(both, "x.conf", "/images/").directory == "/srv/images"
    assert static_problems(conf)[0][0] == "WARN"


def test_lines_of_other_sections_are_not_the_directorys() -> None:
    text = directory_block(EXAMPLE_SITE) + (
        '<Files "*.jpg">\n    PythonAccessHandler other.module\n    Require all granted\n</Files>\n'
    )
    conf = read_conf(text, "x.conf")
    assert conf.handlers["access"] == ("imageguard.gatekeeper",)
    assert "all granted" not in conf.requires


def test_a_config_the_server_contradicts() -> None:
    conf = read_conf(directory_block(EXAMPLE_SITE), "x.conf", "/images/")
    seen = {
        "canary-name": refusal(404, ours=False),
        "denied": refusal(404),
        "anonymous-page": refusal(401),
        "viewer": served(cache_control="private, max-age=60"),
    }
    found = compare_with_conf(conf, SITE, "a.txt", seen, "session")
    reasons = [f"{c.verdict} {c.reason}" for c in found]
    assert reasons == [
        "FAIL the server does not run x.conf's block at http://images.example.org/images/: is "
        "it enabled (a2enconf imageguard) and Apache reloaded? does the URL lead into its "
        "<Directory /srv/images>?",
        "WARN a.txt: .txt is not among x.conf's imageguard.extensions",
        "WARN the viewer's cookie is session, but x.conf reads the login from pysid",
        "WARN x.conf sets deny_status 403, but the server refused with 404: it runs another "
        "configuration (not reloaded?)",
        "WARN x.conf sets login_url /login, but a page navigation got 401, not a redirect to "
        "it (not reloaded?)",
        "WARN x.conf sets max_age 0, the server sends Cache-Control: private, max-age=60 (not "
        "reloaded?)",
    ]
    other = Site("http://images.example.org/pictures/", 5)
    found = compare_with_conf(conf, other, "a.jpg", {}, "")
    assert [c.reason for c in found] == [
        "http://images.example.org/pictures/ is not below x.conf's `Alias /images`"
    ]


# --------------------------------------------------------------------------- the command


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["ftp://host/images/"], "is not an http:// or https:// URL"),
        (["http://host/images/?x=1"], "without a query or fragment"),
        (["http://host:port/images/"], "the port is not a number"),
        (["http://ho st/images/"], "the host name holds spaces or controls"),
        (["http://h/i/", "--user", "bob"], "--ticket-secret and --user go together"),
        (["http://h/i/", "--cookie", "novalue"], "give it as NAME=VALUE"),
        (["http://h/i/", "--cookie", "a=b", "--ticket-secret", "f", "--user", "u"], "not both"),
        (["http://h/i/", "--group", "staff"], "--group goes with --ticket-secret"),
        (["http://h/i/", "--timeout", "0"], "--timeout must be more than 0"),
        (["http://h/i/", "--conf", "/nonexistent/x.conf"], "--conf /nonexistent/x.conf"),
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], words: str
) -> None:
    code, out, err = run(capsys, "doctor", *args[:1], "--image", "a.jpg", *args[1:])
    assert code == 2 and words in err and out == ""


@pytest.mark.parametrize("name", ["../etc/passwd", "a/../b.jpg", "/", "./a.jpg"])
def test_an_image_name_must_stay_below_the_url(
    capsys: pytest.CaptureFixture[str], name: str
) -> None:
    code, _, err = run(capsys, "doctor", "http://h/i/", "--image", name)
    assert code == 2 and "give an image's path below the URL" in err


def test_the_url_and_names_are_requested_as_given() -> None:
    site = Site("https://h.example:8443/my images", 3)
    assert (site.scheme, site.host, site.port, site.path) == (
        "https",
        "h.example",
        8443,
        "/my%20images/",
    )
    assert site.path_of("a b/c%.jpg") == "/my%20images/a%20b/c%25.jpg"
    assert site.url == "https://h.example:8443/my%20images/"
    assert Site("http://h", 3).path == "/" and Site("http://h", 3).port == 80


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections (bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def test_a_server_that_cannot_be_reached_is_one_line(
    capsys: pytest.CaptureFixture[str], closed_port: int
) -> None:
    code, out, err = run(
        capsys, "doctor", f"http://127.0.0.1:{closed_port}/images/", "--image", "a.jpg"
    )
    assert code == 1 and err == ""
    assert out.splitlines()[1:] == [
        f"FAIL  reach: cannot reach 127.0.0.1:{closed_port}: Connection refused; the checks "
        "after this one were not made",
        "1 check: 0 passed, 0 warned, 1 failed",
    ]


def test_a_server_that_does_not_answer_times_out(
    capsys: pytest.CaptureFixture[str], silent_port: int
) -> None:
    url = f"http://127.0.0.1:{silent_port}/images/"
    code, out, _ = run(capsys, "doctor", url, "--image", "a.jpg", "--timeout", "0.3")
    assert code == 1
    assert f"FAIL  reach: no answer from 127.0.0.1:{silent_port} within 0.3 s" in out


def test_a_ticket_needs_a_private_secret_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, closed_port: int
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("a-long-enough-secret-0123456789\n")
    secret.chmod(0o644)
    url = f"http://127.0.0.1:{closed_port}/images/"
    code, _, err = run(
        capsys, "doctor", url, "--image", "a.jpg", "--ticket-secret", str(secret), "--user", "bob"
    )
    assert code == 2 and "readable by everyone" in err
    secret.chmod(0o600)
    code, out, _ = run(
        capsys, "doctor", url, "--image", "a.jpg", "--ticket-secret", str(secret), "--user", "bob"
    )
    assert code == 1 and "a sha256 ticket for bob in cookie auth_tkt" in out


# --------------------------------------------------------------------------- hostile servers


class Answering:
    """A server on 127.0.0.1 that reads each request's head and answers with *answer*
    (given the socket and the request line); it records the request lines."""

    def __init__(self, answer: Callable[[socket.socket, bytes], None]) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                got = conn.recv(65536)
                if not got:
                    return
                head += got
            line = head.split(b"\r\n", 1)[0]
            self.requests.append(line)
            with contextlib.suppress(OSError):
                self.answer(conn, line)

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()


@pytest.fixture
def hostile() -> Iterator[Callable[[Callable[[socket.socket, bytes], None]], Answering]]:
    made: list[Answering] = []

    def start(answer: Callable[[socket.socket, bytes], None]) -> Answering:
        made.append(Answering(answer))
        return made[-1]

    yield start
    for server in made:
        server.close()


REFUSAL_HEAD = b"HTTP/1.1 403 Forbidden\r\nCache-Control: private, no-store\r\n"


def test_a_huge_body_is_counted_not_kept(hostile: Callable[..., Answering]) -> None:
    size = 6 * 1024 * 1024

    def huge(conn: socket.socket, line: bytes) -> None:
        conn.sendall(REFUSAL_HEAD + f"Content-Length: {size}\r\n\r\n".encode())
        chunk = b"x" * 65536
        for _ in range(size // len(chunk)):
            conn.sendall(chunk)

    server = hostile(huge)
    response = Site(f"http://127.0.0.1:{server.port}/images/", 5).ask("GET", "a.jpg", {})
    assert response.status == 403 and len(response.body) <= 64 * 1024
    assert (response.size, response.complete) == (size, True)


def test_a_body_that_drips_is_cut_off_at_the_timeout(hostile: Callable[..., Answering]) -> None:
    def drip(conn: socket.socket, line: bytes) -> None:
        conn.sendall(REFUSAL_HEAD + b"Content-Length: 100000\r\n\r\n")
        for _ in range(200):  # a byte every 50 ms: never idle long enough to time out
            conn.sendall(b"x")
            time.sleep(0.05)

    server = hostile(drip)
    site = Site(f"http://127.0.0.1:{server.port}/images/", 0.5)
    result: list[Response] = []
    worker = threading.Thread(target=lambda: result.append(site.ask("GET", "a.jpg", {})))
    started = time.monotonic()
    worker.start()
    worker.join(5)
    assert not worker.is_alive(), "the doctor kept reading a body that never ends"
    assert time.monotonic() - started < 2
    assert result[0].status == 403 and not result[0].complete and result[0].size < 100


def test_an_image_cut_short_is_not_blamed_on_its_content_length() -> None:
    cut = dataclasses.replace(served(), size=len(JPEG) - 10, complete=False)
    assert judge_file_handler(cut).verdict == "PASS"
    short = dataclasses.replace(served(), size=len(JPEG) - 10)
    assert f"Content-Length {len(JPEG)} for {len(JPEG) - 10} bytes" in (
        judge_file_handler(short).reason
    )


@pytest.mark.parametrize(
    ("url", "image", "line"),
    [
        ("http://127.0.0.1:{port}/bilder ä/", "zoë.jpg", b"GET /bilder%20%C3%A4/zo%C3%AB.jpg"),
        ("http://127.0.0.1:{port}/my%20images", "a b#?.jpg", b"GET /my%20images/a%20b%23%3F.jpg"),
        ("http://127.0.0.1:{port}/images/", "caf\udce9.jpg", b"GET /images/caf%E9.jpg"),
    ],
)
def test_names_are_sent_percent_encoded(
    capsys: pytest.CaptureFixture[str],
    hostile: Callable[..., Answering],
    url: str,
    image: str,
    line: bytes,
) -> None:
    def refuse(conn: socket.socket, request: bytes) -> None:
        conn.sendall(REFUSAL_HEAD + b"Content-Length: 0\r\n\r\n")

    server = hostile(refuse)
    code, out, err = run(capsys, "doctor", url.format(port=server.port), "--image", image)
    assert code == 0 and err == "" and "reach" not in out  # every name refused by "imageguard"
    assert any(request.startswith(line + b" HTTP/1.1") for request in server.requests), (
        server.requests
    )


@pytest.mark.parametrize(
    "cookie", ["pysid=abc\r\nX-Injected: 1", "pysid=abc\ndef", "pysid=caf\u00e9", "pysid=a\x00"]
)
def test_a_cookie_that_cannot_be_a_header_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], cookie: str
) -> None:
    code, out, err = run(capsys, "doctor", "http://h/i/", "--image", "a.jpg", "--cookie", cookie)
    assert code == 2 and out == "" and "--cookie" in err and "printable ASCII" in err


def test_a_url_with_a_password_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "doctor", "http://bob:hunter2@h/i/", "--image", "a.jpg")
    assert code == 2 and out == "" and "hunter2" not in err and "user or password" in err


def test_a_malformed_answer_is_one_line(
    capsys: pytest.CaptureFixture[str], hostile: Callable[..., Answering]
) -> None:
    def garbage(conn: socket.socket, line: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")

    server = hostile(garbage)
    code, out, err = run(capsys, "doctor", f"http://127.0.0.1:{server.port}/i/", "--image", "a.jpg")
    assert code == 1 and err == "" and "FAIL  reach:" in out


def test_a_refusal_only_apache_gives_proves_less() -> None:
    # Apache's own 404 (no imageguard headers): the name may simply not be there.
    judged = judge_denied(refusal(404, ours=False), SITE, "b.jpg")
    assert judged.verdict == "WARN" and "no such file" in judged.reason
    judged = judge_anonymous(refusal(404, ours=False), SITE, "a.jpg", False)
    assert judged.verdict == "WARN" and "no such file" in judged.reason
    # A redirect imageguard did not make (a blanket rewrite, another login wall).
    elsewhere = refusal(302, ours=False, location="/maintenance.html")
    judged = judge_anonymous(elsewhere, SITE, "a.jpg", False)
    assert judged.verdict == "WARN" and "not by imageguard" in judged.reason
    assert judge_denied(elsewhere, SITE, "b.jpg").verdict == "WARN"
    # Apache's own 401 or 403 is still a refusal.
    assert judge_denied(refusal(403, ours=False), SITE, "b.jpg").verdict == "PASS"
    assert judge_anonymous(refusal(401, ours=False), SITE, "a.jpg", False).verdict == "PASS"


@pytest.mark.parametrize("value", ["²", "4O4", "", "-1"])
def test_a_deny_status_that_is_no_number_reads_as_the_default(value: str) -> None:
    text = (
        "<Directory /srv/images>\n    PythonAccessHandler imageguard.gatekeeper\n"
        f"    PythonOption imageguard.deny_status {value}\n</Directory>\n"
    )
    assert read_conf(text, "x.conf").deny_status == 403


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ("PythonOption imageguard.deny_status 410", "imageguard.deny_status"),
        ("PythonOption imageguard.max_age soon", "imageguard.max_age"),
        ("PythonOption imageguard.tkt_bind_ip maybe", "imageguard.tkt_bind_ip"),
    ],
)
def test_an_option_imageguard_refuses_is_a_failure_of_the_file(line: str, named: str) -> None:
    """The file's options are read with imageguard's own parsers: a value the server
    would refuse (every request a 500) is a FAIL of the file, and the doctor goes on with
    the option's default."""
    text = directory_block(EXAMPLE_SITE).replace("</Directory>", f"    {line}\n</Directory>")
    conf = read_conf(text, "x.conf")
    failures = [reason for verdict, reason in static_problems(conf) if verdict == "FAIL"]
    assert len(failures) == 1 and failures[0].startswith("x.conf: ") and named in failures[0]
    assert conf.setting(named) == BY_NAME[named].default
    assert static_problems(read_conf(directory_block(EXAMPLE_SITE), "x.conf")) == []
