"""The talk: docs/talk/deck.md (Marp slides) and docs/talk.md (the speaker's guide).

The deck must be a deck (a title slide, 14 to 18 content slides, speaker notes on each,
no missing image), the guide must plan it (timings that add up to 25 minutes and 5 for
questions, naming every slide; a fallback slide for each demo step), every benchmark
figure in either must be the one its results file holds, and the built PDF must be the
build of this deck (one page per slide, each page showing its slide's heading).

The commands of the guide that go to the examples server are run against a real Apache
by tests/integration/test_doc_examples.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imageguard.apache.apacheconf import shipped_files
from imageguard.policy.principals import Identity
from imageguard.store import AclStore
from imageguard_devtools.demo.site import IMAGES, USERS, make_store

ROOT = Path(__file__).resolve().parents[2]
TALK = ROOT / "docs" / "talk"
DECK = TALK / "deck.md"
GUIDE = ROOT / "docs" / "talk.md"
PDF = TALK / "deck.pdf"
EXAMPLES = ROOT / "docs" / "examples"

#: Marp's directives: an HTML comment holding only these is configuration, not a note.
DIRECTIVES = {
    "theme", "style", "headingDivider", "size", "math", "title", "author", "description",
    "keywords", "url", "image", "marp", "lang", "paginate", "header", "footer", "class",
    "backgroundColor", "backgroundImage", "backgroundPosition", "backgroundRepeat",
    "backgroundSize", "color", "transition",
}  # fmt: skip
DEMO_SCREENSHOTS = {"demo-login.png", "demo-alice.png", "demo-bob.png", "demo-carol.png",
                    "demo-logged-out.png"}  # fmt: skip
SLIDES_TIME = 25 * 60
QUESTIONS_TIME = 5 * 60


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class Slide:
    number: int
    body: str  # the Markdown, without the notes
    notes: tuple[str, ...]
    heading: str


def front_matter(text: str) -> tuple[str, str]:
    """The YAML front matter and the rest of *text*."""
    lines = text.split("\n")
    assert lines[0] == "---", "the deck starts with Marp's front matter"
    end = lines.index("---", 1)
    return "\n".join(lines[1:end]), "\n".join(lines[end + 1 :])


def split_slides(body: str) -> list[str]:
    """Split on Marp's ``---`` lines, except inside fenced code or an HTML comment."""
    slides: list[list[str]] = [[]]
    fence = False
    comment = False
    for line in body.split("\n"):
        stripped = line.strip()
        if not comment and stripped.startswith("```"):
            fence = not fence
        elif not fence:
            if not comment and "<!--" in stripped:
                comment = "-->" not in stripped[stripped.index("<!--") :]
            elif comment and "-->" in stripped:
                comment = False
            elif not comment and stripped == "---":
                slides.append([])
                continue
        slides[-1].append(line)
    return ["\n".join(lines).strip("\n") for lines in slides]


COMMENT = re.compile(r"<!--(.*?)-->", re.S)


def is_directive(comment: str) -> bool:
    """True for a comment of Marp directives only (``_class: lead``)."""
    lines = [line.strip() for line in comment.strip().split("\n") if line.strip()]
    keys = [re.match(r"_?([A-Za-z]+)\s*:", line) for line in lines]
    return bool(lines) and all(key is not None and key.group(1) in DIRECTIVES for key in keys)


def outside_code(text: str) -> str:
    """*text* without its fenced code blocks."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def parse_slide(number: int, text: str) -> Slide:
    comments = COMMENT.findall(outside_code(text))
    notes = tuple(c.strip() for c in comments if not is_directive(c))
    body = COMMENT.sub("", text)
    headings = re.findall(r"^#{1,2} (.+)$", outside_code(body), re.M)
    return Slide(number, body, notes, headings[0].strip() if headings else "")


def load_deck() -> tuple[str, list[Slide]]:
    matter, body = front_matter(DECK.read_text(encoding="utf-8"))
    return matter, [parse_slide(n, text) for n, text in enumerate(split_slides(body), 1)]


def plain(markdown: str) -> str:
    """Markdown inline text as shown: no code ticks, emphasis or extra spaces."""
    text = re.sub(r"[`*_]", "", markdown)
    return " ".join(text.split())


def squeezed(text: str) -> str:
    """*text* as :func:`plain` shows it, without any white space (PDF text extraction
    puts spaces around code spans)."""
    return "".join(plain(text).split())


def section(text: str, heading: str) -> str:
    """The part of *text* from the ``## heading`` to the next ``## ``."""
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def minutes(value: str) -> int:
    """Seconds of an ``m:ss`` duration."""
    whole, seconds = value.strip().split(":")
    return int(whole) * 60 + int(seconds)


