"""Draw imageguard's architecture: its modules grouped by concern, the imports between
the concerns, and the path of one request (docs/images/architecture.svg).

    python3 tools/architecture.py           # write docs/images/architecture.svg
    python3 tools/architecture.py --check   # exit 1 if the committed drawing is stale

The modules and their imports are read from src/imageguard with :mod:`ast` (nothing is
imported); the concerns are the table :data:`CONCERNS` below, each one the subpackage
of its name (plus, for some, modules at the package's top level). A module that is in no
concern, or in two, or in another concern than its subpackage's, or a concern naming a
module that does not exist, stops the script with an error: the drawing cannot silently
fall behind the code. The SVG is laid out by
hand (fixed coordinates computed here, standard library only), so it is byte-for-byte
the same on every machine.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

PROJECT = Path(__file__).resolve().parents[1]
PACKAGE = PROJECT / "src" / "imageguard"
OUTPUT = PROJECT / "docs" / "images" / "architecture.svg"


@dataclass(frozen=True)
class Concern:
    name: str
    title: str
    modules: tuple[str, ...]
    fill: str
    stroke: str


#: Every module of the package, by concern, in the order they are drawn: by dotted name
#: below imageguard. A concern is the subpackage of its name (all of its modules; its
#: ``__init__`` and ``__main__`` belong to it without being listed), and may also hold
#: modules of the package's top level. The pure core (policy, identity, files, store,
#: shared) imports no mod_python; shared imports no other concern.
CONCERNS = (
    Concern(
        "cli",
        "cli/: commands",
        (
            "cli.commandline",
            "cli.commands",
            "cli.imagecommands",
            "cli.doctor",
            "cli.doctorconf",
            "cli.progress",
        ),
        "#f2f2f2",
        "#6b6b6b",
    ),
    Concern(
        "apache",
        "apache/ and the modules Apache names",
        (
            "handlers",
            "gatekeeper",
            "apache.adapters",
            "apache.runtime",
            "apache.settings",
            "apache.options",
            "apache.names",
            "apache.apacheconf",
            "apache.install",
            "__init__",
        ),
        "#fff1dc",
        "#d07000",
    ),
    Concern(
        "store",
        "store/: SQLite or PostgreSQL",
        (
            "store.cached",
            "store.freshness",
            "store.aclstore",
            "store.exchange",
            "store.migrate",
            "store.storage",
            "store.location",
            "store.sqlite",
            "store.stamp",
            "store.postgres",
            "store.listener",
        ),
        "#fbf5d5",
        "#a08000",
    ),
    Concern(
        "identity",
        "identity/: who is asking",
        (
            "identity.logins",
            "identity.sessions",
            "identity.tickets",
            "identity.cookies",
            "identity.sharelinks",
            "identity.signer",
            "identity.secretfile",
        ),
        "#f1e9f9",
        "#7a4cad",
    ),
    Concern(
        "policy",
        "policy/: who may see what",
        (
            "policy.decision",
            "policy.acl",
            "policy.variants",
            "policy.levels",
            "policy.principals",
            "policy.patterns",
        ),
        "#e7effa",
        "#3565a8",
    ),
    Concern(
        "files",
        "files/: which bytes are sent",
        (
            "files.gate",
            "files.beneath",
            "files.content",
            "files.fileversion",
            "files.renditioncache",
            "files.renditions",
            "files.placeholder",
        ),
        "#e5f4e9",
        "#2c8548",
    ),
    Concern(
        "support",
        "support/ and errors: shared",
        ("errors", "support.boundedcache", "support.safetext", "support.durations"),
        "#e6f3f3",
        "#2a7f7f",
    ),
)

#: The concerns of the pure core: none of their modules may import mod_python.
PURE_CORE = ("policy", "identity", "files", "store", "support")
#: Imported by everyone and importing no other concern: drawn without arrows.
LEAF = "support"
#: The two rows of concerns (left to right); the leaf concern is a bar below them.
ROWS = (("cli", "apache", "store"), ("identity", "policy", "files"))

APACHE_FILL, APACHE_STROKE = "#ffffff", "#1d2b3a"


@dataclass(frozen=True)
class Step:
    number: int
    call: str  # what runs (monospace)
    what: str  # what it does (one short line)
    concern: str  # colour; "" for Apache itself
    modules: tuple[str, ...] = ()  # the modules it runs in (badges on the map)
    inner: bool = False  # a step of decision.decide (indented)


#: The path of one request through the one-phase configuration (docs/architecture.md
#: describes the same steps, with the same numbers).
STEPS = (
    Step(1, "Apache", "maps the URL to a file (req.finfo), runs the access phase", ""),
    Step(
        2,
        "gatekeeper.accesshandler",
        "trampoline: imports adapters at its first call",
        "apache",
        ("gatekeeper", "handlers"),
    ),
    Step(
        3,
        "adapters.gatekeeper",
        "schedules the fixup; runtime_for: the configuration",
        "apache",
        ("apache.adapters", "apache.runtime", "apache.settings", "apache.options"),
    ),
    Step(
        4,
        "adapters._facts",
        "Facts: method, file, query, cookies, client, Accept",
        "apache",
        ("apache.adapters",),
    ),
    Step(
        5,
        "decision.decide",
        "the whole policy, no mod_python: steps 6 to 9",
        "policy",
        ("policy.decision",),
    ),
    Step(
        6,
        "decision._gate",
        "gate.Gate: checks; opens the file, no link followed",
        "files",
        ("files.gate", "files.beneath", "files.fileversion"),
        inner=True,
    ),
    Step(
        7,
        "decision._login",
        "the LoginSource: session or ticket",
        "identity",
        ("identity.logins", "identity.sessions", "identity.tickets", "identity.cookies"),
        inner=True,
    ),
    Step(
        8,
        "decision._acl",
        "store.CachedAcl: the rules; a share link",
        "store",
        (
            "store.cached",
            "store.freshness",
            "store.stamp",
            "store.listener",
            "store.aclstore",
            "policy.acl",
            "policy.patterns",
            "policy.principals",
            "identity.sharelinks",
        ),
        inner=True,
    ),
    Step(
        9,
        "decision._authorize",
        "variants.choose: the original or a rendition",
        "policy",
        (
            "policy.variants",
            "files.content",
            "files.renditioncache",
            "files.renditions",
            "files.placeholder",
        ),
        inner=True,
    ),
    Step(
        10,
        "decision.Outcome",
        "admit, redirect or refuse: status, headers, log line",
        "policy",
        ("policy.decision",),
    ),
    Step(
        11,
        "adapters._apply",
        "req.user, headers, log; req.filename = /proc/self/fd/N",
        "apache",
        ("apache.adapters",),
    ),
    Step(12, "Apache: authorization", "Require env IMAGEGUARD_ADMITTED, in C", ""),
    Step(
        13,
        "adapters.fixuphandler",
        "admitted, same file, same type, no other handler?",
        "apache",
        ("handlers", "apache.adapters"),
    ),
    Step(14, "Apache's file handler", "sends the bound descriptor; cleanup closes it", ""),
)


class ArchitectureError(Exception):
    """The package and the table of concerns disagree."""


# --------------------------------------------------------------------------- reading


def package_modules() -> dict[str, Path]:
    """Module name -> its source file, for every ``*.py`` of the package. Names are
    dotted below ``imageguard`` (``policy.acl``); a subpackage's ``__init__`` is named
    after the subpackage (``store``), the package's own is ``__init__``."""
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if len(parts) > 1 and parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def short_name(module: str) -> str:
    """What the drawing and the pages call *module*: its last name (``acl``)."""
    return module.rpartition(".")[2]


