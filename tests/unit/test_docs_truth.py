"""Every page of the documentation (README.md, docs/**/*.md) is held to the code.

* **Apache configuration.** Every fenced ``apache``/``apacheconf`` block, and every
  unlabeled or ``text`` block whose lines read like Apache directives, is one of: a file
  the generator writes (:func:`imageguard.apache.apacheconf.shipped_files`); a contiguous
  run of lines (each stripped, blank lines aside; a block without comments may also
  leave out the comments between them) of such a file or of a configuration file under
  ``docs/examples/``, which the integration tests run; ``PythonOption`` lines
  only, each naming an option of the option table (or one of mod_python's own session
  options) with a value its parser accepts; or a block an integration test reads from
  the page and runs (:data:`RUN_BY_INTEGRATION_TESTS`).
* **Figures.** Every benchmark figure cited with a link into ``bench/results/`` is the
  cited value (:mod:`imageguard_devtools.docfigures`), and no page but performance.md
  (which ``test_docs_performance.py`` checks) quotes a figure without such a citation.
* **Command lines and options.** Every ``imageguard`` command shown (code blocks of
  shell commands, inline code) names a subcommand and flags the real parser has, and
  every ``imageguard.NAME`` that is not a module or attribute of the package is an
  option of the table.

Pure: no Apache, nothing written.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import imageguard
from imageguard.apache.apacheconf import shipped_files
from imageguard.apache.options import BY_NAME
from imageguard.cli.commandline import build_parser
from imageguard.errors import ConfigError
from imageguard_devtools import docfigures

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"


def _is_page(path: Path) -> bool:
    """A page of ours: not inside node_modules (the slide tool's) or a hidden folder."""
    parts = path.relative_to(ROOT).parts
    return not any(part == "node_modules" or part.startswith(".") for part in parts)


PAGES = [
    ROOT / "README.md",
    *sorted(path for path in (ROOT / "docs").rglob("*.md") if _is_page(path)),
]


def page_name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


# ------------------------------------------------------------------------ code blocks


@dataclass(frozen=True)
class Block:
    page: str
    #: The line of the opening fence (1-based).
    line: int
    label: str
    body: str
    #: The line of the closing fence (1-based; past the page's end when there is none).
    end: int = 0


_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<label>[^\s`]*)")


def fenced_blocks(page: Path) -> list[Block]:
    """The fenced code blocks of *page*, their indentation (in a list item) removed."""
    lines = page.read_text().splitlines()
    blocks = []
    index = 0
    while index < len(lines):
        opened = _FENCE.match(lines[index])
        if not opened:
            index += 1
            continue
        fence, indent = opened.group("fence"), len(opened.group("indent"))
        end = index + 1
        while end < len(lines) and not (
            lines[end].strip().startswith(fence) and not lines[end].strip().strip(fence[0])
        ):
            end += 1
        body = "\n".join(
            line[indent:] if not line[:indent].strip() else line.lstrip()
            for line in lines[index + 1 : end]
        )
        label = opened.group("label").lower()
        blocks.append(Block(page_name(page), index + 1, label, body, end + 1))
        index = end + 1
    return blocks


def prose(page: Path) -> str:
    """*page* without its fenced code blocks (their lines left empty, so that line
    numbers stay those of the page)."""
    lines = page.read_text().splitlines()
    for block in fenced_blocks(page):
        for number in range(block.line - 1, min(block.end, len(lines))):
            lines[number] = ""
    return "\n".join(lines)


# ------------------------------------------------------------------ Apache configuration

#: A line that only Apache configuration has.
_DIRECTIVE = re.compile(
    r"^\s*(?:</?(?:Directory|DirectoryMatch|Location|LocationMatch|Files|FilesMatch|"
    r"VirtualHost|IfModule)\b|(?:LoadModule|PythonOption|PythonPath|PythonImport|"
    r"PythonInterpreter|Python\w*Handler|AuthType|SetHandler|Require|Alias)\s)"
)
CONFIG_LABELS = ("apache", "apacheconf")


def is_config(block: Block) -> bool:
    if block.label in CONFIG_LABELS:
        return True
    return block.label in ("", "text") and any(
        _DIRECTIVE.match(line) for line in block.body.splitlines()
    )


def config_blocks() -> list[Block]:
    return [block for page in PAGES for block in fenced_blocks(page) if is_config(block)]


def significant(text: str) -> list[str]:
    """The lines of a configuration, each stripped, blank lines left out."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def config_sources() -> dict[str, list[str]]:
    """What a shown block may be an excerpt of: the generator's files and the examples'
    configuration files (which tests/integration/test_doc_examples.py and the cookbook's
    tests run), by name."""
    sources = {f"apache_conf/{name}": significant(text) for name, text in shipped_files().items()}
    for path in sorted(EXAMPLES.rglob("*")):
        if path.is_file() and (path.suffix == ".conf" or "htaccess" in path.name):
            sources[path.relative_to(ROOT).as_posix()] = significant(path.read_text())
    return sources


def directives(lines: list[str]) -> list[str]:
    """*lines* without their comments."""
    return [line for line in lines if not line.startswith("#")]


def excerpt_of(lines: list[str], whole: list[str]) -> bool:
    """True when *lines* is a contiguous run of *whole*."""
    size = len(lines)
    return size > 0 and any(whole[i : i + size] == lines for i in range(len(whole) - size + 1))


#: The options of mod_python's own sessions (mod_python/Session.py reads them), which
#: the docs tell the application to set, and what a value must look like.
MOD_PYTHON_OPTIONS: dict[str, re.Pattern[str]] = {
    "mod_python.session.session_type": re.compile(r"FileSession|DbmSession|MemorySession"),
    "mod_python.session.cookie_name": re.compile(r"[\w!#$%&'*+.^`|~-]+"),
    "mod_python.session.application_path": re.compile(r"/\S*"),
    "mod_python.session.application_domain": re.compile(r"[\w.-]+"),
    "mod_python.session.database_directory": re.compile(r"/\S*"),
    "mod_python.file_session.database_directory": re.compile(r"/\S*"),
    "mod_python.dbm_session.database_filename": re.compile(r"/\S*"),
    "mod_python.dbm_session.database_directory": re.compile(r"/\S*"),
}

