"""Which photo a GPU queue will hand its worker next, read from the broker without taking it.

The GPU worker's solo pool reads a message only once the task before it has returned, so Celery
never holds the next photo's message while a photo runs; on Redis the waiting messages can be read
in place. Kombu's Redis transport keeps each priority level of a queue in its own list, pushed on
the left and popped on the right, levels polled lowest number first (see app/observability/metrics.py).
Only a guess: another consumer may take the message first, and nothing is lost if it does.
"""

from __future__ import annotations

import base64
import json
from functools import cache
from typing import Any, NamedTuple

import redis

from app import names
from app.observability.correlation import MESSAGE_HEADER
from app.observability.metrics import PRIORITY_LEVELS, priority_key

PEEK_DEPTH = 4  # messages read from the head of each level: region tasks of the running photo come first


class WaitingPhoto(NamedTuple):
    photo_id: int
    correlation_id: str | None  # from the message's header, for the lines logged about it before it runs


@cache
def _client(broker_url: str) -> redis.Redis:
    return redis.Redis.from_url(broker_url, socket_timeout=1.0, socket_connect_timeout=1.0)


def next_photo(broker_url: str, queue: str, skip: set[int]) -> WaitingPhoto | None:
    """The first ml_parent_task's photo waiting on `queue` that is not in `skip` (photo ids), or None
    (none waiting, not a Redis broker, Redis not answering, a message of another shape)."""
    if not broker_url.startswith(("redis://", "rediss://")):
        return None
    try:
        with _client(broker_url).pipeline(transaction=False) as pipe:
            for level in PRIORITY_LEVELS:
                pipe.lrange(priority_key(queue, level), -PEEK_DEPTH, -1)
            levels = pipe.execute()
    except redis.RedisError:
        return None
    for raw in (message for waiting in levels for message in reversed(waiting)):
        waiting_photo = _parent_photo(raw)
        if waiting_photo is not None and waiting_photo.photo_id not in skip:
            return waiting_photo
    return None


def _parent_photo(raw: bytes) -> WaitingPhoto | None:
    """The photo of a kombu Redis message holding ml_parent_task (task protocol 2, JSON), else None."""
    try:
        message: dict[str, Any] = json.loads(raw)
        headers = message.get("headers") or {}
        if headers.get("task") != names.PARENT_TASK:
            return None
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return WaitingPhoto(int(args[0]), headers.get(MESSAGE_HEADER))
    except (ValueError, KeyError, IndexError, TypeError):
        return None
