"""Benchmark figures quoted in the documentation, and the results they are cited from.

A page that quotes a measurement outside ``docs/performance.md`` cites it on the same
line, with a Markdown link to the results file of ``bench/results/`` whose fragment names
where the figure is in that JSON file::

  4,514 requests/s ([measured](../bench/results/20261201-234557.json#cells.imageguard.8k.rps))
  0.26x ([r](../bench/results/20261201-234557.json#cells.imageguard.8k.rps/cells.static.8k.rps))

The rules of that form, which :func:`check_text` applies:

* the **number** is the last one on the line before the link (after any earlier link on
  that line), or the last one in the link's own text when that text holds a number
  (``[4,002 requests/s](...)``). It may have a leading ``~``, thousands commas, a decimal
  part, and an ``x`` or a multiplication sign (U+00D7) right after it (a ratio);
* the **fragment** is a *key path*: the keys from the top of the JSON document down to a
  number, joined with dots (``cells.imageguard.8k.rps``; a list item by its index; a
  key that holds dots is found too). Two key paths joined by ``/`` cite the ratio of the
  first value to the second;
* the number must be the cited value **rounded to the decimals shown**: ``4,002`` for
  4001.67, ``0.29`` for 0.2904. Either way of rounding a half is accepted. A value
  stored as text (``"0.29"``) counts when the text is a plain number.

:func:`figures` finds what reads like a benchmark figure (requests a second, a time per
request in µs or ms, a ratio "x faster"), so that a test can insist each one is cited.

Run ``python -m imageguard_devtools.docfigures PAGE...`` to see the problems of pages.
"""

from __future__ import annotations

import json
import math
import re
import sys
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Citation",
    "CitationError",
    "Figure",
    "check_page",
    "check_text",
    "citations",
    "figures",
    "resolve",
    "uncited",
]

