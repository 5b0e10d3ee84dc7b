"""Application metrics from a real worker and the API, and label sets that stay bounded.

A prefork cpu worker recycles its child after every task (`--max-tasks-per-child=1`), ten
times: the counters add up across the children, no label value appears that was not there
after the first photo, and the `task-sent` events that Flower labels by host name carry two
stable names (the test process and the worker), not one `gen<PID>` per child.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app import names
from app.api.main import create_app
from app.config import get_settings
from app.db import repository
from app.db.session import db_session
from app.topology import priority_for
from tests.utils.api_server import start_api
from tests.utils.flower import free_port
from tests.utils.keys import bearer, make_api_key
from tests.utils.processes import IsolatedBroker

HOST = socket.gethostname()
PHOTOS = 10


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Our samples: (name, sorted labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("demeter_"):
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _finished(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return sum(value for (name, _), value in samples.items() if name == "demeter_photos_finished_total")


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The worker's samples; {} for a failed scrape (the waits below try again, as Prometheus would)."""
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=15)
    except httpx.TransportError:  # a busy machine: the worker's collector reads one file per child it ever had
        return {}
    return _samples(response.text) if response.status_code == 200 else {}


def _wait_for(check: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise TimeoutError("condition not met")


@contextmanager
def _task_sent_hostnames(broker: IsolatedBroker) -> Iterator[tuple[list[str], list[str]]]:
    """(host names of task-sent events, of every event) seen on the broker while the block runs."""
    sent: list[str] = []
    every: list[str] = []

    def on_event(event: dict[str, Any]) -> None:
        every.append(str(event.get("hostname")))
        if event.get("type") == "task-sent":
            sent.append(str(event.get("hostname")))

    with broker.app.connection_for_read() as connection:
        receiver = broker.app.events.Receiver(connection, handlers={"*": on_event})
        thread = threading.Thread(target=receiver.capture, kwargs={"limit": None, "wakeup": False}, daemon=True)
        thread.start()
        try:
            yield sent, every
        finally:
            receiver.should_stop = True
            thread.join(timeout=10)


def _new_session() -> int:
    with db_session() as db:
        photo, _ = repository.create_photo(db, storage_key=f"metrics/{uuid.uuid4().hex}.jpg",
                                           content_type="image/jpeg", width=64, height=48, size_bytes=1)
        return photo.id


def test_worker_metrics_add_up_across_recycled_children_with_constant_labels(isolated_broker: IsolatedBroker) -> None:
    port = free_port()
    with _task_sent_hostnames(isolated_broker) as (sent, every):
        isolated_broker.workers.start("cpu", ["-m", "workers.cpu", "--queues=cpu", "--concurrency=1",
                                              "--max-tasks-per-child=1"], env={"METRICS_PORT": str(port)})
        isolated_broker.wait_ready(["cpu"])
        _wait_for(lambda: f"cpu@{HOST}" in every)  # the receiver hears the worker: no event is missed now
        # Each photo without regions ends in aggregation (as `warning`: no container found is a doubt), which
        # queues its annotated image from the child.
        labels_after_first: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        for number in range(1, PHOTOS + 1):
            isolated_broker.send(names.AGGREGATE_TASK, names.CPU_QUEUE, args=[[], _new_session()])
            _wait_for(lambda n=number: _finished(_scrape(port)) == n)
            if number == 1:
                labels_after_first = set(_scrape(port))
        _wait_for(lambda: sent.count(f"cpu@{HOST}") == PHOTOS)

    samples = _scrape(port)
    assert _finished(samples) == PHOTOS
    assert samples[("demeter_plants_counted_total", ())] == 0  # photos without regions count nothing
    assert samples[("demeter_stage_seconds_count", (("stage", "aggregation"),))] == PHOTOS
    assert samples[("demeter_photo_latency_seconds_count", ())] == PHOTOS
    # Ten children later, not one new label value.
    assert set(samples) == labels_after_first
    assert {name for _, labels in samples for name, _ in labels} <= {"status", "stage", "task", "le"}
    # Flower's `worker` label: the publishers' names, two of them, whatever the pids.
    assert set(sent) == {f"publisher@{HOST}", f"cpu@{HOST}"}, set(sent)


def test_the_api_serves_queue_depth_per_queue_and_priority(isolated_broker: IsolatedBroker) -> None:
    settings = get_settings().model_copy(update={"broker_url": isolated_broker.env["BROKER_URL"]})
    photo, region = priority_for(names.PARENT_TASK, settings), priority_for(names.CHILD_TASK, settings)
    assert (photo, region) == (6, 0)  # Redis: the lowest number first
    for _ in range(3):  # no worker consumes the isolated GPU queue: they wait there
        isolated_broker.send(names.PARENT_TASK, names.gpu_queue(0), args=[0], priority=photo)
    isolated_broker.send(names.CHILD_TASK, names.gpu_queue(0), args=[{}, 0], priority=region)

    admin = make_api_key("ops", scopes=["admin"], name="prometheus")

    response = TestClient(create_app(settings)).get("/metrics", headers=bearer(admin))

    assert response.status_code == 200
    samples = _samples(response.text)
    depth = {labels: value for (name, labels), value in samples.items() if name == "demeter_queue_depth"}
    assert depth[(("priority", "6"), ("queue", "gpu_queue_0"))] == 3
    assert depth[(("priority", "0"), ("queue", "gpu_queue_0"))] == 1
    assert depth[(("priority", "0"), ("queue", "cpu"))] == 0
    assert len(depth) == 4 * (settings.gpu_queues + 3)  # queues x the broker's four priority levels
    assert ("demeter_photos_submitted_total", ()) in samples


def test_the_apis_metrics_need_an_admin_key(api_key: str) -> None:
    client = TestClient(create_app(get_settings()))

    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=bearer("dmt_nothere_0000")).status_code == 401
    reader = client.get("/metrics", headers=bearer(api_key))  # every scope but admin
    assert reader.status_code == 403 and reader.json()["error"]["code"] == "insufficient_scope"
    assert client.get("/healthz").status_code == 200  # the probes stay open


def test_api_metrics_port_serves_them_there_without_a_key_and_not_on_the_api_port(
    isolated_broker: IsolatedBroker, api_key: str
) -> None:
    metrics_port = free_port()
    base_url = start_api(isolated_broker.workers, "api-metrics", {"API_METRICS_PORT": str(metrics_port)})

    scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)

    assert scraped.status_code == 200
    assert ("demeter_photos_submitted_total", ()) in _samples(scraped.text)
    assert ("demeter_queue_depth", (("priority", "0"), ("queue", "cpu"))) in _samples(scraped.text)
    assert httpx.get(f"{base_url}/metrics", headers=bearer(api_key), timeout=5).status_code == 404