def _home(module: str, path: Path) -> list[str]:
    """The package a module's relative imports start from, as names below imageguard."""
    parts = [] if module == "__init__" else module.split(".")
    return parts if path.name == "__init__.py" else parts[:-1]


def _rides_along(module: str, path: Path) -> bool:
    """A subpackage's ``__init__`` or ``__main__``: in its subpackage's concern unlisted."""
    if path.stem == "__main__":
        return "." in module
    return path.stem == "__init__" and module != "__init__"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of *tree* except the bodies of ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _dunder_import(node: ast.AST) -> tuple[str, int] | None:
    """``__import__("name", globals(), None, (...), level)``: (name, level)."""
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "__import__"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return None
    level: object = 0
    if len(node.args) >= 5 and isinstance(node.args[4], ast.Constant):
        level = node.args[4].value
    for keyword in node.keywords:
        if keyword.arg == "level" and isinstance(keyword.value, ast.Constant):
            level = keyword.value.value
    return node.args[0].value, level if isinstance(level, int) else 0


def _import_targets(node: ast.AST) -> Iterator[tuple[int, str, list[str]]]:
    """(level, module, names) of each import *node* makes; level 0 is absolute."""
    if isinstance(node, ast.ImportFrom):
        yield node.level, node.module or "", [a.name for a in node.names]
    elif isinstance(node, ast.Import):
        for alias in node.names:
            yield 0, alias.name, []
    else:
        dunder = _dunder_import(node)
        if dunder is not None:
            yield dunder[1], dunder[0], []


