"""Build the demo site: sample images, the ACL store, three users and Apache's config.

Layout of the work directory (recreated by :func:`build_demo`)::

    <workdir>/.imageguard-demo     marker: only such a directory is ever wiped
    <workdir>/images/...           the protected gallery, served at /images
    <workdir>/state/acl.db         the ACL store          } writable by Apache's user
    <workdir>/state/sessions/      mod_python FileSession }
    <workdir>/state/cache/         thumb and preview renditions }
    <workdir>/users.json           demo users: salted PBKDF2 hashes, session groups
    <workdir>/site/                DocumentRoot: every URL but /images goes to the app
    <workdir>/apache/              httpd.conf, logs/, run/, lock/

The Apache configuration is :func:`imageguard.apache.apacheconf.directory_block` for the images
(the snippet users paste) plus one ``<Directory>`` for the application
(:mod:`imageguard_devtools.demo.app`), both with the same FileSession settings.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from imageguard.apache.apacheconf import SiteConfig, directory_block
from imageguard.store import AclStore

from ..localserver import (
    ApacheConfig,
    LocalApache,
    prepare_readable,
    prepare_writable,
)

__all__ = [
    "APP_MODULE",
    "IMAGES",
    "MARKER",
    "RULES",
    "USERS",
    "DemoError",
    "DemoImage",
    "DemoSite",
    "DemoUser",
    "build_demo",
    "hash_password",
    "make_images",
]

#: The file that marks a directory as a demo work directory (safe to wipe).
MARKER = ".imageguard-demo"
#: The mod_python handler module of the demo application.
APP_MODULE = "imageguard_devtools.demo.app"
#: PBKDF2 work factor for the demo's password hashes.
PBKDF2_ITERATIONS = 100_000
IMAGE_SIZE = (1280, 960)
#: Drawn over previews: whoever leaks one is named on it.
WATERMARK = "imageguard demo · {user} · {date}"
IMAGES_URL = "/images"
LOGIN_URL = "/login"


class DemoError(Exception):
    """A problem building the demo that deserves one line, not a traceback."""


@dataclass(frozen=True)
class DemoUser:
    """A demo login. ``session_groups`` go into the session; the store may add more."""

    name: str
    password: str
    session_groups: tuple[str, ...]
    store_groups: tuple[str, ...]
    sees: str


@dataclass(frozen=True)
class DemoImage:
    """One generated sample image."""

    relpath: str
    title: str
    colours: tuple[str, str, str]
    angle: int


USERS: tuple[DemoUser, ...] = (
    DemoUser(
        "alice",
        "wonderland",
        session_groups=(),
        store_groups=("staff",),
        sees="public/, gallery/ originals (not draft), staff/, users/alice/",
    ),
    DemoUser(
        "bob",
        "builder",
        session_groups=(),
        store_groups=(),
        sees="public/, gallery/ as thumbnails (not draft), users/bob/",
    ),
    DemoUser(
        "carol",
        "christmas",
        session_groups=("editors",),
        store_groups=(),
        sees="public/, gallery/ as watermarked previews, draft in full, users/carol/",
    ),
)

#: (pattern, principal, level), in the order they are granted.
RULES: tuple[tuple[str, str, str], ...] = (
    ("public/", "anyone", "full"),
    # Logged in: a watermarked preview of the gallery; staff: the originals; bob: thumbnails.
    # At equal specificity user: outranks group:, which outranks authenticated.
    ("gallery/", "authenticated", "preview"),
    ("gallery/", "group:staff", "full"),
    ("gallery/", "user:bob", "thumb"),
    # An exact path outranks gallery/.
    ("gallery/draft.jpg", "authenticated", "deny"),
    ("gallery/draft.jpg", "group:editors", "full"),
    ("staff/", "group:staff", "full"),
    ("users/{user}/**", "authenticated", "full"),
)

IMAGES: tuple[DemoImage, ...] = (
    DemoImage("public/welcome.jpg", "Welcome", ("#1d2b64", "#f8cdda", "#ffd194"), 20),
    DemoImage("public/harbour.png", "Harbour", ("#0f2027", "#2c5364", "#9bd3e0"), 90),
    DemoImage("gallery/sunrise.jpg", "Sunrise", ("#42275a", "#f7797d", "#fbd786"), 0),
    DemoImage("gallery/forest.webp", "Forest", ("#0b3d20", "#3f8f4f", "#c6e8a0"), 60),
    DemoImage("gallery/ocean.png", "Ocean", ("#000c40", "#1565c0", "#7ee8fa"), 120),
    DemoImage("gallery/draft.jpg", "Draft", ("#232526", "#8e7dbe", "#f0e6ff"), 150),
    DemoImage("gallery/panorama.webp", "Panorama", ("#3a1c71", "#d76d77", "#ffaf7b"), 10),
    DemoImage("staff/roadmap.png", "Roadmap", ("#141e30", "#35577d", "#e0c3fc"), 45),
    DemoImage("staff/payroll.jpg", "Payroll", ("#3e1e00", "#c0832c", "#fff1c1"), 100),
    DemoImage("users/alice/holiday.jpg", "Alice's holiday", ("#005c97", "#36d1dc", "#fefbd8"), 30),
    DemoImage("users/bob/garden.webp", "Bob's garden", ("#134e5e", "#71b280", "#f9f586"), 75),
    DemoImage("users/carol/studio.png", "Carol's studio", ("#4b134f", "#c94b4b", "#ffd3a5"), 135),
)

_FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))


# --------------------------------------------------------------------------- images


def _font(
    size: int, *, bold: bool = False, mono: bool = False
) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    name = "DejaVuSansMono" if mono else "DejaVuSans"
    name += "-Bold.ttf" if bold else ".ttf"
    for directory in _FONT_DIRS:
        path = directory / name
        if path.exists():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def _gradient(size: tuple[int, int], angle: int, colours: Sequence[str]) -> Image.Image:
    """A three-colour linear gradient across *size* at *angle* degrees."""
    ramp = Image.linear_gradient("L").rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    side = int(256 / math.sqrt(2))  # the centre square never shows the rotated corners
    left = (ramp.width - side) // 2
    top = (ramp.height - side) // 2
    ramp = ramp.crop((left, top, left + side, top + side)).resize(size, Image.Resampling.BICUBIC)
    dark, middle, light = colours
    return ImageOps.colorize(ramp, black=dark, white=light, mid=middle).convert("RGBA")


def render_image(image: DemoImage, size: tuple[int, int] = IMAGE_SIZE) -> Image.Image:
    """Draw one sample picture: a gradient, soft shapes and a label naming it."""
    width, height = size
    rng = random.Random(image.relpath)
    canvas = _gradient(size, image.angle, image.colours)
    light = image.colours[2]

    glow = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(glow)
    for _ in range(14):  # bokeh
        radius = rng.randint(12, 70)
        x, y = rng.randint(0, width), rng.randint(0, height // 2 + 80)
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(255, 255, 255, 34))
    canvas = Image.alpha_composite(canvas, glow.filter(ImageFilter.GaussianBlur(3)))
    sun = Image.new("RGBA", size, (0, 0, 0, 0))
    sun_x, sun_y, sun_r = rng.randint(170, width - 170), rng.randint(110, 220), 80
    ImageDraw.Draw(sun).ellipse(
        (sun_x - sun_r, sun_y - sun_r, sun_x + sun_r, sun_y + sun_r), fill=light
    )
    canvas = Image.alpha_composite(canvas, sun)

    hills = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(hills)
    for layer in range(3):  # three rolling hills, darker towards the front
        base = height * (0.55 + 0.12 * layer)
        amplitude = 28 + 14 * layer
        phase = rng.uniform(0, math.tau)
        waves = rng.uniform(1.2, 2.6)
        points = [
            (x, base + amplitude * math.sin(phase + waves * math.tau * x / width))
            for x in range(0, width + 20, 20)
        ]
        shade = 40 + 50 * layer
        draw.polygon([(0, height), *points, (width, height)], fill=(0, 0, 0, shade))
    canvas = Image.alpha_composite(canvas, hills)

    folder = image.relpath.rpartition("/")[0]
    label = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(label)
    title_font = _font(64, bold=True)
    path_font = _font(28, mono=True)
    box = (36, height - 186, width - 36, height - 36)
    draw.rounded_rectangle(box, radius=22, fill=(0, 0, 0, 150))
    draw.text((64, height - 172), image.title, font=title_font, fill="white")
    draw.text((66, height - 88), image.relpath, font=path_font, fill=light)
    badge_font = _font(24, bold=True)
    badge = f"{folder}/"
    badge_width = int(draw.textlength(badge, font=badge_font))
    draw.rounded_rectangle(
        (width - badge_width - 76, 30, width - 36, 78), radius=20, fill=(255, 255, 255, 200)
    )
    draw.text((width - badge_width - 56, 40), badge, font=badge_font, fill=image.colours[0])
    canvas = Image.alpha_composite(canvas, label)
    return canvas.convert("RGB")


def make_images(root: Path, images: Sequence[DemoImage] = IMAGES) -> list[Path]:
    """Write every sample image under *root*; the format follows the extension."""
    written = []
    formats: dict[str, tuple[str, dict[str, Any]]] = {
        ".jpg": ("JPEG", {"quality": 86}),
        ".png": ("PNG", {"optimize": True}),
    }
    formats[".webp"] = ("WEBP", {"quality": 85})
    for image in images:
        path = root / image.relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt, params = formats[path.suffix]
        render_image(image).save(path, fmt, **params)
        written.append(path)
    return written


# --------------------------------------------------------------------------- users


def hash_password(password: str, salt: bytes, iterations: int = PBKDF2_ITERATIONS) -> str:
    """The hex PBKDF2-HMAC-SHA256 of *password* (what app.py compares against)."""
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations).hex()


def write_users(path: Path, users: Sequence[DemoUser] = USERS) -> None:
    """Store the demo users as salted hashes; the passwords themselves are not kept."""
    table = {}
    for user in users:
        salt = secrets.token_bytes(16)
        table[user.name] = {
            "salt": salt.hex(),
            "iterations": PBKDF2_ITERATIONS,
            "hash": hash_password(user.password, salt),
            "groups": list(user.session_groups),
            "store_groups": list(user.store_groups),
            "sees": user.sees,
        }
    path.write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- site


@dataclass
class DemoSite:
    """A built (not started) demo: ``server.start()``/``stop()`` or ``run_foreground()``."""

    workdir: Path
    server: LocalApache
    images: Path
    db: Path
    sessions: Path
    users_file: Path
    users: tuple[DemoUser, ...] = USERS
    rules: tuple[tuple[str, str, str], ...] = RULES

    @property
    def url(self) -> str:
        return self.server.url("/")

    @property
    def error_log(self) -> Path:
        return self.server.config.error_log

    @property
    def access_log(self) -> Path:
        return self.server.config.access_log

    def image_paths(self) -> list[str]:
        """Every image below the root, relative and sorted (what the gallery lists)."""
        return sorted(
            p.relative_to(self.images).as_posix() for p in self.images.rglob("*") if p.is_file()
        )


def _stop_leftover(workdir: Path) -> None:
    """Stop an Apache still running from a previous demo in *workdir* (e.g. killed -9)."""
    conf = workdir / "apache" / "httpd.conf"
    if not conf.exists():
        return
    leftover = LocalApache(ApacheConfig(workdir=workdir / "apache", port=1, python_path=[]))
    if leftover.is_running():
        leftover.stop()


def reset_workdir(workdir: Path) -> None:
    """Empty *workdir* (creating it if needed); refuse a non-empty non-demo directory."""
    if workdir.exists():
        if not workdir.is_dir():
            raise DemoError(f"{workdir} exists and is not a directory")
        if any(workdir.iterdir()) and not (workdir / MARKER).exists():
            raise DemoError(
                f"{workdir} is not empty and not a demo work directory ({MARKER} missing); "
                "not deleting it: choose another --workdir"
            )
        _stop_leftover(workdir)
        for entry in workdir.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o755)
    (workdir / MARKER).write_text("imageguard demo work directory: recreated by make demo\n")


def make_store(db: Path, rules: Sequence[tuple[str, str, str]] = RULES) -> None:
    """Create the ACL store with the demo rules and the store-side group memberships."""
    with AclStore.create(db) as store:
        for pattern, principal, level in rules:
            store.grant(pattern, principal, level)
        for user in USERS:
            for group in user.store_groups:
                store.add_member(group, user.name)


def app_block(docroot: Path, options: dict[str, str], session_options: Sequence[str]) -> str:
    """The application's ``<Directory>``: everything outside /images is the demo app."""
    lines = [f"    {line}" for line in session_options]
    lines += [f'    PythonOption {key} "{value}"' for key, value in options.items()]
    joined = "\n".join(lines)
    return f"""# The demo application (imageguard_devtools.demo.app): login, logout, gallery.
DocumentRoot {docroot}
<Directory {docroot}>
    Options -Indexes
    AllowOverride None
    Require all granted
    SetHandler mod_python
    PythonHandler {APP_MODULE}
    # The session cookie must reach /images too, so its path is /.
    PythonOption mod_python.session.application_path /
{joined}
</Directory>
"""