@dataclass(frozen=True)
class Timing:
    number: int | None
    title: str
    seconds: int
    start: int
    end: int


def load_timings() -> list[Timing]:
    table = section(GUIDE.read_text(encoding="utf-8"), "Minute by minute")
    rows = []
    for line in table.split("\n"):
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not re.fullmatch(r"\d+:\d\d-\d+:\d\d", cells[3]):
            continue
        start, end = cells[3].split("-")
        number = int(cells[0]) if cells[0] else None
        rows.append(Timing(number, cells[1], minutes(cells[2]), minutes(start), minutes(end)))
    return rows


@pytest.fixture(scope="module")
def slides() -> list[Slide]:
    return load_deck()[1]


@pytest.fixture(scope="module")
def guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- the deck


def test_the_deck_is_marp_16_9() -> None:
    matter, _ = load_deck()
    assert re.search(r"^marp: true$", matter, re.M)
    assert re.search(r"^size: 16:9$", matter, re.M)


def test_a_title_slide_and_14_to_18_content_slides(slides: list[Slide]) -> None:
    title = slides[0]
    assert re.search(r"^# \S", title.body, re.M), "the first slide has the talk's title"
    assert "_class: lead" in split_slides(front_matter(DECK.read_text())[1])[0]
    assert 14 <= len(slides) - 1 <= 18, f"{len(slides) - 1} content slides"
    for slide in slides[1:]:
        assert slide.heading, f"slide {slide.number} has no heading"
    headings = [plain(slide.heading) for slide in slides]
    assert len(set(headings)) == len(headings), "two slides share a heading"


def test_every_slide_has_speaker_notes(slides: list[Slide]) -> None:
    for slide in slides:
        words = sum(len(note.split()) for note in slide.notes)
        assert words >= 40, f"slide {slide.number} ({slide.heading}): {words} words of notes"


def image_paths(markdown: str) -> list[str]:
    """Every local image of the Markdown: ``![...](path)`` and ``<img src="path">``."""
    found = re.findall(r"!\[[^\]]*\]\(([^)\s]+)", markdown)
    found += re.findall(r"<img[^>]*\bsrc=\"([^\"]+)\"", markdown)
    return [path for path in found if not re.match(r"[a-z]+:", path)]


def test_every_image_the_deck_references_exists(slides: list[Slide]) -> None:
    referenced = [path for slide in slides for path in image_paths(slide.body)]
    missing = [path for path in referenced if not (TALK / path).is_file()]
    assert not missing, f"docs/talk/deck.md names images that do not exist: {missing}"
    names = {Path(path).name for path in referenced}
    assert "phases.svg" in names
    assert names >= DEMO_SCREENSHOTS, f"screenshots not used: {DEMO_SCREENSHOTS - names}"
    charts = [p for p in referenced if re.search(r"bench-\w+\.png$|bench/results/.+\.png$", p)]
    assert charts, "the deck shows no benchmark chart"


