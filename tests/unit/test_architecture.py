"""docs/architecture.md and its diagram keep up with the code: the SVG is what
tools/architecture.py draws today, every module is in one concern, the pure core imports
no mod_python, and every ``module.function`` the page names exists."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
TOOL = PROJECT / "tools" / "architecture.py"
DOC = PROJECT / "docs" / "architecture.md"


def _tool():  # the tool module, loaded from its file
    spec = importlib.util.spec_from_file_location("architecture_tool", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


architecture = _tool()


def test_the_committed_diagram_is_current() -> None:
    done = subprocess.run(
        [sys.executable, str(TOOL), "--check"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def _unlisted(module: str, path: Path) -> bool:
    """A subpackage's ``__init__`` or ``__main__``: in its concern without being listed."""
    return ("." in module and path.stem == "__main__") or (
        module != "__init__" and path.stem == "__init__"
    )


def test_every_module_is_in_exactly_one_concern() -> None:
    modules = architecture.package_modules()
    placed = [m for concern in architecture.CONCERNS for m in concern.modules]
    assert len(placed) == len(set(placed)), "a module is in two concerns"
    assert set(placed) == {m for m, path in modules.items() if not _unlisted(m, path)}
    owner = architecture.concern_of()
    assert set(owner) == set(modules)
    for module in modules:  # each subpackage is one concern, named after it
        if "." in module or (modules[module].stem == "__init__" and module != "__init__"):
            assert owner[module] == module.split(".")[0], module


def test_a_module_in_no_concern_stops_the_tool(monkeypatch) -> None:
    real = architecture.package_modules

    def with_a_stranger() -> dict[str, Path]:
        return {**real(), "stranger": TOOL}

    monkeypatch.setattr(architecture, "package_modules", with_a_stranger)
    with pytest.raises(architecture.ArchitectureError, match="stranger is in no concern"):
        architecture.render()


def test_a_module_outside_its_subpackages_concern_stops_the_tool(monkeypatch) -> None:
    concerns = [
        dataclasses.replace(c, modules=(*c.modules, "policy.acl"))
        if c.name == "files"
        else dataclasses.replace(c, modules=tuple(m for m in c.modules if m != "policy.acl"))
        for c in architecture.CONCERNS
    ]
    monkeypatch.setattr(architecture, "CONCERNS", tuple(concerns))
    with pytest.raises(architecture.ArchitectureError, match=r"policy\.acl is in files, but"):
        architecture.render()