def imports_of(name: str, path: Path, modules: Collection[str]) -> set[str]:
    """The package's modules that module *name* (in the file at *path*) imports at run
    time, not itself: ``from X import a`` counts as importing ``X.a`` when that is a
    module, ``X`` otherwise (the package itself, ``imageguard``, is ``__init__``)."""
    home = _home(name, path)
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        for level, module, names in _import_targets(node):
            if level == 0:
                head, _, rest = module.partition(".")
                if head != "imageguard":
                    continue
                base = rest.split(".") if rest else []
            elif level - 1 > len(home):
                continue  # above imageguard
            else:
                base = home[: len(home) - (level - 1)] + (module.split(".") if module else [])
            dotted = ".".join(base) or "__init__"
            for alias in names or [""]:
                inner = f"{'.'.join(base)}.{alias}".lstrip(".")
                found.add(inner if alias and inner in modules else dotted)
    found.discard(name)
    return found & set(modules)


def concern_of() -> dict[str, str]:
    """Module -> concern; an :class:`ArchitectureError` unless every module of the
    package is in exactly one concern, a subpackage's modules all in the concern named
    after it (its ``__init__`` and ``__main__`` need not be listed), every concern's
    module exists, and no two modules share a short name."""
    modules = package_modules()
    names = {c.name for c in CONCERNS}
    owner: dict[str, str] = {}
    problems = []
    for concern in CONCERNS:
        for module in concern.modules:
            if module in owner:
                problems.append(f"{module} is in both {owner[module]} and {concern.name}")
            owner[module] = concern.name
            if module not in modules:
                problems.append(f"{concern.name} names {module}, which is not in the package")
            elif "." in module and module.split(".")[0] != concern.name:
                problems.append(
                    f"{module} is in {concern.name}, but its subpackage is "
                    f"{module.split('.')[0]}/: each subpackage is one concern"
                )
    for module, path in modules.items():
        if module in owner or not _rides_along(module, path):
            continue
        package = module.split(".")[0]
        if package in names:
            owner[module] = package
        else:
            problems.append(f"the subpackage {package}/ is no concern: add it to CONCERNS")
    problems += [
        f"{module} is in no concern: add it to CONCERNS in tools/architecture.py"
        for module in sorted(modules)
        if module not in owner
    ]
    seen: dict[str, str] = {}
    for module, path in modules.items():
        if module == "__init__" or path.stem == "__main__":
            continue
        other = seen.setdefault(short_name(module), module)
        if other != module:
            problems.append(f"{other} and {module} share a name: the pages name modules by it")
    placed = [name for row in ROWS for name in row] + [LEAF]
    if sorted(placed) != sorted(names):
        problems.append(f"ROWS and LEAF place {placed}, the concerns are different")
    if problems:
        raise ArchitectureError("; ".join(sorted(set(problems))))
    return owner


