"""A progress line on stderr that does not flood logs.

On a terminal it redraws one line in place (at most 10 times a second). Elsewhere (a log
file, a batch system) it prints a plain line once a minute. Messages (failed inputs) are
printed on their own lines in both cases.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

__all__ = ["Progress"]


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Counts done/failed items of a known total and shows them (see the module doc)."""

    def __init__(
        self,
        total: int,
        label: str,
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        log_interval: float = 60.0,
    ) -> None:
        self.total, self.label = total, label
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.interval = 0.1 if self.tty else log_interval
        self.done = self.failed = 0
        self.start = self._last = time.monotonic()
        self._lock = threading.Lock()
        self._drawn = False

    def _text(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        pct = 100.0 * self.done / self.total if self.total else 100.0
        width = 24
        filled = int(width * self.done / self.total) if self.total else width
        bar = "#" * filled + "." * (width - filled)
        failed = f", {self.failed} failed" if self.failed else ""
        return (
            f"{self.label} [{bar}] {self.done}/{self.total} ({pct:.0f}%){failed}, "
            f"{rate:.1f}/s, {_clock(elapsed)} elapsed, ~{_clock(left)} left"
        )

    def _draw(self, final: bool = False) -> None:
        if not self.enabled:
            return
        if self.tty:
            end = "\n" if final else ""
            self.stream.write("\r\x1b[K" + self._text() + end)
            self._drawn = not final
        elif not final:
            self.stream.write(self._text() + "\n")
        self.stream.flush()

    def advance(self, failed: bool = False) -> None:
        """One more item done (``failed``: it failed)."""
        with self._lock:
            self.done += 1
            self.failed += int(failed)
            now = time.monotonic()
            if now - self._last >= self.interval:
                self._last = now
                self._draw()

    def message(self, text: str) -> None:
        """Print a line (above the bar on a terminal)."""
        with self._lock:
            if self._drawn:
                self.stream.write("\r\x1b[K")
                self._drawn = False
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        """Draw the final state on a terminal (logs get the summary instead)."""
        with self._lock:
            if self.tty:
                self._draw(final=True)