_OPTION_LINE = re.compile(r"PythonOption\s+(?P<name>\S+)\s+(?P<value>.+)")


def option_line_problem(line: str) -> str | None:
    """Why *line* is not a ``PythonOption`` line imageguard (or mod_python) accepts."""
    found = _OPTION_LINE.fullmatch(line)
    if not found:
        return f"{line!r} is not a PythonOption line"
    name, value = found.group("name"), found.group("value").strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if name in MOD_PYTHON_OPTIONS:
        if not MOD_PYTHON_OPTIONS[name].fullmatch(value):
            return f"{name}: {value!r} is not a value mod_python takes"
        return None
    option = BY_NAME.get(name)
    if option is None:
        return f"{name} is not an option of imageguard.apache.options.TABLE"
    try:
        option.parse(name, option.default, value)
    except ConfigError as exc:
        return f"{name} {value!r} is refused: {exc}"
    return None


#: Blocks that an integration test reads from the page and runs against a real Apache:
#: (page, the block's first line) -> the test.
RUN_BY_INTEGRATION_TESTS: dict[tuple[str, str], str] = {
    (
        "docs/tickets.md",
        "LoadModule auth_tkt_module /usr/lib/apache2/modules/mod_auth_tkt.so",
    ): "tests/integration/test_mod_auth_tkt.py",
}