def build_demo(workdir: Path, port: int = 0, mpm: str = "event") -> DemoSite:
    """(Re)create the demo in *workdir* and return it, with its Apache not started.

    *port* 0 lets :mod:`imageguard_devtools.localserver` pick a free port.
    """
    workdir = Path(workdir).absolute()
    if any(ch.isspace() or ch in "\"'\\" for ch in str(workdir)):
        raise DemoError(f"the work directory must not contain spaces or quotes: {workdir}")
    reset_workdir(workdir)
    images = workdir / "images"
    state = workdir / "state"
    sessions = state / "sessions"
    docroot = workdir / "site"
    db = state / "acl.db"
    cache = state / "cache"
    users_file = workdir / "users.json"
    for directory in (images, sessions, cache, docroot):
        directory.mkdir(parents=True)
    make_images(images)
    make_store(db)
    write_users(users_file)
    prepare_readable(workdir)
    prepare_writable(state)  # sessions, renditions, SQLite's -wal/-shm: written by Apache

    site_config = SiteConfig(
        root=str(images),
        url_path=IMAGES_URL,
        acl_db=str(db),
        session_type="FileSession",
        session_directory=str(sessions),
        login_url=LOGIN_URL,
        cache_dir=str(cache),
        watermark=WATERMARK,
        # The demo shows Apache's phases one by one (its gallery page explains each);
        # a real site takes the one-phase default, which answers the same, faster.
        mode="three-phase",
    )
    app = app_block(
        docroot,
        {
            "imageguard_demo.images_root": str(images),
            "imageguard_demo.images_url": IMAGES_URL,
            "imageguard_demo.acl_db": str(db),
            "imageguard_demo.users_file": str(users_file),
        },
        [
            "PythonOption mod_python.session.session_type FileSession",
            f"PythonOption mod_python.file_session.database_directory {sessions}",
        ],
    )
    body = f"{app}\n{directory_block(site_config)}"
    config = ApacheConfig(workdir=workdir / "apache", body=body, port=port, mpm=mpm)
    return DemoSite(
        workdir=workdir,
        server=LocalApache(config),
        images=images,
        db=db,
        sessions=sessions,
        users_file=users_file,
    )
