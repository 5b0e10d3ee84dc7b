"""The broker topology: one priority policy, queue arguments per broker and queue type."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from app import names
from app.config import Settings
from app.topology import (
    BROKER_DEAD_LETTER_QUEUE,
    DEAD_LETTER_EXCHANGE,
    EXCHANGE,
    broker_kind,
    consumer_timeout_problem,
    declared_queues,
    priority_for,
    queue_arguments,
    running_queue,
    solo_worker_options,
)

REDIS = Settings(broker_url="redis://127.0.0.1:6379/0")
CLASSIC = Settings(broker_url="amqp://guest:guest@127.0.0.1:5672/demeter")
QUORUM = Settings(broker_url="amqp://guest:guest@127.0.0.1:5672/demeter", broker_queue_type="quorum")
EMBEDDED = Settings(broker_url="")


@pytest.mark.parametrize(("url", "kind"), [("redis://h/0", "redis"), ("rediss://h/0", "redis"),
                                           ("amqp://h//", "amqp"), ("pyamqp://h", "amqp"), ("", "filesystem")])
def test_broker_kind_by_scheme(url: str, kind: str) -> None:
    assert broker_kind(url or "filesystem://") == kind


def test_regions_go_ahead_of_photos_on_each_broker() -> None:
    # Redis serves the lowest number first, a RabbitMQ priority queue the highest.
    assert priority_for(names.CHILD_TASK, REDIS) < priority_for(names.PARENT_TASK, REDIS)  # type: ignore[operator]
    assert priority_for(names.CHILD_TASK, CLASSIC) > priority_for(names.PARENT_TASK, CLASSIC)  # type: ignore[operator]
    # Quorum queues (3.x) and the filesystem broker have no priorities.
    assert priority_for(names.CHILD_TASK, QUORUM) is None and priority_for(names.PARENT_TASK, EMBEDDED) is None
    assert priority_for(names.AGGREGATE_TASK, REDIS) is None


def test_rabbitmq_queue_arguments_per_queue_type() -> None:
    gpu, cpu = names.gpu_queue(0), names.CPU_QUEUE
    assert queue_arguments(gpu, CLASSIC) == {"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE, "x-max-priority": 9}
    assert queue_arguments(cpu, CLASSIC) == {"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE}
    assert queue_arguments(gpu, QUORUM) == {"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE, "x-queue-type": "quorum",
                                            "x-delivery-limit": 5}
    assert queue_arguments(BROKER_DEAD_LETTER_QUEUE, CLASSIC) == {}
    assert queue_arguments(gpu, REDIS) == {}


def test_rabbitmq_queues_are_bound_to_the_named_exchange_and_redis_stays_as_it_was() -> None:
    amqp = {q.name: q for q in declared_queues([names.gpu_queue(0), names.CPU_QUEUE], CLASSIC)}
    assert amqp[names.CPU_QUEUE].exchange.name == EXCHANGE and amqp[names.CPU_QUEUE].exchange.type == "topic"
    assert amqp[BROKER_DEAD_LETTER_QUEUE].exchange.name == DEAD_LETTER_EXCHANGE
    redis = declared_queues([names.gpu_queue(0), names.CPU_QUEUE], REDIS)
    assert [q.name for q in redis] == [names.gpu_queue(0), names.CPU_QUEUE]
    assert all(not getattr(q, "queue_arguments", None) for q in redis)


def _task(consumed: list[str], name: str = names.CHILD_TASK) -> SimpleNamespace:
    queues = SimpleNamespace(consume_from={q: object() for q in consumed})
    return SimpleNamespace(name=name, app=SimpleNamespace(amqp=SimpleNamespace(queues=queues)))


def test_running_queue_is_the_one_consumed_queue_else_the_route() -> None:
    # Never the routing key: a delayed retry's key is "0.0.1.0.gpu_queue_1" under native delayed delivery.
    assert running_queue(_task(["gpu_queue_1"])) == "gpu_queue_1"
    assert running_queue(_task(["cpu", "io"], names.RENDER_TASK)) == names.IO_QUEUE


def test_the_solo_worker_sends_no_heartbeats_on_rabbitmq_only() -> None:
    assert solo_worker_options(CLASSIC) == {"broker_heartbeat": 0}
    assert solo_worker_options(REDIS) == {}


def test_consumer_timeout_must_exceed_the_longest_task_and_retry_countdown() -> None:
    assert consumer_timeout_problem(CLASSIC) is None  # 600 s tasks, 1800 s consumer_timeout
    long_task = CLASSIC.model_copy(update={"longest_task_seconds": 2400})
    assert "2400 s" in (consumer_timeout_problem(long_task) or "")
    long_retry = CLASSIC.model_copy(update={"retry_backoff": 600, "retry_backoff_max": 3600, "task_max_retries": 3})
    assert "2400 s" in (consumer_timeout_problem(long_retry) or "")  # 600 * 2**2
    assert consumer_timeout_problem(long_task.model_copy(update={"broker_url": "redis://h/0"})) is None
