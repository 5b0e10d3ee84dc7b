"""Reading the photo id out of queued messages, as the broker scan does (no service needed)."""

from __future__ import annotations

import base64
import json
from typing import Any

from app import names
from app.inflight import photo_of_message


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
