"""Region progress written off the GPU worker's critical path: one thread, a bounded queue, one
transaction for whatever has queued up.

A region task hands its progress (`regions_done` and the region's count) over and returns; the
thread writes it a few milliseconds later. Progress is advisory: aggregation writes the counts that
matter, from the chord's results, and a late progress write never touches a session that has ended
(`repository.record_region_progress`). A crash loses at most the progress values still queued; a full
queue (the database away or slow) drops the newest value, never blocks a task.
"""

from __future__ import annotations

import contextvars
import os
import queue
import threading
from dataclasses import dataclass

from app.db import repository
from app.db.session import db_session
from app.errors import TransientError
from app.observability.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class RegionProgress:
    """One counted region, and the logging context of the task that counted it (its correlation id)."""

    photo_id: int
    region_index: int
    count: int
    mean_confidence: float | None
    recount_model: str  # "" for the photo's count, else the recount session's model
    context: contextvars.Context


class ProgressWriter:
    """A daemon thread that writes `RegionProgress` items in batches of up to `capacity`."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._queue: queue.Queue[RegionProgress | None] = queue.Queue(capacity)
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def put(self, photo_id: int, region_index: int, count: int, mean_confidence: float | None,
            recount_model: str = "") -> None:
        """Queue one region's progress; returns at once (drops it with a warning when the queue is full)."""
        self._start()
        item = RegionProgress(photo_id, region_index, count, mean_confidence, recount_model,
                              contextvars.copy_context())
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            log.warning("region progress dropped: the progress queue is full", region_index=region_index,
                        capacity=self.capacity)

    def close(self, timeout: float) -> None:
        """Write what is queued and stop the thread (waits at most `timeout` seconds)."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        thread.join(timeout)

    def _start(self) -> None:
        # Started on first use, in the process that uses it (never inherited through a fork).
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="region-progress", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.capacity:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            items = [item for item in batch if item is not None]
            if items:
                self._write(items)
            if len(items) < len(batch):  # close() asked to stop
                return

    def _write(self, items: list[RegionProgress]) -> None:
        """All items in one transaction, then one "region progress" line each, in the task's own context."""
        try:
            with db_session() as db:
                progress = [repository.record_region_progress(
                    db, photo_id=item.photo_id, region_index=item.region_index, count=item.count,
                    mean_confidence=item.mean_confidence, recount_model=item.recount_model) for item in items]
        except TransientError as exc:  # the database away: progress is advisory, the counts travel with the chord
            log.warning("region progress not written", regions=len(items), error=str(exc))
            return
        except Exception as exc:  # a bug here must not stop the thread: later progress would all be lost
            log.error("region progress not written", regions=len(items), error=f"{type(exc).__name__}: {exc}")
            return
        for item, written in zip(items, progress, strict=True):
            item.context.run(_log_progress, item, written)


def _log_progress(item: RegionProgress, written: tuple[int, int] | None) -> None:
    # One progress line per region while the chord runs (the same numbers are in the session row).
    if written is None:
        log.info("region progress", region_index=item.region_index, session_ended=True)
        return
    done, total = written
    log.info("region progress", region_index=item.region_index, regions_done=done, regions_total=total)
