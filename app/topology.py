"""The broker topology: exchanges, queues with their arguments, and task priorities, per broker.

One policy, two brokers. Region tasks go ahead of new photos on a GPU queue (a photo's regions are
counted while its decoded image is still in the worker's cache). What a priority number means
differs:

- Redis (kombu's priority emulation): one list per level 0, 3, 6, 9, polled lowest number first.
- RabbitMQ classic queues: `x-max-priority` makes a priority queue, served highest number first.
  A queue's arguments are fixed when it is declared: adding one to an existing queue is a 406
  PRECONDITION_FAILED (see `demeter broker check` / `migrate`, app/broker.py).
- RabbitMQ quorum queues (BROKER_QUEUE_TYPE=quorum) refuse `x-max-priority` on 3.x: they serve in
  order, so a photo's regions may wait behind photos queued before them (a second decode when the
  photo cache is smaller than the backlog). They bring replication and `x-delivery-limit`.

The policy is one number per task on the Redis scale (URGENCY, 0 = first); `priority_for` turns it
into the number the broker needs. The filesystem broker of the embedded mode has no priorities.

On RabbitMQ every queue is bound to the topic exchange `demeter` (a topic exchange because
Celery's native delayed delivery, used with quorum queues, needs one), and dead-letters into the
fanout exchange `demeter.dlx`: a message rejected without requeue, or delivered more than
BROKER_DELIVERY_LIMIT times on a quorum queue, lands in the queue `broker_dead_letter`, which the
cpu worker turns into `dead_letters` rows (app/deadletter/broker.py). On Redis the queues stay as
they were (bound to kombu's default exchange), and there is no broker dead-lettering.
"""

from __future__ import annotations

from typing import Any, Literal

from celery import Celery, Task
from kombu import Exchange, Queue

from app import names
from app.config import Settings

BrokerKind = Literal["redis", "amqp", "filesystem"]

EXCHANGE = "demeter"
DEAD_LETTER_EXCHANGE = "demeter.dlx"
BROKER_DEAD_LETTER_QUEUE = "broker_dead_letter"  # what RabbitMQ itself dead-lettered (amqp only)

# Celery's priority scale is 0..9; on RabbitMQ the queues get this many levels (its docs advise few).
MAX_PRIORITY = 9
# The policy, on the Redis scale: 0 is served first.
URGENCY: dict[str, int] = {names.CHILD_TASK: 0, names.PARENT_TASK: 6}


def broker_kind(url: str) -> BrokerKind:
    """Which broker a BROKER_URL names: `redis`/`rediss` -> redis, `amqp`/`amqps`/`pyamqp` -> amqp,
    anything else (the embedded `filesystem://`) -> filesystem."""
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("redis", "rediss"):
        return "redis"
    if scheme in ("amqp", "amqps", "pyamqp"):
        return "amqp"
    return "filesystem"


def priority_for(task_name: str, settings: Settings) -> int | None:
    """The message priority of `task_name` on this broker, or None where the queues have none.

    Redis: URGENCY as is (lowest first). RabbitMQ classic: MAX_PRIORITY - URGENCY (highest first).
    RabbitMQ quorum queues and the filesystem broker: None (served in order)."""
    urgency = URGENCY.get(task_name)
    if urgency is None:
        return None
    kind = broker_kind(settings.broker_url_resolved)
    if kind == "redis":
        return urgency
    if kind == "amqp" and settings.broker_queue_type == "classic":
        return MAX_PRIORITY - urgency
    return None


def task_routes(routes: dict[str, dict[str, Any]], settings: Settings) -> dict[str, dict[str, Any]]:
    """`routes` (task name -> {"queue": ...}) with each task's priority on this broker added."""
    result: dict[str, dict[str, Any]] = {}
    for name, route in routes.items():
        priority = priority_for(name, settings)
        result[name] = {**route, "priority": priority} if priority is not None else dict(route)
    return result


