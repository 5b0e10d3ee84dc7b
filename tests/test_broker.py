"""`demeter broker check` and `migrate` against the live RabbitMQ (on Redis there are no queue arguments)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from celery import Celery

from app import broker, topology
from app.celery_app import create_app
from app.config import get_settings
from tests.conftest import TEST_BROKER, isolated_broker_urls
from tests.utils.services import amqp_queue_messages

pytestmark = [pytest.mark.broker,
              pytest.mark.skipif(TEST_BROKER != "amqp", reason="RabbitMQ queue arguments; Redis has none")]


@pytest.fixture
def apps(database: str) -> Iterator[tuple[Celery, Celery, str]]:
    """Two apps on one emptied vhost: the classic topology (as deployed) and the quorum one (wanted now)."""
    broker_url, results = isolated_broker_urls()
    base = get_settings().model_copy(update={"broker_url": broker_url, "result_backend": results})
    deployed = create_app(base.model_copy(update={"broker_queue_type": "classic"}))
    wanted = create_app(base.model_copy(update={"broker_queue_type": "quorum"}))
    yield deployed, wanted, broker_url.rsplit("/", 1)[1]
    deployed.close()
    wanted.close()
    isolated_broker_urls()


def test_check_names_the_mismatch_and_migrate_keeps_every_message(apps: tuple[Celery, Celery, str]) -> None:
    deployed, wanted, vhost = apps
    topology.declare(deployed)
    assert broker.check(deployed) == []
    for number in range(3):
        deployed.send_task("app.tasks.ml.ml_parent_task", args=[number], queue="gpu_queue_0")

    problems = broker.check(wanted)
    # RabbitMQ names the first argument that differs: the priority queue's x-max-priority, cpu's queue type.
    assert any(p.startswith("queue gpu_queue_0:") and "x-max-priority" in p for p in problems), problems
    assert any(p.startswith("queue cpu:") and "x-queue-type" in p for p in problems), problems

    moved = broker.migrate(wanted)

    assert moved["gpu_queue_0"] == 3
    assert broker.check(wanted) == []
    assert _settled_count(vhost, "gpu_queue_0", 3) == 3  # a quorum queue's count shows after a moment
    assert amqp_queue_messages(vhost, "gpu_queue_0" + broker.MIGRATION_SUFFIX) == 0


def _settled_count(vhost: str, queue: str, expected: int, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while (count := amqp_queue_messages(vhost, queue)) != expected and time.monotonic() < deadline:
        time.sleep(0.5)
    return count
