"""RabbitMQ's own dead letters, recorded like any other.

On RabbitMQ every task queue dead-letters into the exchange `demeter.dlx` (app/topology.py): a
message rejected without requeue (an unregistered task, a malformed message), or delivered more
than BROKER_DELIVERY_LIMIT times on a quorum queue (a task that kills its worker every time), ends
in the queue `broker_dead_letter`. No task ever ran to completion for such a message, so nothing
called `record`: `drain` takes them off that queue one by one (basic.get) and writes each into the
`dead_letters` table, where `demeter dlq` lists and replays it. A message is acknowledged only
after its row is committed, so a crash in between records it twice at worst (same task id: one row).

On Redis and the embedded broker there is no broker dead-lettering and `drain` returns 0.
"""

from __future__ import annotations

import json
from typing import Any

from celery import Celery
from kombu import Connection

from app import names
from app.config import Settings
from app.deadletter.record import Failure, store
from app.observability import correlation
from app.observability.logging import get_logger
from app.observability.signals import photo_id_of
from app.topology import BROKER_DEAD_LETTER_QUEUE, broker_kind

log = get_logger(__name__)

# The photo id's position in the arguments of the GPU tasks, which the cpu worker does not import
# (photo_id_of needs the task's signature); every other photo task is registered where this runs.
GPU_PHOTO_ARG = {names.PARENT_TASK: 0, names.CHILD_TASK: 1}
EXCEPTION_TYPE = "BrokerDeadLetter"


def failure_of(headers: dict[str, Any], body: Any, celery: Celery) -> Failure:
    """A dead letter from a dead-lettered Celery message (protocol 2: the task in `headers`, the body
    `[args, kwargs, embed]`); RabbitMQ's `x-death` header says why and from which queue."""
    death = (headers.get("x-death") or [{}])[0]
    reason, queue = str(death.get("reason", "unknown")), death.get("queue")
    args, kwargs = _arguments(body)
    task_name = str(headers.get("task") or "unknown")
    task = celery.tasks.get(task_name)
    if task is not None:
        photo_id = photo_id_of(task, args, kwargs)
    else:
        position = GPU_PHOTO_ARG.get(task_name)
        value = args[position] if position is not None and len(args) > position else None
        photo_id = value if isinstance(value, int) and not isinstance(value, bool) else None
    return Failure(
        task_name=task_name,
        task_id=str(headers.get("id") or f"broker-{death.get('time', '')}"),
        exception_type=EXCEPTION_TYPE,
        exception_message=f"RabbitMQ dead-lettered it from {queue}: {reason} (x-death count {death.get('count', 1)})",
        args=args,
        kwargs=kwargs,
        queue=str(queue)[:64] if queue else None,
        retries=int(headers.get("retries") or 0),
        correlation_id=headers.get(correlation.MESSAGE_HEADER),
        photo_id=photo_id,
    )


def _arguments(body: Any) -> tuple[list[Any], dict[str, Any]]:
    try:
        decoded = json.loads(body) if isinstance(body, bytes | str) else body
        args, kwargs = decoded[0], decoded[1]
        return list(args), dict(kwargs)
    except (ValueError, TypeError, IndexError, KeyError):
        return [], {}


def drain(celery: Celery, settings: Settings, limit: int = 1000) -> int:
    """Record up to `limit` messages waiting in `broker_dead_letter`; how many were recorded."""
    if broker_kind(settings.broker_url_resolved) != "amqp":
        return 0
    recorded = 0
    with Connection(settings.broker_url_resolved) as connection:
        queue = next(q for q in celery.conf.task_queues if q.name == BROKER_DEAD_LETTER_QUEUE)
        bound = queue(connection.default_channel)
        bound.declare()
        while recorded < limit:
            message = bound.get(no_ack=False, accept=["json"])
            if message is None:
                break
            failure = failure_of(dict(message.headers or {}), message.body, celery)
            letter_id = store(failure)
            message.ack()
            recorded += 1
            log.error("task dead-lettered by the broker", dead_letter_id=letter_id, task=failure.task_name,
                      task_id=failure.task_id, reason=failure.exception_message, photo_id=failure.photo_id)
    return recorded