def config_problem(block: Block) -> str | None:
    """Why *block* is none of the kinds of configuration the docs may show."""
    lines = significant(block.body)
    if not lines:
        return "an empty configuration block"
    commented = any(line.startswith("#") for line in lines)
    for source in config_sources().values():
        if excerpt_of(lines, source):
            return None
        # Without comments of its own, a block may leave out the source's comments.
        if not commented and excerpt_of(lines, directives(source)):
            return None
    runner = RUN_BY_INTEGRATION_TESTS.get((block.page, lines[0]))
    if runner is not None:
        test = (ROOT / runner).read_text()
        if Path(block.page).name in test and lines[0] in test:
            return None
        return f"{runner} does not read this block from {block.page}"
    if all(line.startswith("PythonOption") for line in lines):
        problems = [p for p in map(option_line_problem, lines) if p]
        return "; ".join(problems) if problems else None
    return (
        "neither a file apache-conf writes, nor lines of one or of a configuration "
        "file under docs/examples/, nor valid PythonOption lines"
    )


def test_the_pages_are_found() -> None:
    names = {page_name(page) for page in PAGES}
    assert {"README.md", "docs/tickets.md", "docs/phases.md", "docs/acl.md"} <= names
    assert not any("node_modules" in name for name in names)


def test_config_blocks_are_found() -> None:
    pages = {block.page for block in config_blocks()}
    assert {"README.md", "docs/tickets.md", "docs/phases.md"} <= pages


def test_a_made_up_block_would_be_refused() -> None:
    def problem(body: str, label: str = "apache") -> str | None:
        return config_problem(Block("x.md", 1, label, body))

    assert problem("<Directory /srv/images>\n    Require all granted\n</Directory>")
    assert problem("PythonOption imageguard.deny_status 402")
    assert problem("PythonOption imageguard.colour blue")
    assert problem("PythonOption imageguard.deny_status 404") is None
    assert problem("PythonOption mod_python.session.application_path /") is None
    shown = "\n".join(shipped_files()["imageguard.conf"].splitlines()[4:9])
    assert problem(shown, "") is None
    handlers = "PythonAccessHandler imageguard.handlers\nPythonAuthenHandler imageguard.handlers"
    assert problem(handlers) is None  # a comment lies between them
    reordered = "PythonAuthenHandler imageguard.handlers\nPythonAccessHandler imageguard.handlers"
    assert problem(reordered) is not None


@pytest.mark.parametrize("block", config_blocks(), ids=lambda block: f"{block.page}:{block.line}")
def test_a_config_block_comes_from_the_generator_or_a_tested_file(block: Block) -> None:
    problem = config_problem(block)
    assert problem is None, f"{block.page}, the block at line {block.line}: {problem}"


# ------------------------------------------------------------------------------ figures

#: Pages whose figures are checked elsewhere.
FIGURES_CHECKED_ELSEWHERE = {"docs/performance.md": "tests/unit/test_docs_performance.py"}

#: Numbers that read like benchmark figures but are not measurements: (page, the figure
#: as found) -> why.
NOT_BENCHMARK_FIGURES: dict[tuple[str, str], str] = {
    ("README.md", "100 ms"): "the soak's writer interval, a setting of make soak",
    ("docs/security.md", "100 ms"): "the soak's writer interval, a setting of make soak",
    ("docs/deployment.md", "100 ms"): (
        "the bound tests/integration/test_multiserver.py asserts (PROPAGATION_S)"
    ),
}
#: Regions of pages generated from other results and compared by their own test:
#: (page, begin marker, end marker) -> the test.
GENERATED_REGIONS: dict[tuple[str, str, str], str] = {
    ("docs/security.md", "<!-- soak:begin", "<!-- soak:end -->"): (
        "tests/unit/test_docs_security.py (the newest soak/results/*.json)"
    ),
}


#: The multiplication sign a ratio may be written with.
TIMES = "\u00d7"


def figure_pages() -> list[Path]:
    return [page for page in PAGES if page_name(page) not in FIGURES_CHECKED_ELSEWHERE]