def _imports_mod_python(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found += [
            f"{path.name}:{node.lineno} imports {name}"
            for name in names
            if name.split(".")[0] in ("mod_python", "_apache")
        ]
    return found


def owned(concern: str) -> list[str]:
    """The modules of *concern*, its unlisted ``__init__`` and ``__main__`` included."""
    return sorted(m for m, name in architecture.concern_of().items() if name == concern)


def test_the_pure_core_imports_no_mod_python() -> None:
    modules = architecture.package_modules()
    core = [c for c in architecture.CONCERNS if c.name in architecture.PURE_CORE]
    assert {c.name for c in core} == set(architecture.PURE_CORE)
    offending = [
        found
        for concern in core
        for module in owned(concern.name)
        for found in _imports_mod_python(modules[module])
    ]
    assert not offending, offending
    adapters = [m for m in modules if architecture.short_name(m) == "adapters"]
    assert _imports_mod_python(modules[adapters[0]]), "the check finds no mod_python import"


def _names(body: list[ast.stmt]) -> dict[str, ast.AST]:
    """The names a module or class body defines, with their definitions."""
    found: dict[str, ast.AST] = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found[node.target.id] = node
    return found


def _reexported(module: str, tree: ast.Module, name: str) -> str | None:
    """The module of the package that *module* (a subpackage's ``__init__``) imports
    *name* from with ``from .X import name``, if it does."""
    for node in tree.body:
        if (
            isinstance(node, ast.ImportFrom)
            and node.level == 1
            and node.module
            and any((a.asname or a.name) == name for a in node.names)
        ):
            return f"{module}.{node.module}"
    return None


def _exists(module: str, attributes: list[str]) -> bool:
    """Whether *module* defines the dotted *attributes* (following a subpackage's
    re-export of the first one to the module that defines it)."""
    tree = ast.parse(architecture.package_modules()[module].read_text())
    scope: ast.AST = tree
    for i, attribute in enumerate(attributes):
        body = getattr(scope, "body", None)
        if not isinstance(body, list):
            return False
        found = _names(body).get(attribute)
        if found is None:
            source = _reexported(module, tree, attribute) if i == 0 else None
            return source is not None and _exists(source, attributes)
        scope = found
    return True


def _module_and_attributes(parts: list[str]) -> tuple[str, list[str]] | None:
    """Split a dotted reference into a module of the package and what it names there:
    the module by its dotted path (``store.cached.CachedAcl``) or its short name
    (``decision.decide``), the way the page writes them; None for anything else."""
    modules = architecture.package_modules()
    for cut in range(len(parts), 0, -1):
        if ".".join(parts[:cut]) in modules:
            return ".".join(parts[:cut]), parts[cut:]
    by_short = {architecture.short_name(m): m for m in modules if m != "__init__"}
    if parts[0] in by_short:
        return by_short[parts[0]], parts[1:]
    return None


def test_every_function_the_page_names_exists() -> None:
    named: dict[str, tuple[str, list[str]]] = {}
    for text in re.findall(r"`([^`\s]+)`", DOC.read_text()):
        dotted = text.removesuffix("()")
        if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", dotted):
            continue
        parts = dotted.split(".")
        if parts[0] == "imageguard":
            parts = parts[1:]
        found = _module_and_attributes(parts) if parts[-1] != "py" else None
        if found is not None and found[1]:
            named[".".join(parts)] = found
    assert len(named) > 30, sorted(named)  # the page's steps name functions
    missing = sorted(text for text, found in named.items() if not _exists(*found))
    assert not missing, f"docs/architecture.md names what does not exist: {missing}"


def _tree_of_the_page() -> tuple[set[str], set[str]]:
    """The modules (dotted below imageguard) and subpackages that the page's package tree
    lists under ``src/imageguard/``, each where its indentation puts it."""
    section = DOC.read_text().split("## The package tree", 1)[1].split("\n## ", 1)[0]
    block = section.split("```text\n", 1)[1].split("```", 1)[0]
    modules: set[str] = set()
    packages: set[str] = set()
    inside: list[str] = []
    lines = block.splitlines()
    assert lines[0] == "src/imageguard/", lines[0]
    for line in lines[1:]:
        if not line.startswith(" "):  # the next tree (imageguard_devtools)
            break
        depth = (len(line) - len(line.lstrip(" "))) // 2 - 1
        name = line.split()[0]
        if not name.endswith(("/", ".py")):
            continue  # the continuation of a description
        inside = inside[:depth]
        if name.endswith("/"):
            inside.append(name[:-1])
            packages.add(".".join(inside))
        else:
            modules.add(".".join([*inside, name.removesuffix(".py")]))
    return modules, packages


def test_the_package_tree_of_the_page_is_the_package() -> None:
    listed, packages = _tree_of_the_page()
    modules = architecture.package_modules()
    assert packages == {m for m, p in modules.items() if p.name == "__init__.py"} - {"__init__"}
    assert listed == {m for m, path in modules.items() if not _unlisted(m, path)}


def test_the_steps_of_the_page_match_the_diagram() -> None:
    """Each numbered step of the page names the call the diagram shows for it."""
    text = DOC.read_text().split("## One request, in one pass", 1)[1].split("\n## ", 1)[0]
    steps = {
        int(m.group(1)): m.group(2)
        for m in re.finditer(r"^ ?(\d+)\. (.*(?:\n {3,4}\S.*)*)", text, re.M)
    }
    assert sorted(steps) == [s.number for s in architecture.STEPS]
    for step in architecture.STEPS:
        expected = step.call.split(":")[0].split(" ")[0].split("'")[0]
        assert expected in steps[step.number], (step.number, expected)


def _imported_names(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every absolute import in the file at *path*."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append((node.lineno, first.value))
    return found


def test_the_package_imports_nothing_from_the_devtools() -> None:
    """imageguard_devtools (the private Apache, the demo) is never on a request's path."""
    sources = sorted(architecture.PACKAGE.rglob("*.py"))
    assert len(sources) > 30
    offending = [
        f"{path.relative_to(PROJECT)}:{line} imports {name}"
        for path in sources
        for line, name in _imported_names(path)
        if name.split(".")[0] == "imageguard_devtools"
    ]
    assert not offending, offending
