"""Run every recipe of docs/cookbook.md on one private Apache, to try them by hand.

Usage, from the project root (the venv has Pillow, Pyramid and imageguard)::

    .venv/bin/python docs/examples/cookbook/serve_cookbook.py --port 8080

It makes a data folder under /tmp (sample images, the ACL stores made by each recipe's
``setup.sh`` with the real ``imageguard`` command, the sessions, a secret file),
fills the placeholders of every recipe's files, writes one self-contained httpd.conf
holding every recipe, starts the Pyramid application of recipe 8 on a port of its own
and runs Apache in the foreground on 127.0.0.1 until Ctrl-C. The system Apache in
/etc/apache2 is not touched. It prints the URLs to try and how to run each recipe's
``try.sh``.

The placeholders in the recipes' files:

* ``@DATA@``: the data folder (images, ``state/`` with stores, sessions, cache, secrets);
* ``@RECIPE@``: the recipe's own folder (where its handler modules are);
* ``@PYTHON_PATH@``: the directories holding imageguard and Pillow, as
  ``imageguard apache-conf`` writes them into its ``PythonPath`` line;
* ``@APP_PORT@``: the port of recipe 8's Pyramid application;
* ``@FRONT_PORT@``, ``@BACK_PORT@``: recipe 11's reverse proxy and the server behind it.

``--regenerate`` rewrites each recipe's generated files (``imageguard.conf``, ...)
from its ``generate.sh``, which runs ``imageguard apache-conf``; the test
``tests/integration/test_cookbook.py`` checks that they are up to date, builds its
servers with this module's functions, and runs every ``try.sh``.
"""

from __future__ import annotations

import argparse
import importlib.util
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from PIL import Image, ImageDraw

from imageguard.apache.apacheconf import python_path
from imageguard_devtools.localserver import (
    ApacheConfig,
    LocalApache,
    free_port,
    make_workdir,
    prepare_readable,
    prepare_writable,
)

#: The folder holding one sub-folder per recipe.
COOKBOOK = Path(__file__).resolve().parent

#: Modules the recipes need besides those every private server loads.
EXTRA_MODULES = ("proxy", "proxy_http", "remoteip")

#: Files a recipe keeps only to be read or compared, never mounted: recipe 2's is the
#: generator's block that its split.conf edits.
NOT_MOUNTED = frozenset({"02-split-phases/imageguard.conf"})

#: .htaccess files: recipe file -> the folders below the data folder it is copied to.
HTACCESS = {
    "01-extension-gate/as_posted.htaccess": ("01-extension-gate/posted",),
    "01-extension-gate/extension_gate.htaccess": (
        "01-extension-gate/fixed",
        "01-extension-gate/ignored",
    ),
    "02-split-phases/split.htaccess": ("02-split-phases/images",),
}

#: Sample images: path below the data folder -> (width, height, colour).
IMAGES: dict[str, tuple[int, int, str]] = {
    "01-extension-gate/posted/photo.jpg": (64, 48, "orange"),
    "01-extension-gate/fixed/photo.jpg": (64, 48, "orange"),
    "01-extension-gate/ignored/photo.jpg": (64, 48, "orange"),
    "02-split-phases/images/harbour.jpg": (96, 64, "steelblue"),
    "03-app-session/images/harbour.jpg": (96, 64, "steelblue"),
    "04-per-user/images/reports/plan.jpg": (96, 64, "olive"),
    "04-per-user/images/reports/q3.jpg": (96, 64, "teal"),
    "04-per-user/images/reports/salaries.jpg": (96, 64, "maroon"),
    "05-owner-folders/images/users/alice/cat.jpg": (96, 64, "pink"),
    "05-owner-folders/images/users/bob/boat.jpg": (96, 64, "navy"),
    "06-thumbnails/images/alice/sunrise.jpg": (1200, 900, "gold"),
    "06-thumbnails/images/bob/lake.png": (1000, 1000, "darkcyan"),
    "07-login-redirect/images/sea.jpg": (96, 64, "royalblue"),
    "08-tickets-pyramid/images/team/roadmap.jpg": (96, 64, "purple"),
    "08-tickets-pyramid/images/lobby.jpg": (96, 64, "tan"),
    "09-share-link/images/press/launch.jpg": (1200, 800, "crimson"),
    "09-share-link/images/press/draft.jpg": (96, 64, "grey"),
    "10-hide-with-404/images/cases/smith.jpg": (96, 64, "darkred"),
    "11-reverse-proxy/images/night.jpg": (640, 480, "midnightblue"),
}

