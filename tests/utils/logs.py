"""Waiting on, and picking from, the JSON log lines of worker subprocesses."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

Line = dict[str, Any]


def wait_for_lines(read: Callable[[], list[Line]], predicate: Callable[[Line], bool], count: int = 1,
                   timeout: float = 120.0) -> list[Line]:
    """Poll `read()` until at least `count` lines match; the matching lines."""
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in read() if predicate(line)]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(found)} of {count} expected log lines after {timeout} s")
        time.sleep(0.3)


def celery_line(line: Line, task_name: str, outcome: str) -> bool:
    """Celery's own trace line, e.g. "Task app.tasks.io.render_annotated[...] succeeded in 0.1s"."""
    event = str(line.get("event", ""))
    return event.startswith(f"Task {task_name}[") and f"] {outcome}" in event


def received(line: Line) -> bool:
    """The consumer's "Task x[id] received": logged before the task's context exists."""
    return line.get("logger") == "celery.worker.strategy"