def test_links_of_the_deck_and_the_guide_lead_to_files() -> None:
    for document in (DECK, GUIDE):
        text = COMMENT.sub("", outside_code(document.read_text(encoding="utf-8")))
        for target in re.findall(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (document.parent / target.split("#")[0]).resolve()
            assert path.exists(), f"{document.name} links to a missing {target}"


def generated_and_example_lines() -> set[str]:
    """Every line of the Apache configuration the generator ships and the examples hold."""
    texts = list(shipped_files().values())
    texts += [p.read_text() for p in EXAMPLES.glob("*.conf")]
    texts += [p.read_text() for p in EXAMPLES.glob("*.htaccess")]
    return {" ".join(line.split()) for text in texts for line in text.split("\n")}


def test_apache_lines_of_the_deck_are_the_generators_or_the_examples() -> None:
    known = generated_and_example_lines()
    blocks = re.findall(r"^```apache\n(.*?)^```", DECK.read_text(), re.S | re.M)
    assert blocks, "the deck shows the configuration"
    for block in blocks:
        for line in block.split("\n"):
            shown = " ".join(line.split())
            if shown and not shown.startswith("#"):
                assert shown in known, f"not written by imageguard apache-conf: {line!r}"


# --------------------------------------------------------------------------- the guide


def test_timings_add_up_and_name_every_slide(slides: list[Slide]) -> None:
    timings = load_timings()
    numbered = [t for t in timings if t.number is not None]
    assert [t.number for t in numbered] == [s.number for s in slides], "one row per slide"
    for timing, slide in zip(numbered, slides):
        assert plain(timing.title) == plain(slide.heading), (timing.number, timing.title)
    assert sum(t.seconds for t in numbered) == SLIDES_TIME
    questions = [t for t in timings if t.number is None]
    assert [(plain(t.title), t.seconds) for t in questions] == [("Questions", QUESTIONS_TIME)]
    clock = 0
    for timing in timings:
        assert timing.start == clock, f"{timing.title} starts at {timing.start}, not {clock}"
        assert timing.end - timing.start == timing.seconds, timing.title
        clock = timing.end
    assert clock == SLIDES_TIME + QUESTIONS_TIME


def test_every_slide_notes_its_time(slides: list[Slide]) -> None:
    """The notes open with the slide's time, the same as the guide's table."""
    planned = {t.number: t.seconds for t in load_timings() if t.number is not None}
    for slide in slides:
        found = re.search(r"\((\d+:\d\d)\)", slide.notes[0])
        assert found, f"slide {slide.number}'s notes do not give its time"
        assert minutes(found.group(1)) == planned[slide.number], slide.heading


@dataclass(frozen=True)
class Step:
    kind: str  # "Step" or "Aside"
    title: str
    slide: int
    fallback: int
    text: str


def demo_steps(guide: str) -> Iterator[Step]:
    demo = section(guide, "The live demo, command by command")
    parts = re.split(r"^### ", demo, flags=re.M)[1:]
    for part in parts:
        title, _, text = part.partition("\n")
        fallback = re.search(r"^Fallback: slide (\d+)\b", text, re.M)
        assert fallback, f"{title!r} names no fallback slide"
        if title.startswith("Aside on slide "):
            slide = int(re.findall(r"\d+", title)[0])
            yield Step("Aside", title, slide, int(fallback.group(1)), text)
        else:
            found = re.fullmatch(r"Step (\d+): .+ \(slide (\d+)\)", title)
            assert found, f"not a step heading: {title!r}"
            yield Step("Step", title, int(found.group(2)), int(fallback.group(1)), text)


def test_each_demo_step_has_a_fallback_slide_of_screenshots(
    slides: list[Slide], guide: str
) -> None:
    steps = [step for step in demo_steps(guide) if step.kind == "Step"]
    demo_slides = [slide for slide in slides if slide.heading.startswith("Demo ")]
    assert len(steps) == len(demo_slides) >= 5
    for index, (step, slide) in enumerate(zip(steps, demo_slides), 1):
        assert step.title.startswith(f"Step {index}: ")
        assert step.fallback == step.slide == slide.number, step.title
        assert slide.heading.startswith(f"Demo {index}/{len(steps)} ")
        shots = [p for p in image_paths(slide.body) if Path(p).name.startswith("demo-")]
        assert shots, f"the fallback slide of {step.title!r} has no screenshot"
    used = {Path(p).name for s in demo_slides for p in image_paths(s.body)}
    assert used >= DEMO_SCREENSHOTS


def test_each_aside_is_shown_on_its_own_slide(slides: list[Slide], guide: str) -> None:
    asides = [step for step in demo_steps(guide) if step.kind == "Aside"]
    assert asides
    for aside in asides:
        assert aside.fallback == aside.slide, aside.title
        slide = slides[aside.slide - 1]
        shown = re.findall(r"`(curl [^`]*\$E/[^`]*)`", slide.body)
        assert shown, f"slide {aside.slide} does not show the aside's command"
        for command in shown:
            assert " ".join(command.split()) in " ".join(aside.text.split()), command


def test_the_demo_users_are_the_demos(guide: str) -> None:
    for user in USERS:
        assert f"**{user.name}** / **{user.password}**" in guide
        assert f"-d user={user.name} -d password={user.password} " in guide
    deck = DECK.read_text()
    for name, password in re.findall(r"-d user=(\w+) \\\s+-d password=(\w+)", deck):
        assert any(u.name == name and u.password == password for u in USERS), name


def sent_and_refused(store: AclStore, identity: Identity) -> tuple[int, int]:
    granted = [store.decide(image.relpath, identity).granted for image in IMAGES]
    return sum(granted), len(granted) - sum(granted)


def test_the_galleries_the_guide_describes(guide: str, tmp_path: Path) -> None:
    """ "The gallery for bob: 7 sent, 5 refused": what the demo's rules decide."""
    claims = re.findall(
        r"the gallery for (anyone not logged in|\w+): (\d+) sent, (\d+) refused",
        " ".join(guide.split()),
        re.I,
    )
    assert len(claims) >= 5
    make_store(tmp_path / "acl.db")
    users = {user.name: user for user in USERS}
    with AclStore(tmp_path / "acl.db") as store:
        for who, sent, refused in claims:
            if who == "anyone not logged in":
                identity = Identity()
            else:
                identity = Identity(who, frozenset(users[who].session_groups))
            assert sent_and_refused(store, identity) == (int(sent), int(refused)), who


# --------------------------------------------------------------------------- figures

CITED = re.compile(
    r"(~?\d[\d,]*(?:\.\d+)?)[^\d\[\]()]{0,24}?\(\[measured\]\(([^)#\s]+)#([^)\s]+)\)\)"
)
#: A benchmark figure: a number with a unit of the benchmark.
FIGURE = re.compile(
    r"(?<![\w.])~?\d[\d,]*(?:\.\d+)?\s*(?:\u00d7(?!\d)|req/s|requests/s|ms\b|%|percent\b|times\b)"
)


def lookup(results: dict[str, Any], keys: str) -> float:
    value: Any = results
    for key in keys.split("."):
        value = value[key]
    return float(value)


def figures_of(document: Path) -> Iterator[tuple[int, str, str, str]]:
    for number, line in enumerate(document.read_text(encoding="utf-8").split("\n"), 1):
        for found in CITED.finditer(line):
            yield number, found.group(1), found.group(2), found.group(3)


@pytest.mark.parametrize("document", [DECK, GUIDE], ids=["deck", "guide"])
def test_every_cited_figure_is_the_measured_one(document: Path) -> None:
    cited = list(figures_of(document))
    assert cited, f"{document.name} cites no figure"
    for line, shown, target, keys in cited:
        path = (document.parent / target).resolve()
        assert path.parent == ROOT / "bench" / "results" and path.suffix == ".json", target
        results = json.loads(path.read_text())
        paths = keys.split("/")
        value = lookup(results, paths[0])
        if len(paths) == 2:
            value /= lookup(results, paths[1])
        number = shown.lstrip("~").replace(",", "")
        decimals = len(number.partition(".")[2])
        assert round(value, decimals) == float(number), f"{document.name}:{line}: {shown}"


@pytest.mark.parametrize("document", [DECK, GUIDE], ids=["deck", "guide"])
def test_no_figure_goes_uncited(document: Path) -> None:
    text = document.read_text(encoding="utf-8")
    skip = len(front_matter(text)[0].split("\n")) + 2 if document == DECK else 0  # its CSS
    for number, line in enumerate(text.split("\n"), 1):
        if number <= skip:
            continue
        line = re.sub(r"!\[[^\]]*\]", "", line)  # Marp's image keywords: bg right:40%
        for found in FIGURE.finditer(line):
            after = line[found.end() :]
            assert re.match(r"[^\d\[\]()]{0,24}?\(\[measured\]\(", after), (
                f"{document.name}:{number}: {found.group(0)!r} is not cited"
            )


# --------------------------------------------------------------------------- the build


def test_the_build_is_pinned_and_uses_the_system_browser() -> None:
    package = json.loads((TALK / "package.json").read_text())
    version = package["devDependencies"]["@marp-team/marp-cli"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), "pin an exact Marp CLI version"
    lock = json.loads((TALK / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/@marp-team/marp-cli"]["version"] == version
    script = (TALK / "build.sh").read_text()
    assert (TALK / "build.sh").stat().st_mode & 0o111, "build.sh is executable"
    assert "npm ci" in script and "CHROME_PATH" in script and "CHROME_NO_SANDBOX" in script
    assert "PUPPETEER_SKIP_DOWNLOAD=1" in script
    ignored = (ROOT / ".gitignore").read_text().split("\n")
    assert "docs/talk/node_modules/" in ignored
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\.PHONY:.*\bslides\b", makefile, re.M)
    assert re.search(r"^slides:.*\n(?:\t.*\n)*\tdocs/talk/build\.sh$", makefile, re.M)


def pdf_pages(path: Path) -> int:
    """The PDF's page count: pdfinfo's, else its ``/Type /Page`` objects."""
    if shutil.which("pdfinfo"):
        out = subprocess.run(
            ["pdfinfo", str(path)], capture_output=True, text=True, check=True
        ).stdout
        found = re.search(r"^Pages:\s+(\d+)$", out, re.M)
        assert found, out
        return int(found.group(1))
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", path.read_bytes()))


def test_the_built_pdf_has_one_page_per_slide(slides: list[Slide]) -> None:
    assert PDF.exists(), "docs/talk/deck.pdf is committed: rebuild it with make slides"
    assert pdf_pages(PDF) == len(slides)


def test_the_built_pdf_is_this_deck(slides: list[Slide]) -> None:
    """Each page shows its slide's heading: a PDF built from an older deck fails."""
    assert PDF.exists(), "docs/talk/deck.pdf is committed: rebuild it with make slides"
    if not shutil.which("pdftotext"):  # make test installs poppler-utils
        pytest.skip("pdftotext (poppler-utils) is not installed")
    for slide in slides:
        page = subprocess.run(
            ["pdftotext", "-f", str(slide.number), "-l", str(slide.number), str(PDF), "-"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert squeezed(slide.heading) in squeezed(page), f"page {slide.number}: {slide.heading}"
