"""What every target of fuzz/ does when run: write its seed corpus (``--seeds DIR``), or
hand its TestOneInput to atheris (the other arguments are libFuzzer's)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import atheris


def write_seeds(folder: str, seeds: list[bytes]) -> None:
    os.makedirs(folder, exist_ok=True)
    for number, seed in enumerate(seeds):
        with open(os.path.join(folder, f"seed-{number:03d}"), "wb") as out:
            out.write(seed)


def one_char_changed(fdp: atheris.FuzzedDataProvider, value: str) -> str | None:
    """*value* with one character, chosen by *fdp*, replaced by another it consumes; None
    when the replacement is the same character."""
    where = fdp.ConsumeIntInRange(0, len(value) - 1)
    char = fdp.ConsumeUnicode(1) or "\0"
    if char == value[where]:
        return None
    return value[:where] + char + value[where + 1 :]


def main(test_one_input: Callable[[bytes], None], seeds: Callable[[], list[bytes]]) -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--seeds":
        write_seeds(sys.argv[2], seeds())
        return
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
