"""Run every example of docs/phases.md on a private Apache, to try them by hand.

Usage, from the project root (the venv has Pillow and imageguard)::

    .venv/bin/python docs/examples/serve_examples.py --port 8080

It creates a document root with sample files under /tmp, replaces @EXAMPLES@ and
@DOCROOT@ in every ``.conf`` snippet of docs/phases.md (and in the .htaccess example),
writes a self-contained httpd.conf (with mod_include, mod_autoindex and mod_cache loaded
for the examples that need them) and runs Apache in the foreground on 127.0.0.1 until
Ctrl-C. The system Apache in /etc/apache2 is not touched.

This file runs in the ordinary Python, not inside Apache. The test
``tests/integration/test_doc_examples.py`` builds its servers with the same functions,
so what you see here is what the test checks.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw

from imageguard_devtools.localserver import (
    ApacheConfig,
    LocalApache,
    make_workdir,
    prepare_readable,
)

#: The directory holding the handler modules and their .conf snippets.
EXAMPLES = Path(__file__).resolve().parent

#: URLs worth trying, with what they show (printed at start).
TRY = [
    ("/trace/hello.txt", "phases of a request without login"),
    ("/trace/login/hello.txt", "the same with AuthType/Require: authen and authz run"),
    ("/gate/photo.jpg", "200: an image"),
    ("/gate/notes.txt", "403: not an image"),
    ("/gate-by-uri/notes.txt/x.jpg", "200: the wrong gate lets notes.txt out"),
    ("/toy/alice.jpg", "401 without the X-Demo-User header"),
    ("/swap/draft-sunset.jpg", "placeholder.jpg instead of the draft"),
    ("/located-trace/hello.txt", "a <Location>: no file name, <Directory> ignored"),
    ("/envgate/open.jpg", "200: admitted, DEMO_ADMITTED set, Require env passes"),
    ("/envgate/secret.jpg", "403 (try -H 'X-Demo-User: alice')"),
    ("/envgate/page.shtml", "server-side includes: which subrequests are checked"),
    ("/envgate-nofixup/other.jpg", "403, but the body is secret.jpg (ErrorDocument)"),
    ("/cache-plain/secret.jpg", "as alice, then anonymous: served from mod_cache"),
]

#: Modules the examples need besides those every test server loads.
MODULES = ("include", "autoindex", "cache", "cache_socache", "socache_shmcb")

#: How old the cached examples' files are: mod_cache keeps a response without an
#: expiry time for a tenth of its file's age (CacheLastModifiedFactor).
FILE_AGE = 2 * 3600


#: The files of docs/phases.md's examples. Other pages keep configuration files here too
#: (docs/deployment.md's access_log.conf, say), which their own tests run.
PHASES_EXAMPLES = (
    "authen_header.conf",
    "authen_header.py",
    "cache_gate.conf",
    "env_gate.conf",
    "env_gate.py",
    "gate_by_extension.conf",
    "gate_by_extension.htaccess",
    "gate_by_extension.py",
    "location_trap.conf",
    "swap_file.conf",
    "swap_file.py",
    "trace_phases.conf",
    "trace_phases.py",
)


def conf_files() -> list[Path]:
    """Every Apache snippet of docs/phases.md's examples, in a stable order."""
    return sorted(EXAMPLES / name for name in PHASES_EXAMPLES if name.endswith(".conf"))


def substitute(text: str, docroot: Path) -> str:
    """Fill the two placeholders the snippets use."""
    return text.replace("@EXAMPLES@", str(EXAMPLES)).replace("@DOCROOT@", str(docroot))


def _jpeg(path: Path, size: tuple[int, int], colour: str, label: str = "") -> None:
    image = Image.new("RGB", size, colour)
    if label:
        draw = ImageDraw.Draw(image)
        for row in range(0, size[1], 12):  # enough detail to make a bigger file
            draw.text((4, row), label, fill="white")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=90)