def without_generated_regions(name: str, text: str) -> str:
    """*text* with the generated regions of page *name* blanked (lines kept)."""
    for (page, begin, end), _test in GENERATED_REGIONS.items():
        if page != name:
            continue
        start = text.index(begin)
        stop = text.index(end, start)
        text = text[:start] + re.sub(r"[^\n]", " ", text[start:stop]) + text[stop:]
    return text


#: A results file of the repository (latest.json is not one: it is made by a run, and
#: git ignores it).
RESULTS_FILE = "20261201-234557.json"


def test_the_citation_form_is_checked() -> None:
    """A made-up page: a right citation, a wrong number, a ratio, a missing key."""
    results = f"../bench/results/{RESULTS_FILE}"
    cells = json.loads((ROOT / "bench" / "results" / RESULTS_FILE).read_text())["cells"]
    rps = cells["imageguard"]["8k"]["rps"]
    ratio = rps / cells["static"]["8k"]["rps"]
    good = (
        f"about {round(rps):,} requests/s ([measured]({results}#cells.imageguard.8k.rps)), "
        f"{ratio:.2f}{TIMES} ([measured]({results}#cells.imageguard.8k.rps/cells.static.8k.rps))"
    )
    assert docfigures.check_text(good, ROOT / "docs") == []
    assert docfigures.uncited(good) == []
    wrong = f"{round(rps) + 7:,} requests/s ([measured]({results}#cells.imageguard.8k.rps))"
    assert docfigures.check_text(wrong, ROOT / "docs")
    missing = f"{round(rps):,} requests/s ([measured]({results}#cells.nothing.8k.rps))"
    assert docfigures.check_text(missing, ROOT / "docs")
    bare = f"static serves {round(rps):,} requests/s and imageguard 3.2{TIMES} fewer"
    assert [figure.text for figure in docfigures.uncited(bare)] == [
        f"{round(rps):,} requests/s",
        f"3.2{TIMES}",
    ]


@pytest.mark.parametrize("page", figure_pages(), ids=page_name)
def test_cited_figures_are_the_results(page: Path) -> None:
    assert docfigures.check_page(page) == []


@pytest.mark.parametrize("page", figure_pages(), ids=page_name)
def test_no_uncited_benchmark_figures(page: Path) -> None:
    name = page_name(page)
    text = without_generated_regions(name, page.read_text())
    uncited = [
        f"line {figure.line}: {figure.text!r} in {figure.context.strip()!r}"
        for figure in docfigures.uncited(text)
        if (name, figure.text) not in NOT_BENCHMARK_FIGURES
    ]
    assert uncited == [], (
        f"{name} quotes figures without a citation of bench/results/ "
        "(see imageguard_devtools.docfigures)"
    )


def test_the_exceptions_are_still_needed() -> None:
    """Each allowed figure is still on its page, so the list cannot outgrow the docs."""
    for (name, figure), _why in NOT_BENCHMARK_FIGURES.items():
        found = [f.text for f in docfigures.figures((ROOT / name).read_text())]
        assert figure in found, (name, figure)


# --------------------------------------------------------------- command lines, options

SHELL_LABELS = ("sh", "bash", "shell", "console", "")
#: Inline code, which may go on over a line break (never over a blank line).
_INLINE_CODE = re.compile(r"(`+)(?P<code>(?:(?!\n\s*\n)[^`])+?)\1")
#: What may stand before the command on a line: a prompt, sudo and its flags, variables.
_PREFIX = re.compile(r"^(?:\$|#|sudo|-E|-H|env|nice|exec|time|[A-Z_][A-Z0-9_]*=\S*)$")
_FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


@dataclass(frozen=True)
class Command:
    page: str
    line: int
    text: str
    tokens: tuple[str, ...]