#: A Markdown inline link: [text](target).
_LINK = re.compile(r"\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
#: The target of a citation: a results file of bench/results/ and a fragment.
_RESULTS = re.compile(r"^(?P<file>(?:[\w.-]*/)*bench/results/[\w.-]+\.json)#(?P<keys>.+)$")
#: A number as the docs show one: ~4,120 / 0.80 / 1.5x (or the multiplication sign).
_NUMBER = re.compile(
    r"(?<![\w.,/#-])(?P<tilde>~)?(?P<digits>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"(?P<times>\s?[\u00d7x](?![\w]))?"
)


class CitationError(ValueError):
    """A citation that names no number in its results file."""


@dataclass(frozen=True)
class Citation:
    """One cited figure: what the page shows, and where it says the figure comes from."""

    line: int
    #: The figure as the page shows it ("~4,120", "0.80x").
    shown: str
    #: Where the shown number lies in its line (start, end): what the citation covers.
    span: tuple[int, int]
    #: The link's target as written (relative to the page).
    target: str
    #: The results file, relative to the page's directory.
    results: str
    #: One key path, or two for a ratio.
    keypaths: tuple[str, ...]

    @property
    def number(self) -> float:
        """The shown figure as a number."""
        return float(_digits(self.shown).replace(",", ""))

    @property
    def decimals(self) -> int:
        """How many decimals the page shows."""
        return len(_digits(self.shown).partition(".")[2])

    def matches(self, value: float) -> bool:
        """True when the shown figure is *value* rounded to the decimals shown."""
        half = 0.5 * 10.0**-self.decimals
        return abs(value - self.number) <= half * (1 + 1e-9) + 1e-12


@dataclass(frozen=True)
class Figure:
    """Something on a page that reads like a benchmark figure."""

    line: int
    text: str
    span: tuple[int, int]
    #: The text of the line it is on.
    context: str


def _digits(shown: str) -> str:
    match = _NUMBER.search(shown)
    assert match is not None, shown
    return match.group("digits")


def _numbers(text: str, offset: int = 0) -> list[tuple[str, tuple[int, int]]]:
    """The numbers in *text* (as shown, and their span shifted by *offset*)."""
    return [
        (match.group(0).strip(), (offset + match.start(), offset + match.end()))
        for match in _NUMBER.finditer(text)
    ]


def citations(text: str) -> list[Citation]:
    """Every citation of a page's *text*, in order. A link to a results file with a
    fragment but no number before it is reported as a citation whose ``shown`` is ""."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        previous_end = 0
        for link in _LINK.finditer(line):
            target = urllib.parse.unquote(link.group("target"))
            results = _RESULTS.match(target)
            if results:
                candidates = _numbers(link.group("text"), link.start("text")) or _numbers(
                    line[previous_end : link.start()], previous_end
                )
                shown, span = candidates[-1] if candidates else ("", (link.start(), link.start()))
                found.append(
                    Citation(
                        line=number,
                        shown=shown,
                        span=span,
                        target=link.group("target"),
                        results=results.group("file"),
                        keypaths=tuple(results.group("keys").split("/")),
                    )
                )
            previous_end = link.end()
    return found


def _walk(document: Any, keypath: str) -> Any:
    """The value at *keypath* (dot-separated; a key holding dots is tried whole first)."""
    parts = keypath.split(".")
    node = document
    while parts:
        for size in range(len(parts), 0, -1):
            key = ".".join(parts[:size])
            if isinstance(node, dict) and key in node:
                node = node[key]
                break
            if isinstance(node, list) and size == 1 and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
                break
        else:
            raise CitationError(f"no key {parts[0]!r} at {keypath!r}")
        parts = parts[size:]
    return node


def _as_number(value: Any, keypath: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise CitationError(f"{keypath!r} is not a number but {type(value).__name__}")
    try:
        number = float(value)
    except ValueError:
        raise CitationError(f"{keypath!r} is {value!r}, not a number") from None
    if not math.isfinite(number):
        raise CitationError(f"{keypath!r} is {value!r}")
    return number


def resolve(citation: Citation, page_dir: Path) -> float:
    """The value *citation* names (a ratio for two key paths); CitationError if none."""
    path = (page_dir / citation.results).resolve()
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise CitationError(f"{citation.results} does not exist") from None
    values = [_as_number(_walk(document, keys), keys) for keys in citation.keypaths]
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        if values[1] == 0:
            raise CitationError(f"{citation.keypaths[1]!r} is 0: no ratio")
        return values[0] / values[1]
    raise CitationError(f"{citation.target}: one key path, or two for a ratio")


def check_text(text: str, page_dir: Path) -> list[str]:
    """The problems of the citations in a page's *text* (empty when every one matches)."""
    problems = []
    for citation in citations(text):
        where = f"line {citation.line}: {citation.target}"
        if not citation.shown:
            problems.append(f"{where}: no number before the link")
            continue
        try:
            value = resolve(citation, page_dir)
        except CitationError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if not citation.matches(value):
            problems.append(f"{where}: the page shows {citation.shown}, the results {value:g}")
    return problems


def check_page(page: Path) -> list[str]:
    """:func:`check_text` for the page at *page*."""
    return check_text(page.read_text(), page.parent)


#: What follows a number that makes it read like a benchmark figure.
_FIGURE = re.compile(
    r"(?<![\w.,/#:{-])~?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?k?"
    r"(?:\s?[\u2013-]\s?~?\d+(?:\.\d+)?k?)?"  # a range: 17-19k (or an en dash)
    r"(?:"
    r"\s*(?:requests?|req)\s*(?:/\s*s(?:ec)?\b|a second|per second|each second)"
    r"|\s*rps\b"
    r"|\s?/\s?s\b"
    r"|\s*(?:µs|us|ms)\b"
    r"|\s?[\u00d7x](?![\w]|\s?\d)"
    r"|\s+times\s+(?:faster|slower|as\s+(?:fast|many|much))"
    r")",
    re.IGNORECASE,
)


#: A table column whose every number is a figure: its header names such a unit.
_FIGURE_COLUMN = re.compile(
    r"requests?\s*/\s*s|req/s|\brps\b|requests? (?:a|per) second|µs|\bus\b|\bms\b",
    re.IGNORECASE,
)


def _cells(line: str) -> list[tuple[int, str]]:
    """The cells of a Markdown table row: (where each starts in *line*, its text)."""
    cells = []
    start = line.index("|") + 1
    while True:
        end = line.find("|", start)
        if end < 0:
            break
        cells.append((start, line[start:end]))
        start = end + 1
    return cells


def _table_figures(lines: list[str]) -> list[Figure]:
    """The numbers in the columns of Markdown tables whose header names a figure's unit."""
    found = []
    index = 0
    while index < len(lines):
        header = lines[index]
        is_table = (
            header.lstrip().startswith("|")
            and index + 1 < len(lines)
            and re.fullmatch(r"\s*\|?[\s:|-]+\|?\s*", lines[index + 1]) is not None
        )
        if not is_table:
            index += 1
            continue
        columns = [
            position
            for position, (_, cell) in enumerate(_cells(header))
            if _FIGURE_COLUMN.search(cell)
        ]
        index += 2
        while index < len(lines) and lines[index].lstrip().startswith("|"):
            row = _cells(lines[index])
            for position in columns:
                if position < len(row):
                    offset, cell = row[position]
                    for shown, span in _numbers(cell, offset):
                        found.append(Figure(index + 1, shown, span, lines[index]))
            index += 1
    return found


def figures(text: str) -> list[Figure]:
    """What reads like a benchmark figure in *text*: a number of requests a second, a
    time in µs or ms, a ratio (``1.5x``, ``3 times faster``), and every number in a
    table column whose header names one of those units."""
    lines = text.splitlines()
    found = []
    for number, line in enumerate(lines, start=1):
        for match in _FIGURE.finditer(line):
            found.append(Figure(number, match.group(0), (match.start(), match.end()), line))
    seen = {(figure.line, figure.span[0]) for figure in found}
    for figure in _table_figures(lines):
        if (figure.line, figure.span[0]) not in seen:
            found.append(figure)
    return sorted(found, key=lambda figure: (figure.line, figure.span))


def uncited(text: str) -> list[Figure]:
    """The :func:`figures` of *text* that no citation covers (the cited number must be
    the figure's own: a citation of another number on the line does not count)."""
    covered: dict[int, list[tuple[int, int]]] = {}
    for citation in citations(text):
        if citation.shown:
            covered.setdefault(citation.line, []).append(citation.span)
    result = []
    for figure in figures(text):
        spans = covered.get(figure.line, [])
        start, end = figure.span
        if not any(start <= cited_start < end for cited_start, _ in spans):
            result.append(figure)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Print each page's citation problems and uncited figures; 1 if there are any."""
    status = 0
    for name in argv if argv is not None else sys.argv[1:]:
        page = Path(name)
        text = page.read_text()
        for problem in check_text(text, page.parent):
            print(f"{page}: {problem}")
            status = 1
        for figure in uncited(text):
            print(f"{page}:{figure.line}: uncited figure {figure.text!r}")
            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