def module_imports() -> dict[str, set[str]]:
    """Module -> the package's modules it imports at run time."""
    modules = package_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def concern_imports() -> dict[tuple[str, str], int]:
    """(importer, imported) concern -> how many module imports make it up."""
    owner = concern_of()
    edges: dict[tuple[str, str], int] = {}
    for module, imported in module_imports().items():
        for other in imported:
            key = (owner[module], owner[other])
            if key[0] != key[1]:
                edges[key] = edges.get(key, 0) + 1
    leaking = sorted(f"{a} -> {b}" for a, b in edges if a == LEAF)
    if leaking:
        raise ArchitectureError(
            f"{LEAF} must import no other concern (it is drawn without arrows): {leaking}"
        )
    return edges


# --------------------------------------------------------------------------- drawing

WIDTH, HEIGHT = 1400, 790
SANS = "DejaVu Sans, Helvetica, Arial, sans-serif"
MONO = "DejaVu Sans Mono, Menlo, Consolas, monospace"
MONO_W = 0.602  # DejaVu Sans Mono's advance, per pixel of font size
INK, MUTED = "#1d2b3a", "#555555"

MAP_X, MAP_W = 20, 880
MOD_W, MOD_H, MOD_GAP_X, MOD_GAP_Y = 118, 26, 10, 9
PAD, TITLE_H = 12, 32
ROW_TOP = (118, 372)
ROW_COLUMNS = {"cli": 1, "apache": 3, "store": 2, "identity": 2, "policy": 2, "files": 2}
LEAF_TOP = 618
LANE_X, LANE_W = 930, 450
STEP_TOP, STEP_PITCH, STEP_H = 104, 47, 36


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def bottom(self) -> float:
        return self.y + self.h


