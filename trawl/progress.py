"""The progress display of ``trawl run``: a live line on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from backends.state import Progress


class ProgressDisplay:
    """Pages done / queued / failed, pages per second and each engine's concurrency (from
    ``levels``, when set), on stderr."""

    def __init__(self, stream: TextIO | None = None, plain_every_s: float = 2.0) -> None:
        self._stream = stream or sys.stderr
        self._console = Console(file=self._stream, highlight=False)
        self._live = self._console.is_terminal
        self._plain_every_s = plain_every_s
        self._last_plain = -plain_every_s
        self._status = None
        self._pending: str | None = None  # the newest plain line not printed yet
        self.levels: Callable[[], Mapping[str, int]] | None = None
        if self._live:
            self._status = self._console.status("starting…", spinner="dots")
            self._status.start()

    def update(self, progress: Progress, elapsed_s: float) -> None:
        line = format_line(progress, elapsed_s, self.levels() if self.levels else None)
        if self._status is not None:
            self._status.update(line)
        elif elapsed_s - self._last_plain >= self._plain_every_s:
            self._last_plain = elapsed_s
            self._pending = None
            print(line, file=self._stream, flush=True)
        else:
            self._pending = line

    def note(self, text: str) -> None:
        """One line for the user (above the live line, if there is one)."""
        self._console.print(text, soft_wrap=True)
        self._stream.flush()

    def close(self) -> None:
        """Stop the live line; in plain mode, print the final state if it was held back."""
        if self._pending is not None:
            print(self._pending, file=self._stream, flush=True)
            self._pending = None
        if self._status is not None:
            self._status.stop()
            self._status = None


def format_line(
    progress: Progress, elapsed_s: float, levels: Mapping[str, int] | None = None
) -> str:
    """``pages done 120  queued 40 ... 61.2 pages/s  2.0s  concurrency http 24``: the
    concurrency of each engine that has run a page (autoscaled, it moves)."""
    outcomes = progress.by_outcome
    done = outcomes.get("succeeded", 0)
    failed = outcomes.get("failed", 0)
    queued = max(progress.published - progress.finished, 0)
    rate = progress.finished / elapsed_s if elapsed_s > 0 else 0.0
    line = (
        f"pages done {done}  queued {queued}  failed {failed}  "
        f"filtered {outcomes.get('filtered', 0)}  records {progress.records}  "
        f"{rate:.1f} pages/s  {elapsed_s:.1f}s"
    )
    if levels:
        line += "  concurrency " + " ".join(f"{e} {n}" for e, n in levels.items())
    return line


def summary_table(progress: Progress, elapsed_s: float, status: str) -> Table:
    """The table printed when a run ends: outcomes per phase, failures by class."""
    table = Table(title=f"crawl {status} in {elapsed_s:.1f}s", title_justify="left")
    table.add_column("phase")
    for col in ("succeeded", "failed", "filtered"):
        table.add_column(col, justify="right")
    for phase, counts in sorted(progress.by_phase.items()):
        table.add_row(phase, *(str(counts.get(c, 0)) for c in ("succeeded", "failed", "filtered")))
    o = progress.by_outcome
    table.add_row(
        Text("total", style="bold"),
        *(str(o.get(c, 0)) for c in ("succeeded", "failed", "filtered")),
    )
    return table
