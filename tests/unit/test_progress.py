"""The command line's progress bar: drawn on terminals, silent elsewhere."""

from __future__ import annotations

import io

from imageguard.cli.progress import ProgressBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_on_a_terminal() -> None:
    out = Terminal()
    with ProgressBar(4, "warming", out) as bar:
        for name in ("a", "b", "c", "d"):
            bar.advance(name)
        bar.line("d: refused")
    text = out.getvalue()
    assert "warming [" in text and "4/4" in text
    assert "d: refused\n" in text
    assert text.endswith("\r\033[K")  # the bar is wiped at the end


def test_nothing_drawn_off_a_terminal() -> None:
    out = io.StringIO()
    with ProgressBar(2, "verifying", out) as bar:
        bar.advance("a")
        bar.line("a: not a JPEG")
        bar.advance("b")
    assert out.getvalue() == "a: not a JPEG\n"


def test_empty_job() -> None:
    out = Terminal()
    with ProgressBar(0, "warming", out):
        pass
    assert "0/0" in out.getvalue()