#: Other sample files: path below the data folder -> bytes.
FILES: dict[str, bytes] = {
    "01-extension-gate/posted/notes.txt": b"private notes, not an image\n",
    "01-extension-gate/fixed/notes.txt": b"private notes, not an image\n",
    "01-extension-gate/ignored/notes.txt": b"private notes, not an image\n",
    "02-split-phases/images/notes.txt": b"private notes, not an image\n",
    "10-hide-with-404/images/cases/readme.txt": b"not an image\n",
    # HTML dressed as a JPEG: 415 for whom the rules let see it, 404 for the others.
    "10-hide-with-404/images/cases/upload.jpg": b"<html><script>alert(1)</script></html>\n",
}

#: Symbolic links: path below the data folder -> where it points.
LINKS = {
    # alice "shares" bob's picture from her own folder: decided as bob's picture.
    "05-owner-folders/images/users/alice/boat.jpg": "../bob/boat.jpg",
}

#: Empty folders: where an application's URLs are mapped, cache and sessions.
FOLDERS = (
    "03-app-session/app",
    "07-login-redirect/app",
    "10-hide-with-404/images/cases/old.jpg",  # a folder named like an image
    "state/sessions",
    "state/cache",
    "www",
)

#: URLs worth trying, with what they show (printed at start; "front:" on recipe 11's proxy).
TRY = [
    ("/posted-gate/notes.txt", "1: 500, the mailing list's handler returns None"),
    ("/fixed-gate/notes.txt", "1: 403, the fixed gate"),
    ("/split/notes.txt", "2: 403 from the .htaccess gate, before any login"),
    ("/myapp/", "3: the application (POST /myapp/login user=bob password=bob-secret)"),
    ("/members/harbour.jpg", "3: 401, then 200 once logged in"),
    ("/albums/reports/q3.jpg", "4: per-user rules"),
    ("/owners/users/alice/cat.jpg", "5: alice's folder"),
    ("/photos/alice/sunrise.jpg", "6: a 256-px thumbnail, the original for alice"),
    ("/private/sea.jpg", "7: a browser is sent to /account/login and back"),
    ("/pyramid/login", "8: the Pyramid application's login form"),
    ("/tickets/team/roadmap.jpg", "8: the image its ticket opens"),
    ("/shared/press/launch.jpg", "9: 401 without a share link"),
    ("/hidden/cases/smith.jpg", "10: 404 for whom may not see it"),
    ("front:/photos/night.jpg", "11: behind the reverse proxy"),
]


@dataclass
class Ports:
    """The ports of one cookbook server: Apache's main one, the Pyramid application's,
    and recipe 11's proxy (front) and server behind it (back)."""

    main: int = 0
    app: int = 0
    front: int = 0
    back: int = 0

    @classmethod
    def pick(cls, main: int = 0) -> Ports:
        """Free ports for what is not given (*main* 0: the server picks its own)."""
        return cls(main, free_port(), free_port(), free_port())


def recipes() -> list[Path]:
    """The recipe folders, in order (``01-extension-gate``, ...)."""
    return sorted(p for p in COOKBOOK.iterdir() if p.is_dir() and p.name[:2].isdigit())


def fill(text: str, recipe: Path, data: Path, ports: Ports) -> str:
    """*text* with every placeholder replaced (see the module's docstring)."""
    values = {
        "@DATA@": str(data),
        "@RECIPE@": str(recipe),
        "@PYTHON_PATH@": repr(python_path()),
        "@APP_PORT@": str(ports.app),
        "@FRONT_PORT@": str(ports.front),
        "@BACK_PORT@": str(ports.back),
    }
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def unfill(text: str, data: Path) -> str:
    """What :func:`fill` undoes for generated files: the data folder and the PythonPath."""
    return text.replace(repr(python_path()), "@PYTHON_PATH@").replace(str(data), "@DATA@")


