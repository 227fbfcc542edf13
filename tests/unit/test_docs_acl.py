"""docs/acl.md's examples are run: the worked-example table, the ladder, the API snippet."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from imageguard.policy.acl import Rule, decide
from imageguard.policy.patterns import compile_pattern
from imageguard.policy.principals import Identity

DOC = (Path(__file__).resolve().parents[2] / "docs" / "acl.md").read_text()


def section(title: str) -> str:
    start = DOC.index(title)
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end != -1 else len(DOC)]


def code_blocks(text: str, lang: str = "") -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.DOTALL)


def worked_rules() -> list[Rule]:
    block = code_blocks(section("### Worked examples"))[0]
    return [Rule.parse(*line.split()) for line in block.splitlines() if line.strip()]


def viewer(text: str) -> Identity:
    if text == "anonymous":
        return Identity()
    name, _, groups = text.partition(", group ")
    return Identity(name, frozenset(groups.split()) if groups else frozenset())


ROWS = [
    tuple(cell.strip().strip("`") for cell in line.strip("|").split("|"))
    for line in section("### Worked examples").splitlines()
    if line.startswith("| ") and not line.startswith(("| viewer", "| ---"))
]


@pytest.mark.parametrize(("who", "image", "result", "why"), ROWS, ids=[r[3] for r in ROWS])
def test_worked_example_rows(who: str, image: str, result: str, why: str) -> None:
    assert decide(worked_rules(), image, viewer(who)).level.label == result, why


def test_worked_examples_were_found() -> None:
    assert len(ROWS) >= 8


def test_ladder_is_in_order() -> None:
    block = code_blocks(section("### Specificity"))[0]
    patterns = [line.split()[0] for line in block.splitlines() if line.strip()]
    keys = [compile_pattern(p).specificity.key() for p in patterns]
    assert len(patterns) == 11
    assert keys == sorted(keys, reverse=True) and len(set(keys)) == len(keys)


def test_api_snippet_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from imageguard import AclStore

    db = tmp_path / "acl.db"
    AclStore.create(db).close()
    snippet = code_blocks(DOC, "python")[0].replace("/var/lib/imageguard/acl.db", str(db))
    exec(compile(snippet, "docs/acl.md", "exec"), {"user": "ann", "filename": "x.jpg"})
    assert capsys.readouterr().out.startswith("full rule 'users/ann/x.jpg user:ann full'")
