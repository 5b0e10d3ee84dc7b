"""Progress of long command-line work, on standard error: a live bar for a person, plain lines for a pipe.

On a terminal, rich draws one line that updates in place (photos done/total, regions
done/total, elapsed, estimated time left). When standard error is not a terminal, a
plain line is printed when something changes, at most every PLAIN_INTERVAL seconds
(and always for the last step), so a log file stays short. Standard output is left
to the table or the JSON document.

The estimate is elapsed / work done * work left, where a photo in progress counts
as the fraction of its regions already done (a plain linear extrapolation).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

PLAIN_INTERVAL = 10.0  # seconds between two plain lines when only the regions moved


@dataclass(frozen=True)
class Step:
    """Where the work stands: whole units (photos) and, optionally, the regions inside them."""

    done: int
    total: int
    regions_done: int = 0
    regions_total: int = 0
    partial: float = 0.0  # fractions of units in progress (0..1 each, summed)

    @property
    def completed(self) -> float:
        return min(float(self.total), self.done + self.partial)


def eta_seconds(step: Step, elapsed: float) -> float | None:
    """Seconds left by linear extrapolation; None before any work is done."""
    if step.completed <= 0:
        return None
    return max(0.0, elapsed / step.completed * (step.total - step.completed))


def plain_line(label: str, unit: str, step: Step, elapsed: float) -> str:
    """'counting: 1/3 photos, regions 5/12, elapsed 12 s, about 24 s left'."""
    parts = [f"{label}: {step.done}/{step.total} {unit}"]
    if step.regions_total:
        parts.append(f"regions {step.regions_done}/{step.regions_total}")
    parts.append(f"elapsed {elapsed:.0f} s")
    eta = eta_seconds(step, elapsed)
    if eta is not None and step.done < step.total:
        parts.append(f"about {eta:.0f} s left")
    return ", ".join(parts)


class ProgressDisplay:
    """`with ProgressDisplay("counting", 3, "photos") as progress: progress.update(Step(...))`."""

    def __init__(self, label: str, total: int, unit: str, stream: TextIO | None = None,
                 enabled: bool = True) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.live = enabled and self.stream.isatty()
        self.started = time.monotonic()
        self._last_plain: tuple[float, Step] | None = None
        self._bar: Progress | None = None
        self._task = TaskID(0)

    def __enter__(self) -> ProgressDisplay:
        self.started = time.monotonic()
        if self.live:
            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(),
                TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                console=Console(file=self.stream), transient=False)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, counts=f"0/{self.total} {self.unit}")
        return self

    def update(self, step: Step) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            counts = f"{step.done}/{step.total} {self.unit}"
            if step.regions_total:
                counts += f"  regions {step.regions_done}/{step.regions_total}"
            self._bar.update(self._task, completed=step.completed, counts=counts)
            return
        self._plain(step)

    def note(self, text: str) -> None:
        """A one-off line (e.g. 'workers started'), above the bar on a terminal."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.console.print(text)
        else:
            print(text, file=self.stream, flush=True)

    def _plain(self, step: Step) -> None:
        now = time.monotonic()
        if self._last_plain is not None:
            last_time, last_step = self._last_plain
            moved = step != last_step
            if not moved or (step.done == last_step.done and step.done < step.total
                             and now - last_time < PLAIN_INTERVAL):
                return
        self._last_plain = (now, step)
        print(plain_line(self.label, self.unit, step, now - self.started), file=self.stream, flush=True)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()
