"""Reading the photo id out of queued messages, as the broker scan does, and RabbitMQ's counts (no service
needed)."""

from __future__ import annotations

import base64
import json
import socket
from typing import Any

import pytest
from celery import Celery

from app import names
from app.celery_app import create_app
from app.config import get_settings
from app.inflight import Unseen, photo_of_message, photos_without_work, work_messages


def _message(task: str, args: list[Any], kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Celery's protocol-2 envelope as kombu stores it on Redis: a base64 JSON body [args, kwargs, embed]."""
    body = json.dumps([args, kwargs or {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
    return {"body": base64.b64encode(body.encode()).decode(), "headers": {"task": task, "id": "t"},
            "properties": {"body_encoding": "base64", "delivery_info": {"routing_key": "gpu_queue_0"}}}


def test_each_photo_task_names_its_photo() -> None:
    assert photo_of_message(_message(names.PARENT_TASK, [7], {"correlation_id": "c"})) == 7
    assert photo_of_message(_message(names.PARENT_TASK, [], {"photo_id": 8})) == 8
    assert photo_of_message(_message(names.CHILD_TASK, [{"index": 0, "bbox": [0, 0, 1, 1]}, 9])) == 9
    assert photo_of_message(_message(names.AGGREGATE_TASK, [[{"region_index": 0}], 10])) == 10


def test_other_or_malformed_messages_name_no_photo() -> None:
    assert photo_of_message(_message(names.SWEEP_TASK, [5])) is None
    assert photo_of_message(_message(names.PARENT_TASK, [])) is None
    assert photo_of_message(_message(names.PARENT_TASK, ["7"])) is None
    assert photo_of_message({"headers": {"task": names.PARENT_TASK}, "body": "not base64 json",
                             "properties": {"body_encoding": "base64"}}) is None


def test_management_counts_are_summed_over_the_task_queues_only() -> None:
    """A `GET /api/queues/<vhost>` answer, as RabbitMQ's management API words it."""
    queues: list[dict[str, Any]] = [
        {"name": "gpu_queue_0", "messages_ready": 2, "messages_unacknowledged": 1},
        {"name": "cpu", "messages_ready": 0, "messages_unacknowledged": 1},
        {"name": "io", "messages_ready": 3, "messages_unacknowledged": 0},
        {"name": "celery_delayed_2", "messages_ready": 4, "messages_unacknowledged": 0},  # retries waiting
        {"name": names.DEAD_LETTER_QUEUE, "messages_ready": 50, "messages_unacknowledged": 0},
        {"name": "broker_dead_letter", "messages_ready": 7, "messages_unacknowledged": 0},
        {"name": "celeryev.abc", "messages_ready": 9},
        {"name": "gpu_queue_1"},  # a queue with no figures yet (just declared)
    ]
    assert work_messages(queues) == 2 + 1 + 1 + 3 + 4


def _amqp_app() -> Celery:
    settings = get_settings().model_copy(update={"broker_url": "amqp://guest:guest@127.0.0.1:5672/demeter"})
    return create_app(settings)


def test_rabbitmq_without_broker_api_is_unseen_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "broker_api", "")
    answer = photos_without_work(_amqp_app(), [1, 2])
    assert isinstance(answer, Unseen) and "BROKER_API" in answer.reason
    assert photos_without_work(_amqp_app(), []) == set()  # nothing to look for: nothing to look at


def test_a_management_api_that_does_not_answer_is_unseen(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(get_settings(), "broker_api", f"http://guest:guest@127.0.0.1:{port}/api/")
    answer = photos_without_work(_amqp_app(), [1])
    assert isinstance(answer, Unseen) and "did not answer" in answer.reason
