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

RabbitMQ gives no client a look at its messages without taking them, nor at its unacknowledged
ones at all. Its management API (BROKER_API) does give counts: ready and unacknowledged messages per
queue. Counts cannot say which photo a message is for, so on RabbitMQ a photo counts as lost only
when the task queues hold no message at all, in two looks further apart than the API refreshes its
figures (`collect_statistics_interval`, 5 s by default); while they hold any, every photo may be one
of them and none is called lost. Without BROKER_API only the ready messages can be counted (a
passive queue declaration): while any task waits, every photo may be one of them (a backlog is not
a failure); with none waiting the unacknowledged ones still cannot be seen (`Unseen`): the
reconciler then does nothing and relies on what RabbitMQ itself keeps (durable queues, persistent
messages confirmed to the publisher, a closed connection's deliveries requeued), and the sweeper
falls back to age alone, as on the embedded filesystem broker.

Used by the stale-session sweeper (never fail a photo whose work is alive) and the reconciler
(re-enqueue photos whose work is gone), both cpu-queue tasks on the cpu worker.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from celery import Celery
from kombu import Connection

from app import names
from app.config import get_settings
from app.topology import broker_kind

UNACKED_KEY = "unacked"  # kombu.transport.redis.Channel.unacked_key
CHUNK = 500  # messages read per LRANGE/HSCAN round trip
# RabbitMQ's management API refreshes queue figures every collect_statistics_interval (5000 ms by default,
# rabbitmq.conf); two looks this far apart see the queues as they are now, not as they were.
MANAGEMENT_REFRESH_SECONDS = 6.0
# The sweeper or reconciler asking runs as a cpu-queue task, acknowledged late: one cpu message is its own.
OWN_DELIVERIES = 1

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


@dataclass(frozen=True)
class Unseen:
    """The broker's in-flight work cannot be seen, and why (a sentence for the log)."""

    reason: str


def photos_without_work(celery: Celery, candidates: Iterable[int],
                        settle_seconds: float = 2.0) -> set[int] | Unseen:
    """Those of `candidates` that have no message on the broker, in two looks `settle_seconds` apart
    (MANAGEMENT_REFRESH_SECONDS on RabbitMQ); `Unseen` when the broker cannot be looked into (then
    nobody can tell, and callers must not act on the answer as if it were one)."""
    missing = set(candidates)
    if not missing:
        return set()
    kind = broker_kind(str(celery.conf.broker_url))
    if kind == "amqp":
        return _photos_without_work_amqp(celery, missing)
    if kind != "redis":
        return Unseen("the embedded filesystem broker cannot be scanned")
    for attempt in range(2):
        if attempt:
            time.sleep(settle_seconds)
        found = scan(celery)
        if found is None:
            return Unseen("the broker cannot be scanned")
        missing -= found
        if not missing:
            break
    return missing


def _photos_without_work_amqp(celery: Celery, candidates: set[int]) -> set[int] | Unseen:
    """RabbitMQ: every candidate when the task queues hold no message but the caller's own in two looks
    MANAGEMENT_REFRESH_SECONDS apart, else none (any message may be a candidate's)."""
    api = get_settings().broker_api
    if not api:
        if ready_messages_amqp(celery):
            return set()  # a backlog: any waiting message may be a candidate's
        return Unseen("RabbitMQ shows unacknowledged messages only through its management API, and BROKER_API "
                      "is not set; its durable queues and redelivery of a closed connection's tasks keep the work")
    for attempt in range(2):
        if attempt:
            time.sleep(MANAGEMENT_REFRESH_SECONDS)
        try:
            queued = work_messages(management_queues(api, str(celery.conf.broker_url)))
        except (httpx.HTTPError, ValueError) as exc:
            return Unseen(f"RabbitMQ's management API (BROKER_API) did not answer: {exc}")
        if queued > OWN_DELIVERIES:
            return set()
    return candidates


def ready_messages_amqp(celery: Celery) -> int:
    """Messages waiting (ready, not yet delivered) in the declared task queues, from a passive
    `queue.declare` of each (AMQP 0-9-1 answers with the queue's ready `message-count`; the
    unacknowledged ones it does not count). 0 when RabbitMQ does not answer: nothing seen."""
    connection = celery.connection_for_write()
    total = 0
    try:
        with connection:
            for queue in celery.conf.task_queues or ():
                if is_work_queue(queue.name):
                    total += _ready(connection, queue.name)
    except (OSError, *connection.connection_errors):
        return 0
    return total


def _ready(connection: Connection, queue: str) -> int:
    """Ready messages of one queue; 0 for a queue not declared yet (its 404 closes only this channel)."""
    channel = connection.channel()
    try:
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except connection.channel_errors:
        return 0
    finally:
        with contextlib.suppress(*connection.channel_errors, *connection.connection_errors):
            channel.close()


def is_work_queue(name: str) -> bool:
    """A queue whose messages are tasks still to run: the GPU queues, `cpu`, `io`, and Celery's
    `celery_delayed_*` queues, where retries wait out their countdown on quorum queues (not the
    `dead_letter` copies nor `broker_dead_letter`)."""
    return names.is_gpu_queue(name) or name in (names.CPU_QUEUE, names.IO_QUEUE) or name.startswith("celery_delayed_")


def work_messages(queues: list[dict[str, Any]]) -> int:
    """Messages ready or delivered but unacknowledged in the task queues of a management API answer
    (`GET /api/queues/<vhost>`: a list of {"name", "messages_ready", "messages_unacknowledged", ...})."""
    return sum(int(queue.get("messages_ready") or 0) + int(queue.get("messages_unacknowledged") or 0)
               for queue in queues if is_work_queue(str(queue.get("name", ""))))


def management_queues(api: str, broker_url: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The queues of `broker_url`'s virtual host from the management API at `api`
    (http://user:pw@host:15672/api/). Raises httpx.HTTPError when it does not answer or refuses."""
    vhost = Connection(broker_url).virtual_host or "/"
    response = httpx.get(f"{api.rstrip('/')}/queues/{quote(vhost, safe='')}", timeout=timeout,
                         params={"columns": "name,messages_ready,messages_unacknowledged"})
    response.raise_for_status()
    return list(response.json())
