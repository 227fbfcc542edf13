"""Run every example of docs/phases.md on a private Apache, to try them by hand.

Usage, from the project root (the venv has Pillow and imageguard)::

    .venv/bin/python docs/examples/serve_examples.py --port 8080

It creates a document root with sample files under /tmp, replaces @EXAMPLES@ and
@DOCROOT@ in every ``docs/examples/*.conf`` (and in the .htaccess example), writes a
self-contained httpd.conf and runs Apache in the foreground on 127.0.0.1 until Ctrl-C.
The system Apache in /etc/apache2 is not touched.

This file runs in the ordinary Python, not inside Apache. The test
``tests/integration/test_doc_examples.py`` builds its servers with the same functions,
so what you see here is what the test checks.
"""

from __future__ import annotations

import argparse
import shutil
import sys
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
]


def conf_files() -> list[Path]:
    """Every Apache snippet of the examples, in a stable order."""
    return sorted(EXAMPLES.glob("*.conf"))


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
    prepare_readable(docroot)


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
