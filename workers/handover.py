"""A GPU queue changes hands at once when its worker dies: the successor requeues what it held.

Kombu's Redis transport emulates acknowledgements: a delivered message is copied into the hash
`unacked` (delivery tag -> [message, exchange, routing key]) and the sorted set `unacked_index`
(delivery tag -> delivery time) until it is acknowledged. A worker that shuts down cleanly puts
its unacknowledged messages back; one that is SIGKILLed (OOM killer, `docker kill`, a node reboot)
leaves them there, and any worker gives them back only after VISIBILITY_TIMEOUT (`restore_visible`:
an hour by default). The photo would wait an hour, and the stale sweeper would fail it first.

Every GPU queue `gpu_queue_<n>` has exactly one consumer, the worker with GPU_INDEX=n (one per GPU;
`workers/gpu.py` consumes only that queue). So an unacknowledged message whose routing key is
`gpu_queue_<n>` can only be held by that worker. When it starts, that message belongs to a dead
predecessor, and the new worker returns it to the front of its queue before it consumes anything.

What makes "exactly one consumer" true, and not only a deployment rule: a lease, the Redis key
`demeter:gpu-lease:gpu_queue_<n>` (a token unique to the worker process, GPU_LEASE_SECONDS long),
taken before the worker consumes and renewed by a thread every third of that time. A second worker
with the same GPU_INDEX waits until the lease is free, that is until the first one has exited (its
lease released at shutdown) or has been dead for GPU_LEASE_SECONDS (nobody renews it). So the
requeued messages are never running in a live worker. A worker that finds its lease taken by
another process (it could not renew it for GPU_LEASE_SECONDS, Redis being away or the process
frozen) stops with a warm shutdown: its current task finishes and both runs write through the
database's idempotency keys, so nothing is counted twice.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import uuid
from typing import Any

import redis
from celery import Celery

from app.observability.logging import get_logger

log = get_logger("workers.handover")

UNACKED_KEY = "unacked"  # kombu.transport.redis.Channel.unacked_key
UNACKED_INDEX_KEY = "unacked_index"  # kombu.transport.redis.Channel.unacked_index_key

# Renew: extend the lease only while it is still ours (a compare-and-set, atomic in Redis).
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
# Release: delete the lease only while it is still ours.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


def lease_key(queue: str) -> str:
    return f"demeter:gpu-lease:{queue}"


class QueueLease:
    """The right to consume one GPU queue: a Redis key holding this process's token, with a TTL."""

    def __init__(self, client: redis.Redis, queue: str, seconds: int) -> None:
        self.client, self.queue, self.seconds = client, queue, seconds
        self.key = lease_key(queue)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def try_acquire(self) -> bool:
        return bool(self.client.set(self.key, self.token, nx=True, px=self.seconds * 1000))

    def holder(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if isinstance(value, bytes) else value

    def acquire(self, poll: float = 1.0) -> float:
        """Wait until the lease is ours; returns the seconds waited (at most GPU_LEASE_SECONDS after
        the previous holder died)."""
        started, warned = time.monotonic(), False
        while not self.try_acquire():
            if not warned:
                log.warning("waiting for the GPU queue's lease", queue=self.queue, holder=self.holder(),
                            lease_seconds=self.seconds)
                warned = True
            time.sleep(poll)
        waited = time.monotonic() - started
        log.info("GPU queue lease taken", queue=self.queue, waited_s=round(waited, 2))
        return waited

    def renew(self) -> bool:
        """Extend the lease; False when another process holds it now."""
        if self._renew(keys=[self.key], args=[self.token, self.seconds * 1000]):
            return True
        # Expired while Redis was away (or restarted empty): take it back if nobody else did.
        return self.try_acquire()

    def keep_alive(self, on_lost: Any) -> threading.Thread:
        """Renew every third of the lease in a daemon thread; call `on_lost()` once if it is taken."""

        def loop() -> None:
            while not self._stop.wait(self.seconds / 3):
                try:
                    if not self.renew():
                        log.critical("GPU queue lease taken by another worker", queue=self.queue,
                                     holder=self.holder())
                        on_lost()
                        return
                except redis.RedisError as error:  # Redis away: the lease lives GPU_LEASE_SECONDS more
                    log.warning("could not renew the GPU queue lease", queue=self.queue, error=str(error))

        thread = threading.Thread(target=loop, name=f"lease-{self.queue}", daemon=True)
        thread.start()
        return thread

    def release(self) -> None:
        self._stop.set()
        try:
            self._release(keys=[self.key], args=[self.token])
        except redis.RedisError as error:
            log.warning("could not release the GPU queue lease", queue=self.queue, error=str(error))


def held_deliveries(client: redis.Redis, queue: str) -> list[str]:
    """Delivery tags of the unacknowledged messages routed to `queue`."""
    tags = []
    for tag, raw in client.hscan_iter(UNACKED_KEY):
        try:
            _message, _exchange, routing_key = json.loads(raw)
        except (ValueError, TypeError):
            continue
        if routing_key == queue:
            tags.append(tag.decode() if isinstance(tag, bytes) else tag)
    return tags


def requeue_predecessor_deliveries(celery: Celery, queue: str) -> int:
    """Put the messages a dead worker of `queue` held back at the front of their queue, now.

    Call only while holding the queue's lease and before consuming. Each message moves in one Redis
    transaction (kombu's own `restore_by_tag`, the code `restore_visible` runs after the visibility
    timeout), so a message is requeued at most once even if a visibility restore runs at the same time.
    Returns how many were requeued.
    """
    with celery.connection_for_write() as connection:
        channel: Any = connection.default_channel
        client = channel.client
        tags = held_deliveries(client, queue)
        for tag in tags:
            channel.qos.restore_by_tag(tag, client=client)
    if tags:
        log.warning("requeued the deliveries of a dead GPU worker", queue=queue, messages=len(tags))
    return len(tags)


def stop_warmly() -> None:
    """A warm shutdown, as SIGTERM from outside: the current task finishes and is acknowledged."""
    os.kill(os.getpid(), signal.SIGTERM)