def _pieces(text: str) -> Iterator[str]:
    """The simple commands of a shell line (split at ; && || $( ` and pipes)."""
    text = re.sub(r"(^|\s)#.*$", "", text)  # a comment
    yield from re.split(r";|&&|\|\||\$\(|`|\)|\s\|\s(?!-)", text)


def _tokens(piece: str) -> list[str]:
    try:
        return shlex.split(piece)
    except ValueError:  # a synopsis with an unbalanced quote
        return piece.split()


def _command_in(piece: str) -> tuple[str, ...] | None:
    """The tokens after ``imageguard`` when *piece* runs the imageguard command."""
    tokens = _tokens(piece)
    while tokens and _PREFIX.match(tokens[0]):
        tokens = tokens[1:]
    if tokens and (tokens[0] == "imageguard" or tokens[0].endswith("/bin/imageguard")):
        return tuple(tokens[1:])
    return None


def commands() -> list[Command]:
    """Every imageguard command line in the pages' shell blocks and inline code."""
    found = []
    for page in PAGES:
        name = page_name(page)
        sources: list[tuple[int, str]] = []
        for block in fenced_blocks(page):
            if block.label in SHELL_LABELS:
                body = block.body.replace("\\\n", " ")
                sources += [(block.line, line) for line in body.splitlines()]
        text = prose(page)
        for match in _INLINE_CODE.finditer(text):  # a code span may go on on the next line
            number = text.count("\n", 0, match.start()) + 1
            sources.append((number, " ".join(match.group("code").split())))
        for number, text in sources:
            for piece in _pieces(text):
                tokens = _command_in(piece)
                if tokens is not None:
                    found.append(Command(name, number, piece.strip(), tokens))
    return found


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return dict(parser._option_string_actions)


def _placeholder(token: str) -> bool:
    """A word standing for a command or value (COMMAND, <cmd>, $VAR, ...)."""
    word = token.strip("[](){}<>.")
    return not word or word.isupper() or token.startswith(("$", "<", "..."))


def command_problems(command: Command, parser: argparse.ArgumentParser) -> list[str]:
    """What *command* names that the parser does not have."""
    problems = []
    tokens = list(command.tokens)
    current = parser
    # Global options, then the command, then (group, renditions) its subcommand.
    while tokens:
        token = tokens.pop(0)
        subcommands = _subcommands(current)
        flags = _FLAG.findall(token) if token.startswith(("-", "[", "(")) else []
        if flags:
            options = _options(current)
            for flag in flags:
                if flag.split("=")[0] not in options:
                    where = current.prog
                    problems.append(f"{where} has no option {flag}")
                elif options[flag].nargs != 0 and "=" not in token and tokens:
                    tokens.pop(0)  # its value
            continue
        if not subcommands:
            tokens.insert(0, token)
            break
        names = [name.strip("[](){}") for name in token.split("|")]
        if _placeholder(token):
            return problems  # "imageguard COMMAND ...": nothing more to check
        missing = [name for name in names if name not in subcommands]
        if missing:
            problems.append(f"{current.prog} has no command {', '.join(missing)}")
            return problems
        current = subcommands[names[0]]
    options = _options(current)
    for token in tokens:
        if token.startswith(("-", "[", "(", "[-")) or "|-" in token:
            for flag in _FLAG.findall(token):
                if flag.split("=")[0] not in options:
                    problems.append(f"{current.prog} has no option {flag}")
    return problems


def test_commands_are_found() -> None:
    shown = {(c.page, c.tokens[0]) for c in commands() if c.tokens}
    assert ("README.md", "apache-conf") in shown
    assert ("docs/tickets.md", "share") in shown


def test_a_made_up_flag_would_be_refused() -> None:
    parser = build_parser()
    bad = Command("x.md", 1, "", ("renditions", "warm", "--colour", "red"))
    assert command_problems(bad, parser) == ["imageguard renditions warm has no option --colour"]
    assert command_problems(Command("x.md", 1, "", ("frobnicate",)), parser)
    good = Command("x.md", 1, "", ("--db", "x.db", "explain", "--user", "bob", "--root", "/r", "a"))
    assert command_problems(good, parser) == []


