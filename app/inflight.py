"""Which photos still have work in the broker: queued, reserved by a worker, or running.

The database knows which photos are unfinished; the broker knows which of them still have a task
that will move them on. On Redis every such task is a message in one of two places (kombu's Redis
transport): a queue's list (one list per priority level), or, once a worker took it and until it is
acknowledged, the hash `unacked` (tasks are acknowledged late, so a running task, and a retry waiting
for its countdown in a worker, are there too). A photo with no message in either has lost its work:
the broker lost it (restarted without persistence) or a crash stranded it.

One scan is not atomic: a worker pops a message (BRPOP) and only then copies it into `unacked`, and
a task publishes its successor just before its own acknowledgement. So a photo counts as lost only
when two scans a few seconds apart both miss it (`photos_without_work`).

Used by the stale-session sweeper (never fail a photo whose work is alive) and the reconciler
(re-enqueue photos whose work is gone), both on the cpu worker.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

from celery import Celery

from app import names

UNACKED_KEY = "unacked"  # kombu.transport.redis.Channel.unacked_key
CHUNK = 500  # messages read per LRANGE/HSCAN round trip

# Where each photo task carries the photo id when it is not passed by keyword: its position in args.
# (The chord callback's args are [region results, photo_id].)
PHOTO_ARG = {
    names.PARENT_TASK: 0,
    names.CHILD_TASK: 1,
    names.AGGREGATE_TASK: 1,
    names.AGGREGATE_REGION_TASK: 1,
    names.RENDER_TASK: 0,
}


def photo_of_message(payload: dict[str, Any]) -> int | None:
    """The photo id a kombu message (the JSON envelope Celery publishes, protocol 2) works on, or None."""
    task = (payload.get("headers") or {}).get("task")
    if task not in PHOTO_ARG:
        return None
    body = payload.get("body")
    try:
        if (payload.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body or "")
        args, kwargs, _embed = json.loads(body or "null")
        value = kwargs.get("photo_id") if "photo_id" in kwargs else args[PHOTO_ARG[task]]
    except (ValueError, TypeError, IndexError, KeyError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _photos(raw_messages: Iterable[bytes | str], unacked: bool) -> Iterator[int]:
    for raw in raw_messages:
        try:
            payload = json.loads(raw)
            if unacked:
                payload = payload[0]  # [message, exchange, routing key]
        except (ValueError, TypeError, IndexError, KeyError):
            continue
        photo_id = photo_of_message(payload) if isinstance(payload, dict) else None
        if photo_id is not None:
            yield photo_id


def scan(celery: Celery) -> set[int] | None:
    """Photo ids that have a message queued or unacknowledged on the broker now; None when the
    broker is not Redis (the embedded filesystem broker cannot be scanned this way)."""
    if not str(celery.conf.broker_url).startswith(("redis://", "rediss://")):
        return None
    found: set[int] = set()
    with celery.connection_for_read() as connection:
        channel: Any = connection.default_channel
        client = channel.client
        for queue in celery.conf.task_queues:
            for priority in channel.priority_steps:
                key = channel._q_for_pri(queue.name, priority)
                for start in range(0, int(client.llen(key)), CHUNK):
                    found.update(_photos(client.lrange(key, start, start + CHUNK - 1), unacked=False))
        found.update(_photos((raw for _tag, raw in client.hscan_iter(UNACKED_KEY, count=CHUNK)), unacked=True))
    return found


def photos_without_work(celery: Celery, candidates: Iterable[int], settle_seconds: float = 2.0) -> set[int] | None:
    """Those of `candidates` that no scan found, in two scans `settle_seconds` apart; None when the
    broker cannot be scanned (then nobody can tell, and callers must not act on the answer)."""
    missing = set(candidates)
    if not missing:
        return set()
    for attempt in range(2):
        if attempt:
            time.sleep(settle_seconds)
        found = scan(celery)
        if found is None:
            return None
        missing -= found
        if not missing:
            break
    return missing