def make_docroot(docroot: Path) -> None:
    """The sample files every example serves."""
    for name in ("trace/hello.txt", "trace/login/hello.txt"):
        path = docroot / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("hello from a static file\n")
    for directory in ("gate", "gate-by-uri", "gate-ht"):
        _jpeg(docroot / directory / "photo.jpg", (64, 48), "orange")
        (docroot / directory / "notes.txt").write_text("private notes, not an image\n")
    htaccess = (EXAMPLES / "gate_by_extension.htaccess").read_text()
    (docroot / "gate-ht" / ".htaccess").write_text(substitute(htaccess, docroot))
    for directory in ("toy", "toy-strict"):
        _jpeg(docroot / directory / "alice.jpg", (64, 48), "pink")
        _jpeg(docroot / directory / "team.jpg", (64, 48), "teal")
        _jpeg(docroot / directory / "open.jpg", (64, 48), "green")
    for directory in ("swap", "swap-no-finfo"):
        _jpeg(docroot / directory / "draft-sunset.jpg", (32, 24), "red")
        _jpeg(docroot / directory / "sunset.jpg", (64, 48), "yellow")
        _jpeg(docroot / directory / "placeholder.jpg", (320, 240), "grey", "not published yet")
        # A draft bigger than the placeholder (to show the other failure without finfo).
        _jpeg(docroot / directory / "draft-poster.jpg", (640, 480), "navy", "draft poster")
    _text(docroot / "located-trace" / "hello.txt", "hello from a static file\n")
    _env_gate_files(docroot)
    prepare_readable(docroot)


def _text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _env_gate_files(docroot: Path) -> None:
    """env_gate.conf's and cache_gate.conf's directories."""
    for directory in ("envgate", "envgate-nofixup"):
        _jpeg(docroot / directory / "open.jpg", (64, 48), "green")
        _jpeg(docroot / directory / "secret.jpg", (64, 48), "black", "secret")
        _jpeg(docroot / directory / "other.jpg", (64, 48), "purple")
        _text(docroot / directory / "notes.txt", f"{directory} notes: for alice only\n")
        _text(
            docroot / directory / "page.shtml",
            '<p>same folder: <!--#include virtual="notes.txt" --></p>\n'
            '<p>handler lost: <!--#include virtual="/envgate-nohandler/notes.txt" --></p>\n',
        )
    _text(docroot / "envgate-nohandler" / "notes.txt", "envgate-nohandler notes: nobody\n")
    _text(
        docroot / "envgate-pages" / "page.shtml",
        '<p>gated: <!--#include virtual="/envgate/notes.txt" --></p>\n'
        '<p>handler lost: <!--#include virtual="/envgate-nohandler/notes.txt" --></p>\n',
    )
    past = time.time() - FILE_AGE
    for directory in ("cache-plain", "cache-private", "cache-storeprivate"):
        _jpeg(docroot / directory / "secret.jpg", (64, 48), "black", "secret")
        os.utime(docroot / directory / "secret.jpg", (past, past))


def site_body(docroot: Path) -> str:
    """The caller's part of httpd.conf: the document root and every example snippet."""
    parts = [
        f'DocumentRoot "{docroot}"',
        f'<Directory "{docroot}">',
        "    Require all granted",
        "</Directory>",
    ]
    for conf in conf_files():
        parts += ["", f"# ---- {conf.name}", substitute(conf.read_text(), docroot)]
    return "\n".join(parts) + "\n"


def make_config(workdir: Path, mpm: str = "event", port: int = 0) -> ApacheConfig:
    """A work directory with the document root, and the Apache configuration for it.

    ``python_path=[]``: each snippet names the examples directory itself, so the
    snippets are proven complete as they are printed in docs/phases.md.
    """
    docroot = workdir / "docroot"
    make_docroot(docroot)
    return ApacheConfig(
        workdir=workdir / f"apache-{mpm}",
        body=site_body(docroot),
        mpm=mpm,
        port=port,
        python_path=[],
        extra_modules=MODULES,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--mpm", choices=["event", "prefork"], default="event")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    workdir = make_workdir("imageguard-examples-")
    try:
        server = LocalApache(make_config(workdir, args.mpm, args.port))
        print(f"Work directory: {workdir}")
        for path, what in TRY:
            print(f"  curl -i {server.url(path)}    # {what}")
        return server.run_foreground()
    finally:
        if args.keep:
            print(f"Kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
