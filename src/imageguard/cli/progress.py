"""A progress bar for the command line's long jobs (warming renditions, verifying files).

Drawn on one terminal line, redrawn at most ten times a second; on a stream that is
not a terminal (a log file, a pipe, cron's mail), nothing is drawn, so the output
stays the summary the command prints at the end.
"""

from __future__ import annotations

import shutil
import time
from types import TracebackType
from typing import TextIO

_REDRAW_S = 0.1


class ProgressBar:
    """``with ProgressBar(total, "warming", stream) as bar: ... bar.advance(name)``."""

    def __init__(self, total: int, label: str, stream: TextIO) -> None:
        self.total = max(0, total)
        self.label = label
        self.stream = stream
        self.done = 0
        self._drawn_at = 0.0
        self._enabled = stream.isatty()

    def __enter__(self) -> ProgressBar:
        self._draw("", force=True)
        return self

    def advance(self, item: str = "") -> None:
        """One more item finished; *item* names it on the bar."""
        self.done += 1
        self._draw(item, force=self.done == self.total)

    def line(self, text: str) -> None:
        """Print *text* on a line of its own above the bar."""
        if self._enabled:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self._draw("", force=True)

    def _draw(self, item: str, force: bool = False) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn_at < _REDRAW_S:
            return
        self._drawn_at = now
        columns = shutil.get_terminal_size((80, 24)).columns
        count = f"{self.done}/{self.total}"
        width = max(10, min(40, columns - len(self.label) - len(count) - 20))
        filled = width * self.done // self.total if self.total else width
        bar = "#" * filled + "-" * (width - filled)
        text = f"{self.label} [{bar}] {count} {item}"
        self.stream.write("\r\033[K" + text[: columns - 1])
        self.stream.flush()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()
