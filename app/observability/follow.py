"""`demeter logs --correlation-id ID [FILES]`: one photo's story from the JSON logs, in time order.

Files are merged and sorted by timestamp; with no files (or `-`) standard input is
read as a stream, so `tail -F worker.log | demeter logs --correlation-id ID` works
live. Besides the lines that carry the id, Celery's own lines about the same tasks
that are logged before a task's context exists ("Task ... received") are included:
they carry only the task id (and the worker). From a stream they are held back until
a line of the id names their task, so they can print a little late. Lines that are
not JSON (Celery's banner) are skipped.

The same without this tool (no "received" lines):

    jq -rRn --arg cid ID '[inputs | fromjson? | select(.correlation_id == $cid)] | sort_by(.timestamp)[]
        | "\\(.timestamp) \\(.level) \\(.worker // .logger) \\(.task_name // "-") \\(.event)"' FILES
"""

from __future__ import annotations

import json
import sys
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

HEADER_FIELDS = {"timestamp", "level", "event", "logger", "correlation_id", "worker", "task_name", "task_id",
                 "parent_id", "root_id", "retries", "exception"}


def parse(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON objects among `lines`; anything else is skipped."""
    for raw in lines:
        text = raw.strip()
        if not text.startswith("{"):
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            yield record


class Selector:
    """(A stream) picks the id's lines, and the context-free lines of its tasks once a line of the id names them."""

    def __init__(self, correlation_id: str, pending_limit: int = 10_000) -> None:
        self.correlation_id = correlation_id
        self.task_ids: set[str] = set()
        self.pending: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self.pending_limit = pending_limit

    def feed(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """The records to print now: none, this one, or this one after those held back for its task."""
        task_id = record.get("task_id")
        if record.get("correlation_id") == self.correlation_id:
            held: list[dict[str, Any]] = []
            if isinstance(task_id, str) and task_id not in self.task_ids:
                self.task_ids.add(task_id)
                held = self.pending.pop(task_id, [])
            return [*held, record]
        if record.get("correlation_id") is None and isinstance(task_id, str):
            if task_id in self.task_ids:
                return [record]
            self.pending.setdefault(task_id, []).append(record)
            while len(self.pending) > self.pending_limit:
                self.pending.popitem(last=False)
        return []


def select(records: list[dict[str, Any]], correlation_id: str) -> list[dict[str, Any]]:
    """(Whole files) the id's lines and the context-free lines of its tasks, keeping the records' order."""
    task_ids = {r["task_id"] for r in records
                if r.get("correlation_id") == correlation_id and isinstance(r.get("task_id"), str)}
    return [r for r in records if r.get("correlation_id") == correlation_id
            or (r.get("correlation_id") is None and r.get("task_id") in task_ids)]


def _value(value: Any) -> str:
    return value if isinstance(value, str) and " " not in value else json.dumps(value, default=str)


def render(record: dict[str, Any]) -> str:
    """One readable line: time, level, where, which task, what happened, then the other fields."""
    stamp = str(record.get("timestamp", "")).replace("T", " ").removesuffix("Z")[:23]
    where = record.get("worker") or record.get("logger") or "-"
    task = "-"
    if record.get("task_name") or record.get("task_id"):
        task = f"{str(record.get('task_name') or '?').rsplit('.', 1)[-1]}[{str(record.get('task_id') or '?')[:8]}]"
    fields = {k: v for k, v in record.items() if k not in HEADER_FIELDS}
    if record.get("retries"):
        fields["retries"] = record["retries"]
    extra = " ".join(f"{k}={_value(v)}" for k, v in fields.items())
    line = f"{stamp:<23}  {record.get('level', '-')!s:<8} {where:<16} {task:<32} {record.get('event', '')}"
    line = f"{line}  {extra}" if extra else line
    if record.get("exception"):
        line += "\n" + "\n".join(f"    {part}" for part in str(record["exception"]).splitlines())
    return line


def _read_files(files: Sequence[Path]) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for path in files:
        with path.open(errors="replace") as handle:
            records.extend(parse(handle))
    return sorted(records, key=lambda r: str(r.get("timestamp", "")))  # stable: equal stamps keep file order


def follow(correlation_id: str, files: Sequence[Path], out: TextIO | None = None, stdin: TextIO | None = None) -> int:
    """Print the lines of `correlation_id`; 0 when there were some, 1 when none."""
    out = out or sys.stdout
    paths = [p for p in files if str(p) != "-"]
    printed = 0
    if paths:
        for record in select(_read_files(paths), correlation_id):
            print(render(record), file=out)
            printed += 1
    else:
        selector = Selector(correlation_id)
        for record in parse(stdin or sys.stdin):
            for line in selector.feed(record):
                print(render(line), file=out, flush=True)
                printed += 1
    if not printed:
        print(f"no log lines with correlation_id {correlation_id}", file=sys.stderr)
    return 0 if printed else 1