def queue_arguments(name: str, settings: Settings) -> dict[str, Any]:
    """The `x-` arguments RabbitMQ declares queue `name` with ({} on other brokers)."""
    if broker_kind(settings.broker_url_resolved) != "amqp" or name == BROKER_DEAD_LETTER_QUEUE:
        return {}
    arguments: dict[str, Any] = {"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE}
    if settings.broker_queue_type == "quorum":
        arguments.update({"x-queue-type": "quorum", "x-delivery-limit": settings.broker_delivery_limit})
    elif names.is_gpu_queue(name):
        arguments["x-max-priority"] = MAX_PRIORITY
    return arguments


def declared_queues(queue_names: list[str], settings: Settings) -> list[Queue]:
    """kombu Queues for `queue_names` (plus `broker_dead_letter` on RabbitMQ), as this broker declares them."""
    if broker_kind(settings.broker_url_resolved) != "amqp":
        return [Queue(name, routing_key=name) for name in queue_names]  # as before: kombu's default exchange
    exchange = Exchange(EXCHANGE, type="topic", durable=True)
    queues = [Queue(name, exchange, routing_key=name, queue_arguments=queue_arguments(name, settings), durable=True)
              for name in queue_names]
    dead = Exchange(DEAD_LETTER_EXCHANGE, type="fanout", durable=True)
    queues.append(Queue(BROKER_DEAD_LETTER_QUEUE, dead, routing_key=BROKER_DEAD_LETTER_QUEUE, durable=True))
    return queues


def running_queue(task: Task) -> str:
    """The queue the running `task` was taken from.

    Not its routing key: with Celery's native delayed delivery (quorum queues) a retried task's
    routing key carries a delay prefix (`0.0.1.0.gpu_queue_0`), and AMQP deliveries do not name the
    queue. A worker that consumes one queue (every GPU worker: `gpu_queue_<GPU_INDEX>`) took it from
    that queue; otherwise the task's route names the one queue it can arrive on (app/celery_app.py).
    """
    consumed = list(task.app.amqp.queues.consume_from or {})
    if len(consumed) == 1:
        return str(consumed[0])
    from app.celery_app import TASK_ROUTES

    return str(TASK_ROUTES.get(task.name, {}).get("queue", names.CPU_QUEUE))


def amqp_transport_options(settings: Settings) -> dict[str, Any]:
    """py-amqp connection options: publisher confirms, so a publish returns only once RabbitMQ has the
    message (a refused or lost publish raises instead of vanishing)."""
    return {"confirm_publish": True}


def amqp_celery_options(settings: Settings) -> dict[str, Any]:
    """Celery settings that only RabbitMQ needs ({} on other brokers)."""
    if broker_kind(settings.broker_url_resolved) != "amqp":
        return {}
    return {
        "broker_heartbeat": settings.broker_heartbeat,
        # Tasks published to a queue that is not declared here (chord_unlock, a replay) use the named
        # exchange too, never an exchange named after the default queue.
        "task_default_exchange": EXCHANGE,
        "task_default_exchange_type": "topic",
        "task_default_routing_key": names.CPU_QUEUE,
        "task_default_queue_type": settings.broker_queue_type,
    }


def solo_worker_options(settings: Settings) -> dict[str, Any]:
    """Celery settings for the solo-pool GPU worker on RabbitMQ ({} elsewhere).

    A solo worker runs its task in the thread that would send AMQP heartbeats, so during a task longer
    than two heartbeat intervals RabbitMQ closes its connection ("missed heartbeats from client") and
    the unacknowledged task runs again. The GPU worker therefore negotiates no heartbeats; a dead peer
    is still noticed by TCP keepalive, which py-amqp turns on for every connection (idle 60 s, then
    9 probes 10 s apart). py-amqp connections are not thread-safe, so a heartbeat thread is no option.
    """
    if broker_kind(settings.broker_url_resolved) != "amqp":
        return {}
    return {"broker_heartbeat": 0}


def gevent_worker_options(settings: Settings) -> dict[str, Any]:
    """Celery settings for the gevent-pool io worker on RabbitMQ ({} elsewhere): no publisher confirms.

    With confirms, the gevent worker takes its tasks from RabbitMQ and never runs them: they stay
    delivered and unacknowledged while the worker still answers pings (seen with celery and kombu 5.7,
    py-amqp 5.4, gevent 26: a no-op task never answered; without confirms three answered at once;
    a publish waiting for its confirm on a connection that another greenlet reads is the likely
    cause). The io worker publishes only task events and retries of rendering, which is redone from
    the database, so it publishes unconfirmed.
    """
    if broker_kind(settings.broker_url_resolved) != "amqp":
        return {}
    return {"broker_transport_options": {**amqp_transport_options(settings), "confirm_publish": False}}


def longest_hold_seconds(settings: Settings) -> int:
    """The longest a worker holds one delivery unacknowledged: the longest task (LONGEST_TASK_SECONDS), or
    the longest retry countdown (RETRY_BACKOFF * 2**(TASK_MAX_RETRIES - 1), capped at RETRY_BACKOFF_MAX),
    which a worker on classic queues waits out holding the retried message."""
    last_retry = min(settings.retry_backoff * 2 ** max(0, settings.task_max_retries - 1), settings.retry_backoff_max)
    return max(settings.longest_task_seconds, last_retry)


def consumer_timeout_problem(settings: Settings) -> str | None:
    """Why RabbitMQ's consumer_timeout (BROKER_CONSUMER_TIMEOUT, the server's setting in milliseconds /
    1000) is too short for this configuration, or None. RabbitMQ closes a channel whose delivery stays
    unacknowledged longer than consumer_timeout (a 406 PRECONDITION_FAILED) and the task runs again."""
    if broker_kind(settings.broker_url_resolved) != "amqp":
        return None
    hold = longest_hold_seconds(settings)
    if hold < settings.broker_consumer_timeout:
        return None
    return (f"a delivery may stay unacknowledged for {hold} s (LONGEST_TASK_SECONDS, or the last retry "
            f"countdown) but RabbitMQ's consumer_timeout is {settings.broker_consumer_timeout} s "
            f"(BROKER_CONSUMER_TIMEOUT): raise consumer_timeout in rabbitmq.conf, then BROKER_CONSUMER_TIMEOUT")


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Periodic tasks that only RabbitMQ needs: record its dead letters every 30 s ({} elsewhere)."""
    if broker_kind(settings.broker_url_resolved) != "amqp":
        return {}
    return {"record-broker-dead-letters": {"task": names.BROKER_DEAD_LETTER_TASK, "schedule": 30.0}}


def publish_options(settings: Settings) -> dict[str, Any]:
    """How an upload publishes its photo task (Celery `send_task` options).

    RabbitMQ: one attempt with publisher confirms (amqp_transport_options), waiting at most
    BROKER_PUBLISH_TIMEOUT for the broker to write the frame and confirm it. Not retried: a publish
    that timed out may still be delivered (a memory or disk alarm blocks publishers, then lets the
    buffered message through), and a retry would queue a second copy. Redis and the embedded broker:
    a couple of quick retries on connection errors, as before (a Redis LPUSH either happened or not).
    """
    if broker_kind(settings.broker_url_resolved) == "amqp":
        return {"retry": False, "timeout": settings.broker_publish_timeout,
                "confirm_timeout": settings.broker_publish_timeout}
    return {"retry": True, "retry_policy": {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5}}


def publish_outcome_unknown(exc: BaseException, settings: Settings) -> bool:
    """Whether a failed publish may still have reached the broker: on RabbitMQ, a timeout once the
    connection was open (the message may sit in the broker's socket buffer). A refused connection or a
    nack means nothing was queued."""
    if broker_kind(settings.broker_url_resolved) != "amqp":
        return False
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, TimeoutError) or "timed out" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def declare(celery: Celery) -> None:
    """Declare every exchange and queue of `celery.conf.task_queues` on RabbitMQ (no-op elsewhere).

    Workers do this at start (app/celery_app.py): a worker declares only the queues it consumes, but the
    dead-letter exchange and `broker_dead_letter` must exist before RabbitMQ dead-letters anything, or
    it drops the message. A queue that exists with other arguments raises a 406 (`demeter broker check`)."""
    if broker_kind(str(celery.conf.broker_url)) != "amqp":
        return
    with celery.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in celery.conf.task_queues:
            queue(channel).declare()
