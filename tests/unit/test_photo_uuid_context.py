"""The photo's public id in a task's logging context: the task's own `photo_uuid` kwarg wins, and a task
about no photo gets none (neither needs the database)."""

from __future__ import annotations

from app.observability.signals import photo_uuid_of


def test_the_kwarg_is_used_without_a_look_up() -> None:
    assert photo_uuid_of(7, {"photo_uuid": "0b6f3c2e-1111-4a4a-9b9b-123456789abc", "correlation_id": "c"}) == (
        "0b6f3c2e-1111-4a4a-9b9b-123456789abc")


def test_a_task_about_no_photo_has_no_uuid() -> None:
    assert photo_uuid_of(None, {}) is None
    assert photo_uuid_of(None, {"photo_uuid": ""}) is None
