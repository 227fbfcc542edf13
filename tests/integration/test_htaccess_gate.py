"""The ``.htaccess``-only gate as the README tells a reader to make it: what
``imageguard apache-conf --htaccess`` prints, saved as the directory's ``.htaccess``, on
a server whose own configuration does not know where imageguard is (no ``PythonPath``):
it works by itself; without its ``PythonPath`` line every request is a 500, never a file;
under ``AllowOverride None`` Apache ignores it and serves everything, which is why the
generated comment, the README and ``imageguard doctor`` warn about it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from imageguard_devtools.localserver import (
    ApacheConfig,
    LocalApache,
    make_workdir,
    prepare_readable,
)

from .conftest import CLI, MPMS, needs_apache
from .httpfetch import fetch

pytestmark = needs_apache()

#: The lines of the generated .htaccess that say where imageguard is installed.
PATH_LINES = ("# Where imageguard", "# without it every request", "PythonPath ")


def _generated_htaccess(folder: Path) -> str:
    result = subprocess.run(
        [*CLI, "apache-conf", "--htaccess", "--root", str(folder)],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


@pytest.fixture(scope="module", params=MPMS)
def server(request: pytest.FixtureRequest) -> Iterator[LocalApache]:
    workdir = make_workdir(f"imageguard-htgate-{request.param}-")
    body = []
    for name, override in (("with-path", "All"), ("without-path", "All"), ("ignored", "None")):
        folder = workdir / name
        folder.mkdir()
        Image.new("RGB", (8, 8), "green").save(folder / "a.jpg", "JPEG")
        (folder / "a.txt").write_text("not an image\n")
        text = _generated_htaccess(folder)
        if name == "without-path":
            text = "".join(
                line for line in text.splitlines(keepends=True) if not line.startswith(PATH_LINES)
            )
        (folder / ".htaccess").write_text(text)
        # Each directory gets an interpreter of its own: a PythonPath that one .htaccess
        # set must not make the other work by chance in the same process.
        body.append(
            f'Alias /{name} "{folder}"\n<Directory "{folder}">\n    Require all granted\n'
            f"    AllowOverride {override}\n    PythonInterpreter {name}\n</Directory>"
        )
    prepare_readable(workdir)
    # python_path=[]: the server's own configuration does not know where imageguard is.
    config = ApacheConfig(workdir, body="\n".join(body), mpm=request.param, python_path=[])
    apache = LocalApache(config).start()
    try:
        yield apache
    finally:
        apache.stop()


def test_the_generated_htaccess_names_this_installation() -> None:
    text = _generated_htaccess(Path("/srv/images"))
    path_line = next(line for line in text.splitlines() if line.startswith("PythonPath "))
    assert "site-packages" in path_line or "/src'" in path_line
    assert "AllowOverrideList PythonAccessHandler PythonFixupHandler" in text


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/with-path/a.jpg", 200),
        ("/with-path/a.txt", 403),
        ("/with-path/a.jpg/x.txt", 403),
        ("/without-path/a.jpg", 500),
        ("/without-path/a.txt", 500),
        ("/ignored/a.jpg", 200),
        ("/ignored/a.txt", 200),  # AllowOverride None: the gate does not run at all
    ],
)
def test_the_htaccess_gate(server: LocalApache, path: str, status: int) -> None:
    response = fetch(server.port, path)
    assert response[0] == status, (path, response[0], response[2][:200])
    if status == 500:
        assert b"not an image" not in response[2]
