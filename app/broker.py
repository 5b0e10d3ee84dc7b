"""The live broker against the declared topology (app/topology.py): `demeter broker check` and `migrate`.

RabbitMQ without the management plugin does not tell a client a queue's arguments, but it compares
them: declaring a queue that exists with other arguments fails with 406 PRECONDITION_FAILED, and the
reply names the argument ("inequivalent arg 'x-max-priority' for queue 'gpu_queue_0' ... received
'9' but current is none"). `check` declares each queue as the topology wants it, one channel each,
and reports every refusal; a queue that did not exist is created as a side effect (what a worker
would do anyway). Redis and the embedded broker keep no queue arguments: only the connection is
checked there.

`migrate` moves a queue whose arguments changed (a new BROKER_QUEUE_TYPE, priorities added) without
losing a message: it moves the messages into a temporary queue, deletes the old queue, declares it
with the new arguments and moves them back. Run it with the workers stopped (a consumer would take
messages from the temporary queue too early, and a worker restarted meanwhile would redeclare the
queue with the old arguments). Publishers that publish during the move get the 406 of `check` from
the broker and answer 503; nothing is lost.
"""

from __future__ import annotations

from typing import Any

from amqp.exceptions import PreconditionFailed
from celery import Celery
from kombu import Connection, Queue

from app.observability.logging import get_logger
from app.topology import broker_kind

log = get_logger(__name__)

MIGRATION_SUFFIX = ".migrating"


def check(celery: Celery, timeout: float = 5.0) -> list[str]:
    """Every difference between the declared topology and the live broker, as sentences ([] = fine).
    Raises when the broker cannot be reached."""
    with celery.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, interval_start=0.2, timeout=timeout)
        if broker_kind(str(celery.conf.broker_url)) != "amqp":
            return []
        return [problem for queue in celery.conf.task_queues if (problem := _mismatch(connection, queue))]


def _mismatch(connection: Connection, queue: Queue) -> str | None:
    channel = connection.channel()
    try:
        queue(channel).declare()
    except PreconditionFailed as exc:
        return f"queue {queue.name}: {exc.reply_text}"  # the channel is closed by the broker
    channel.close()
    return None


def migrate(celery: Celery) -> dict[str, int]:
    """Redeclare every queue whose arguments differ from the topology, keeping its messages.

    Returns {queue name: messages moved} for the queues it migrated. RabbitMQ only."""
    if broker_kind(str(celery.conf.broker_url)) != "amqp":
        return {}
    moved: dict[str, int] = {}
    with celery.connection_for_write() as connection:
        for queue in celery.conf.task_queues:
            if _mismatch(connection, queue) is None:
                continue
            moved[queue.name] = _move_through_temporary(connection, queue)
            log.warning("queue migrated to its declared arguments", queue=queue.name, messages=moved[queue.name])
    return moved


def _move_through_temporary(connection: Connection, queue: Queue) -> int:
    """Old queue -> temporary classic queue -> queue redeclared with the wanted arguments."""
    holding = f"{queue.name}{MIGRATION_SUFFIX}"
    channel = connection.channel()
    channel.queue_declare(holding, durable=True, auto_delete=False)
    count = _shovel(channel, queue.name, holding)
    channel.queue_delete(queue.name)
    channel.close()
    # A new channel: RabbitMQ 3.10 crashes a channel that published to a queue which is then deleted and
    # redeclared with another type under the same name (function_clause in rabbit_classic_queue:update).
    channel = connection.channel()
    queue(channel).declare()
    back = _shovel(channel, holding, queue.name, exchange=queue.exchange.name, routing_key=queue.routing_key)
    if back != count:
        raise RuntimeError(f"queue {queue.name}: moved {count} messages out but {back} back; {holding} kept")
    channel.queue_delete(holding)
    channel.close()
    return count


def _shovel(channel: Any, source: str, target: str, exchange: str = "", routing_key: str | None = None) -> int:
    """Move every message of `source` to `target` (through `exchange`, default: straight to the queue),
    each acknowledged only after the broker confirmed its copy (the app's connections publish with
    confirms, app/topology.py)."""
    count = 0
    while (message := channel.basic_get(source, no_ack=False)) is not None:
        channel.basic_publish(message, exchange=exchange, routing_key=routing_key or target)
        channel.basic_ack(message.delivery_tag)
        count += 1
    return count
