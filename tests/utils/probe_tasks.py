"""Probe tasks for the correlation tests, shaped like the pipeline's own flow.

A parent replaces itself with a chord (`self.replace`), one chord member fails once
with a transient error and is retried (`autoretry_for`), the callback is published by
the Redis backend when the last member ends, and it queues a task that fails for good
(a dead letter). They run on the real app with its signal handlers and PipelineTask
base, in a worker of any pool (tests/utils/probe_worker.py); each task keeps to the
queue it came from, so one worker runs the whole flow.
"""

from __future__ import annotations

from typing import Any

from celery import chord

from app.celery_app import app
from app.errors import InvalidRegion, StorageUnavailable
from app.observability.logging import get_logger
from app.tasks.base import PipelineTask

log = get_logger("tests.probe")


def _queue(task: PipelineTask) -> str:
    return str((task.request.delivery_info or {})["routing_key"])


@app.task(bind=True, base=PipelineTask, name="probe.fan_out")
def fan_out(self: PipelineTask, width: int, photo_id: int) -> Any:
    log.info("probe fanned out", width=width)
    queue = _queue(self)
    members = [count.s(index, photo_id).set(queue=queue) for index in range(width)]
    return self.replace(chord(members, gather.s(photo_id).set(queue=queue)))


@app.task(bind=True, base=PipelineTask, name="probe.count")
def count(self: PipelineTask, index: int, photo_id: int) -> int:
    if index == 0 and not self.request.retries:
        raise StorageUnavailable("probe: the store is away once")
    log.info("probe counted", index=index)
    return index


@app.task(bind=True, base=PipelineTask, name="probe.gather")
def gather(self: PipelineTask, results: list[int], photo_id: int) -> list[int]:
    log.info("probe gathered", results=sorted(results))
    bury.apply_async(args=[photo_id], queue=_queue(self))
    return sorted(results)


@app.task(bind=True, base=PipelineTask, name="probe.bury")
def bury(self: PipelineTask, photo_id: int) -> None:
    raise InvalidRegion("probe: this one fails for good")