def _f(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


class Svg:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def add(self, text: str) -> None:
        self.parts.append(text)

    def rect(self, box: Box, fill: str, stroke: str, width: float = 1.5, rx: float = 6) -> None:
        self.add(
            f'<rect x="{_f(box.x)}" y="{_f(box.y)}" width="{_f(box.w)}" height="{_f(box.h)}" '
            f'rx="{_f(rx)}" fill="{fill}" stroke="{stroke}" stroke-width="{_f(width)}"/>'
        )

    def text(
        self,
        x: float,
        y: float,
        content: str,
        *,
        size: float = 12,
        fill: str = INK,
        mono: bool = False,
        bold: bool = False,
        anchor: str = "start",
    ) -> None:
        attrs = f'x="{_f(x)}" y="{_f(y)}" font-size="{_f(size)}" fill="{fill}"'
        if mono:
            attrs += f' font-family="{MONO}"'
        if bold:
            attrs += ' font-weight="bold"'
        if anchor != "start":
            attrs += f' text-anchor="{anchor}"'
        self.add(f"<text {attrs}>{escape(content)}</text>")

    def path(self, points: list[tuple[float, float]], colour: str, marker: str) -> None:
        d = " ".join(f"{'M' if i == 0 else 'L'}{_f(x)},{_f(y)}" for i, (x, y) in enumerate(points))
        self.add(
            f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="1.6" '
            f'stroke-linejoin="round" marker-end="url(#{marker})"/>'
        )


def _concerns() -> dict[str, Concern]:
    return {c.name: c for c in CONCERNS}


def _layout() -> dict[str, Box]:
    """Each concern's box."""
    boxes: dict[str, Box] = {}
    for row, top in zip(ROWS, ROW_TOP):
        widths = []
        heights = []
        for name in row:
            columns = ROW_COLUMNS[name]
            rows = -(-len(_concerns()[name].modules) // columns)
            widths.append(2 * PAD + columns * MOD_W + (columns - 1) * MOD_GAP_X)
            heights.append(TITLE_H + rows * MOD_H + (rows - 1) * MOD_GAP_Y + PAD)
        gap = (MAP_W - sum(widths)) / (len(row) - 1)
        x = float(MAP_X)
        for name, w in zip(row, widths):
            boxes[name] = Box(x, top, w, max(heights))
            x += w + gap
    boxes[LEAF] = Box(MAP_X, LEAF_TOP, MAP_W, TITLE_H + MOD_H + PAD)
    return boxes


def _module_boxes(boxes: dict[str, Box]) -> dict[str, Box]:
    placed: dict[str, Box] = {}
    for concern in CONCERNS:
        box = boxes[concern.name]
        if concern.name == LEAF:
            x0 = box.x + 300
            for i, module in enumerate(concern.modules):
                placed[module] = Box(
                    x0 + i * (MOD_W + MOD_GAP_X), box.y + TITLE_H - 6, MOD_W, MOD_H
                )
            continue
        columns = ROW_COLUMNS[concern.name]
        for i, module in enumerate(concern.modules):
            col, row = i % columns, i // columns
            placed[module] = Box(
                box.x + PAD + col * (MOD_W + MOD_GAP_X),
                box.y + TITLE_H + row * (MOD_H + MOD_GAP_Y),
                MOD_W,
                MOD_H,
            )
    return placed


def _ranges(numbers: list[int]) -> str:
    """1, 2, 3, 5 -> "1-3, 5"."""
    out: list[str] = []
    start = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        out.append(str(start) if start == prev else f"{start}\u2013{prev}")
        if n is not None:
            start = prev = n
    return ",".join(out)


def _draw_imports(svg: Svg, boxes: dict[str, Box], edges: dict[tuple[str, str], int]) -> None:
    """The imports between concerns: a straight arrow between neighbours in a row,
    otherwise an orthogonal route through the gutter above, between or below the rows."""
    colour = {c.name: c.stroke for c in CONCERNS}
    row_of = {name: r for r, row in enumerate(ROWS) for name in row}
    drawn = sorted(
        ((a, b) for a, b in edges if LEAF not in (a, b)),
        key=lambda e: (row_of[e[0]], ROWS[row_of[e[0]]].index(e[0]), e[1]),
    )
    # Ports: each box side holds its attachments, spread evenly in a stable order.
    sides: dict[tuple[str, str], list[tuple[str, str]]] = {}
    routes: list[tuple[str, str, str]] = []  # (a, b, kind)
    for a, b in drawn:
        ra, rb = row_of[a], row_of[b]
        if ra == rb:
            ia, ib = ROWS[ra].index(a), ROWS[rb].index(b)
            if abs(ia - ib) == 1:
                routes.append((a, b, "beside"))
                continue
            side = "top" if ra == 0 else "bottom"
            sides.setdefault((a, side), []).append(("out", a))
            sides.setdefault((b, side), []).append(("in", a))
            routes.append((a, b, side))
        else:
            out_side, in_side = ("bottom", "top") if ra < rb else ("top", "bottom")
            sides.setdefault((a, out_side), []).append(("out", a))
            sides.setdefault((b, in_side), []).append(("in", a))
            routes.append((a, b, "across"))
    ports: dict[tuple[str, str, tuple[str, str]], float] = {}
    for (name, side), keys in sides.items():
        unique = sorted(set(keys), key=lambda k: (boxes[k[1]].x, k[0]))
        box = boxes[name]
        for i, key in enumerate(unique):
            ports[(name, side, key)] = box.x + box.w * (i + 1) / (len(unique) + 1)
    across_sources = sorted(
        {a for a, _, kind in routes if kind == "across"}, key=lambda n: boxes[n].x
    )
    gutter_top = max(boxes[n].bottom for n in ROWS[0])
    gutter_bottom = min(boxes[n].y for n in ROWS[1])
    lane_step = (gutter_bottom - gutter_top) / (len(across_sources) + 1)
    lane = {name: gutter_top + lane_step * (i + 1) for i, name in enumerate(across_sources)}
    for a, b, kind in routes:
        ba, bb = boxes[a], boxes[b]
        if kind == "beside":
            left_to_right = ba.x < bb.x
            y = ba.y + ba.h / 2 + (-8 if left_to_right else 8)
            x1, x2 = (ba.right, bb.x) if left_to_right else (ba.x, bb.right)
            svg.path([(x1, y), (x2, y)], colour[a], f"arrow-{a}")
        elif kind == "across":
            down = ba.y < bb.y
            x1 = ports[(a, "bottom" if down else "top", ("out", a))]
            x2 = ports[(b, "top" if down else "bottom", ("in", a))]
            y1, y2 = (ba.bottom, bb.y) if down else (ba.y, bb.bottom)
            svg.path([(x1, y1), (x1, lane[a]), (x2, lane[a]), (x2, y2)], colour[a], f"arrow-{a}")
        else:  # same row, not neighbours: over the top (first row) or below (second)
            x1 = ports[(a, kind, ("out", a))]
            x2 = ports[(b, kind, ("in", a))]
            y1 = ba.y if kind == "top" else ba.bottom
            y2 = bb.y if kind == "top" else bb.bottom
            y = min(y1, y2) - 18 if kind == "top" else max(y1, y2) + 18
            svg.path([(x1, y1), (x1, y), (x2, y), (x2, y2)], colour[a], f"arrow-{a}")


def _draw_map(svg: Svg, edges: dict[tuple[str, str], int]) -> None:
    boxes = _layout()
    modules = _module_boxes(boxes)
    steps_of: dict[str, list[int]] = {}
    for step in STEPS:
        for module in step.modules:
            steps_of.setdefault(module, []).append(step.number)
    for concern in CONCERNS:
        box = boxes[concern.name]
        svg.rect(box, concern.fill, concern.stroke, 1.5, 8)
        svg.text(box.x + PAD, box.y + 21, concern.title, size=13.5, bold=True, fill=concern.stroke)
    leaf = boxes[LEAF]
    importers = sorted({a for a, b in edges if b == LEAF}, key=[c.name for c in CONCERNS].index)
    others = [c.name for c in CONCERNS if c.name != LEAF]
    who = "every other concern" if importers == others else ", ".join(importers)
    svg.text(leaf.x + PAD, leaf.y + 40, f"imported by {who};", size=11.5, fill=MUTED)
    svg.text(leaf.x + PAD, leaf.y + 55, "those arrows are not drawn", size=11.5, fill=MUTED)
    _draw_imports(svg, boxes, edges)
    stroke = {m: c.stroke for c in CONCERNS for m in c.modules}
    for module, mbox in modules.items():
        on_path = module in steps_of
        svg.rect(
            mbox, "#ffffff", stroke[module] if on_path else "#9aa5b1", 2.2 if on_path else 1, 4
        )
        svg.text(mbox.x + 8, mbox.y + 17.5, short_name(module), size=12, mono=True)
        if on_path:
            label = _ranges(sorted(set(steps_of[module])))
            w = len(label) * 10 * MONO_W + 9
            badge = Box(mbox.right - w - 3, mbox.y - 7, w, 14)
            svg.rect(badge, stroke[module], stroke[module], 1, 7)
            svg.text(
                badge.x + w / 2,
                badge.y + 10.5,
                label,
                size=10,
                mono=True,
                bold=True,
                fill="#ffffff",
                anchor="middle",
            )


def _draw_steps(svg: Svg) -> None:
    concerns = _concerns()
    svg.text(LANE_X, STEP_TOP - 16, "One request, one-phase configuration", size=14, bold=True)
    inner = [s for s in STEPS if s.inner]
    for i, step in enumerate(STEPS):
        y = STEP_TOP + i * STEP_PITCH
        indent = 28 if step.inner else 0
        fill, stroke = (
            (APACHE_FILL, APACHE_STROKE)
            if not step.concern
            else (concerns[step.concern].fill, concerns[step.concern].stroke)
        )
        box = Box(LANE_X + indent, y, LANE_W - indent, STEP_H)
        svg.rect(box, fill, stroke, 1.5, 6)
        cx, cy = box.x + 17, y + STEP_H / 2
        svg.add(f'<circle cx="{_f(cx)}" cy="{_f(cy)}" r="11" fill="{stroke}"/>')
        svg.text(cx, cy + 4, str(step.number), size=11, bold=True, fill="#ffffff", anchor="middle")
        svg.text(box.x + 36, y + 14, step.call, size=12, mono=True, bold=True)
        svg.text(box.x + 36, y + 29.5, step.what, size=11.5, fill=MUTED)
        if i:
            previous = STEPS[i - 1]
            ax = LANE_X + 17 + (28 if step.inner and previous.inner else 0)
            svg.path([(ax, y - STEP_PITCH + STEP_H + 1), (ax, y - 1)], INK, "arrow-ink")
    first = STEP_TOP + (inner[0].number - 1) * STEP_PITCH
    last = STEP_TOP + (inner[-1].number - 1) * STEP_PITCH + STEP_H
    decide = concerns["policy"].stroke
    svg.add(
        f'<path d="M{_f(LANE_X + 14)},{_f(first - 4)} H{_f(LANE_X + 8)} V{_f(last)} '
        f'H{_f(LANE_X + 14)}" fill="none" stroke="{decide}" stroke-width="1.5"/>'
    )


def render() -> str:
    """The SVG text of the drawing."""
    edges = concern_imports()
    svg = Svg()
    svg.add(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="{SANS}">'
    )
    svg.add("<title>imageguard's modules by concern, and the path of one request</title>")
    svg.add("<!-- generated by tools/architecture.py: do not edit -->")
    svg.add("<defs>")
    markers = [(f"arrow-{c.name}", c.stroke) for c in CONCERNS] + [("arrow-ink", INK)]
    for name, colour in markers:
        svg.add(
            f'<marker id="{name}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{colour}"/>'
            "</marker>"
        )
    svg.add("</defs>")
    svg.add(f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>')
    svg.text(
        WIDTH / 2,
        32,
        "imageguard: the modules by concern, and the path of one request",
        size=19,
        bold=True,
        anchor="middle",
    )
    # Legend.
    svg.path([(MAP_X, 62), (MAP_X + 40, 62)], INK, "arrow-ink")
    svg.text(
        MAP_X + 50, 66, "imports between concerns (run time), in the importer's colour", size=12.5
    )
    badge = Box(MAP_X + 470, 55, 22, 14)
    svg.rect(badge, INK, INK, 1, 7)
    svg.text(
        badge.x + 11, 65.5, "7", size=10, mono=True, bold=True, fill="#ffffff", anchor="middle"
    )
    svg.text(badge.right + 8, 66, "a module on the request's path, by step", size=12.5)
    _draw_map(svg, edges)
    _draw_steps(svg)
    svg.text(
        MAP_X,
        HEIGHT - 34,
        "Three-phase configuration: handlers.accesshandler, authenhandler and authzhandler run "
        "steps 2 to 11 once per phase,",
        size=11.5,
        fill=MUTED,
    )
    svg.text(
        MAP_X,
        HEIGHT - 18,
        "each calling decision.decide with the phase to stop after (the request's Progress "
        "keeps what the earlier phases found).",
        size=11.5,
        fill=MUTED,
    )
    svg.add("</svg>")
    return "\n".join(svg.parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the committed SVG is not what this writes"
    )
    args = parser.parse_args(argv)
    try:
        text = render()
    except ArchitectureError as exc:
        print(f"architecture: {exc}", file=sys.stderr)
        return 2
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        if current != text:
            print(
                f"architecture: {OUTPUT.relative_to(PROJECT)} is stale: "
                "run python3 tools/architecture.py",
                file=sys.stderr,
            )
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(PROJECT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
