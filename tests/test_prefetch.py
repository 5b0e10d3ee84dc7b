"""The GPU worker's guess at its next photo: read from the broker's queue, never taken from it."""

from __future__ import annotations

import pytest
import redis

from app import names
from app.observability.correlation import MESSAGE_HEADER
from app.observability.metrics import PRIORITY_LEVELS, priority_key
from app.tasks.next_photo import WaitingPhoto, next_photo
from tests.conftest import TEST_BROKER
from tests.utils.processes import IsolatedBroker

QUEUE = "gpu_queue_0"


def _waiting(broker_url: str) -> int:
    client = redis.Redis.from_url(broker_url)
    try:
        return sum(int(client.llen(priority_key(QUEUE, level))) for level in PRIORITY_LEVELS)
    finally:
        client.close()


@pytest.mark.skipif(TEST_BROKER != "redis", reason="read in place on Redis only; other brokers: no prefetch")
def test_the_next_photo_is_read_behind_the_running_photos_regions_and_left_queued(
    isolated_broker: IsolatedBroker,
) -> None:
    url = isolated_broker.app.conf.broker_url
    # A running photo's regions (priority 0) ahead of two photos waiting (priority 6), as the routes publish them.
    isolated_broker.send(names.CHILD_TASK, QUEUE, args=[{"index": 0, "bbox": [0, 0, 9, 9]}, 40])
    for photo_id in (41, 42):
        isolated_broker.send(names.PARENT_TASK, QUEUE, args=[photo_id], kwargs={"correlation_id": f"cid-{photo_id}"},
                             headers={MESSAGE_HEADER: f"cid-{photo_id}"})

    first = next_photo(url, QUEUE, skip=set())
    second = next_photo(url, QUEUE, skip={41})
    none_left = next_photo(url, QUEUE, skip={41, 42})

    assert first == WaitingPhoto(41, "cid-41")  # the older of the two: the one the worker takes first
    assert second == WaitingPhoto(42, "cid-42")
    assert none_left is None
    assert _waiting(url) == 3  # nothing was taken
    assert next_photo("memory://", QUEUE, skip=set()) is None  # not Redis: no guess