@pytest.mark.parametrize("page", PAGES, ids=page_name)
def test_commands_exist(page: Path) -> None:
    parser = build_parser()
    name = page_name(page)
    problems = [
        f"line {command.line}: `{command.text}`: {problem}"
        for command in commands()
        if command.page == name
        for problem in command_problems(command, parser)
    ]
    assert problems == []


#: ``imageguard.NAME`` mentions that are neither options nor parts of the package:
#: (page, name) -> why.
NOT_OPTIONS: dict[tuple[str, str], str] = {
    ("docs/security.md", "imageguard.colour"): "the bad-options table: an unknown option refused",
}
_DOTTED = re.compile(
    r"(?<![\w/.-])imageguard\.(?:(?:conf|json|db)\b(?![.\w])|"
    r"(?P<name>[A-Za-z_]\w*)(?P<ext>\.(?:conf|json|db)\b)?)"
)


def named_options(page: Path) -> list[tuple[int, str]]:
    """The ``imageguard.NAME`` of *page* that are not a module or attribute of the package
    or a file name (``imageguard.conf``): what must be options."""
    found = []
    for number, line in enumerate(page.read_text().splitlines(), start=1):
        for match in _DOTTED.finditer(line):
            attribute = match.group("name")
            if attribute is None or match.group("ext") or hasattr(imageguard, attribute):
                continue
            if importlib.util.find_spec(f"imageguard.{attribute}") is not None:
                continue
            found.append((number, f"imageguard.{attribute}"))
    return found


def test_option_names_are_found() -> None:
    names = {name for _line, name in named_options(ROOT / "README.md")}
    assert {"imageguard.root", "imageguard.login_url", "imageguard.session"} <= names


@pytest.mark.parametrize("page", PAGES, ids=page_name)
def test_named_options_exist(page: Path) -> None:
    name = page_name(page)
    unknown = [
        f"line {line}: {option}"
        for line, option in named_options(page)
        if option not in BY_NAME and (name, option) not in NOT_OPTIONS
    ]
    assert unknown == [], f"{name} names PythonOptions imageguard does not have"


# --------------------------------------------------------------------------- the index

INDEX = ROOT / "docs" / "index.md"
_RELATIVE_LINK = re.compile(r"\]\((?P<target>(?![a-z]+:|#)[^)#\s]+)(?:#[^)]*)?\)")


def test_the_index_links_to_files_that_exist() -> None:
    targets = [match.group("target") for match in _RELATIVE_LINK.finditer(INDEX.read_text())]
    missing = sorted({t for t in targets if not (INDEX.parent / t).exists()})
    assert targets and missing == []


def test_the_index_lists_every_page() -> None:
    listed = {
        (INDEX.parent / match.group("target")).resolve()
        for match in _RELATIVE_LINK.finditer(INDEX.read_text())
    }
    unlisted = [page_name(page) for page in PAGES if page != INDEX and page not in listed]
    assert unlisted == []


def test_the_readme_links_to_the_index() -> None:
    assert "](docs/index.md)" in (ROOT / "README.md").read_text()


def test_the_readme_names_the_packages_make_test_installs() -> None:
    """The README's "Try it" lists the Debian packages of the Makefile's APT_PACKAGES."""
    makefile = (ROOT / "Makefile").read_text()
    found = re.search(r"^APT_PACKAGES\s*:=\s*((?:.*\\\n)*.*)$", makefile, re.MULTILINE)
    assert found
    packages = found.group(1).replace("\\\n", " ").split()
    readme = (ROOT / "README.md").read_text()
    said = readme[readme.index("Both set themselves up") :].split("when missing", 1)[0]
    assert sorted(re.findall(r"`([\w.+-]+)`", said)) == sorted(packages)