def script_env(data: Path, **more: str) -> dict[str, str]:
    """The environment the recipes' shell scripts run in: ``DATA``, and this venv's
    ``imageguard`` first on ``PATH`` (nothing else: no IMAGEGUARD_DB from the caller)."""
    venv_bin = str(Path(sys.executable).parent)
    return {"PATH": f"{venv_bin}:/usr/bin:/bin", "LANG": "C.UTF-8", "DATA": str(data), **more}


def run_script(recipe: Path, name: str, data: Path, **more: str) -> str:
    """Run ``sh NAME`` in *recipe*'s folder; its output (an error if it fails)."""
    result = subprocess.run(
        ["sh", name],
        cwd=recipe,
        env=script_env(data, **more),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{recipe.name}/{name} failed: {result.stderr or result.stdout}")
    return result.stdout


def generated(recipe: Path, data: Path) -> dict[str, str]:
    """What the recipe's ``generate.sh`` writes (with *data* as the data folder), by name."""
    if not (recipe / "generate.sh").exists():
        return {}
    with tempfile.TemporaryDirectory() as out:
        run_script(recipe, "generate.sh", data, OUT=out)
        return {path.name: path.read_text() for path in sorted(Path(out).iterdir())}


def regenerate() -> list[Path]:
    """Rewrite every recipe's generated files from its ``generate.sh``; the files written."""
    data = Path("/tmp/imageguard-cookbook-data")  # any path: it is replaced by @DATA@
    written = []
    for recipe in recipes():
        for name, text in generated(recipe, data).items():
            (recipe / name).write_text(unfill(text, data))
            written.append(recipe / name)
    return written


def _picture(path: Path, size: tuple[int, int], colour: str) -> None:
    image = Image.new("RGB", size, colour)
    draw = ImageDraw.Draw(image)
    step = max(8, size[1] // 12)
    for row in range(0, size[1], step):  # some detail, so that files differ in size
        draw.text((4, row), path.stem, fill="white")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "PNG" if path.suffix == ".png" else "JPEG", quality=90)


def make_data(data: Path, ports: Ports) -> None:
    """The data folder: sample files, the secret file, the recipes' .htaccess copies,
    and the ACL stores each ``setup.sh`` makes with the real ``imageguard`` command;
    then everything readable by Apache's user and ``state/`` writable by it."""
    for relpath, (width, height, colour) in IMAGES.items():
        _picture(data / relpath, (width, height), colour)
    for relpath, content in FILES.items():
        (data / relpath).parent.mkdir(parents=True, exist_ok=True)
        (data / relpath).write_bytes(content)
    for relpath, target in LINKS.items():
        (data / relpath).symlink_to(target)
    for relpath in FOLDERS:
        (data / relpath).mkdir(parents=True, exist_ok=True)
    secret_file = data / "state" / "secrets"
    secret_file.write_text(secrets.token_urlsafe(32) + "\n")
    for source, folders in HTACCESS.items():
        recipe = COOKBOOK / source.split("/")[0]
        text = fill((COOKBOOK / source).read_text(), recipe, data, ports)
        for folder in folders:
            (data / folder / ".htaccess").write_text(text)
    run_setups(data)
    prepare_data(data)


def run_setups(data: Path) -> None:
    """Run every recipe's ``setup.sh`` (each makes its own store), all at once."""
    running = [
        (
            recipe,
            subprocess.Popen(
                ["sh", "setup.sh"],
                cwd=recipe,
                env=script_env(data),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
        )
        for recipe in recipes()
        if (recipe / "setup.sh").exists()
    ]
    failed = []
    for recipe, process in running:
        output, _ = process.communicate()
        if process.returncode != 0:
            failed.append(f"{recipe.name}/setup.sh: {output}")
    if failed:
        raise RuntimeError("\n".join(failed))


def prepare_data(data: Path) -> None:
    """Everything in *data* readable by Apache's user, ``state/`` writable by it, and
    the secret file readable by that user only."""
    prepare_readable(data)
    prepare_writable(data / "state")
    (data / "state" / "secrets").chmod(0o640)  # imageguard refuses one others may read


def copy_data(template: Path, data: Path) -> None:
    """A copy of a data folder :func:`make_data` made (faster than making another)."""
    shutil.copytree(template, data, symlinks=True)
    prepare_data(data)


def site_body(data: Path, ports: Ports) -> str:
    """The caller's part of httpd.conf: every recipe's mounted .conf files, filled."""
    parts = [
        "# Nothing is served outside the recipes' own folders (no Require grants www/).",
        f'DocumentRoot "{data / "www"}"',
    ]
    for recipe in recipes():
        for conf in sorted(recipe.glob("*.conf")):
            if f"{recipe.name}/{conf.name}" in NOT_MOUNTED:
                continue
            text = fill(conf.read_text(), recipe, data, ports)
            parts += ["", f"# ---- {recipe.name}/{conf.name}", text.strip()]
    return "\n".join(parts) + "\n"


def make_config(
    workdir: Path, mpm: str = "event", ports: Ports | None = None, template: Path | None = None
) -> ApacheConfig:
    """A work directory with the data folder (made, or copied from *template*), and the
    Apache configuration for it.

    ``python_path=[]``: every block names its own ``PythonPath``, so each recipe is
    proven complete as docs/cookbook.md shows it.
    """
    ports = ports or Ports.pick()
    data = workdir / "data"
    if template is None:
        data.mkdir()
        make_data(data, ports)
    else:
        copy_data(template, data)
    return ApacheConfig(
        workdir=workdir / f"apache-{mpm}",
        body=site_body(data, ports),
        mpm=mpm,
        port=ports.main,
        python_path=[],
        extra_modules=EXTRA_MODULES,
    )


# --------------------------------------------------------------------------- recipe 8


def load_module(path: Path) -> ModuleType:
    """Import a recipe's Python file (not in a package) by its path."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Pyramid's Configurator looks its caller up there
    spec.loader.exec_module(module)
    return module


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class TicketApp:
    """Recipe 8's Pyramid application on 127.0.0.1:*port*, served by wsgiref in a thread
    (in production: gunicorn, waitress or mod_wsgi, on this machine or another)."""

    def __init__(self, data: Path, port: int) -> None:
        module = load_module(COOKBOOK / "08-tickets-pyramid" / "ticketapp.py")
        factory: Callable[..., Any] = module.make_app
        app = factory(
            secret_file=str(data / "state" / "secrets"),
            acl_db=str(data / "state" / "08-tickets-pyramid.db"),
            secure_cookie=False,  # plain http on the loopback; True behind https
        )
        self.server: WSGIServer = make_server("127.0.0.1", port, app, handler_class=_QuietHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> TicketApp:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def try_commands(data: Path, ports: Ports, base: str) -> Iterator[str]:
    """How to run each recipe's try.sh against this server."""
    venv_bin = Path(sys.executable).parent
    front = f"http://127.0.0.1:{ports.front}"
    yield f'export PATH="{venv_bin}:$PATH" DATA={data} BASE={base} FRONT={front}'

    for recipe in recipes():
        if (recipe / "try.sh").exists():
            yield f"sh {recipe / 'try.sh'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--mpm", choices=["event", "prefork"], default="event")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--regenerate",
        action="store_true",
        help="rewrite the recipes' generated files from their generate.sh, and stop",
    )
    args = parser.parse_args(argv)
    if args.regenerate:
        for written in regenerate():
            print(f"wrote {written}")
        return 0
    workdir = make_workdir("imageguard-cookbook-")
    try:
        ports = Ports.pick(args.port)
        server = LocalApache(make_config(workdir, args.mpm, ports))
        data = workdir / "data"
        print(f"Data folder: {data}")
        for where, what in TRY:
            url = (
                f"http://127.0.0.1:{ports.front}{where.removeprefix('front:')}"
                if where.startswith("front:")
                else server.url(where)
            )
            print(f"  curl -i {url}    # {what}")
        print("Each recipe's try.sh, in another shell:")
        for line in try_commands(data, ports, server.base_url):
            print(f"  {line}")
        with TicketApp(data, ports.app):
            return server.run_foreground()
    finally:
        if args.keep:
            print(f"Kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
