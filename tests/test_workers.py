"""Worker pools that really behave: each entrypoint, solo-pool recycling, prefork recycling."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import redis

from tests.conftest import TEST_BROKER, isolated_broker_urls
from tests.utils.logs import wait_for_lines
from tests.utils.processes import IsolatedBroker
from tests.utils.services import amqp_queue_messages

PROCESS_INFO = "app.tasks.maintenance.process_info"
BACKGROUND_RSS_LIMIT_KB = 250 * 1024  # a cpu worker child or the io worker, after start: no model code loaded


def _pool(stats: dict, prefix: str) -> str:
    return next(s["pool"]["implementation"] for host, s in stats.items() if host.startswith(prefix + "@"))


@pytest.mark.broker  # the gevent pool stalled on RabbitMQ with publisher confirms (topology.gevent_worker_options)
def test_each_entrypoint_runs_its_pool_on_its_queues(isolated_broker: IsolatedBroker) -> None:
    workers = isolated_broker.workers
    workers.start("gpu", ["-m", "workers.gpu"])
    workers.start("cpu", ["-m", "workers.cpu", "--concurrency=1"])
    workers.start("io", ["-m", "workers.io"], env={"IO_CONCURRENCY": "5"})
    isolated_broker.wait_ready(["gpu0", "cpu", "io"])

    stats = isolated_broker.inspect("stats")
    assert _pool(stats, "gpu0") == "celery.concurrency.solo:TaskPool"
    assert _pool(stats, "cpu") == "celery.concurrency.prefork:TaskPool"
    assert _pool(stats, "io") == "celery.concurrency.gevent:TaskPool"
    active = isolated_broker.inspect("active_queues")
    queues = {h.split("@")[0]: sorted(q["name"] for q in qs) for h, qs in active.items()}
    assert queues == {"gpu0": ["gpu_queue_0"], "cpu": ["cpu"], "io": ["io"]}
    # The GPU worker loaded its models at start; without CUDA it says so loudly, with CUDA it does not.
    events = [line.get("event") for line in workers.logs("gpu")]
    assert "models loaded and warmed up" in events
    gpu_info = isolated_broker.send(PROCESS_INFO, "gpu_queue_0").get(timeout=30)
    warned = "NO CUDA DEVICE: the GPU worker runs its models on the CPU" in events
    assert warned is not gpu_info["cuda_available"]
    # The prefork worker never initialised CUDA.
    info = isolated_broker.send(PROCESS_INFO, "cpu").get(timeout=30)
    assert info["cuda_initialized"] is False
    # The cpu and io workers import only their own tasks: no torch, OpenCV or ultralytics, a small footprint.
    io_info = isolated_broker.send(PROCESS_INFO, "io").get(timeout=30)
    gpu_pid = gpu_info["pid"]
    print(f"RSS after start: cpu worker child {info['rss_kb'] // 1024} MiB, io worker {io_info['rss_kb'] // 1024} MiB, "
          f"GPU worker {gpu_info['rss_kb'] // 1024} MiB")
    assert info["models_loaded"] == io_info["models_loaded"] == []
    assert info["rss_kb"] < BACKGROUND_RSS_LIMIT_KB and io_info["rss_kb"] < BACKGROUND_RSS_LIMIT_KB
    # Aggregation and rendering run at nice 19 (BACKGROUND_CPU_PRIORITY=low); the GPU worker does not.
    assert [os.getpriority(os.PRIO_PROCESS, pid) for pid in (info["pid"], io_info["pid"])] == [19, 19]
    assert os.getpriority(os.PRIO_PROCESS, gpu_pid) == os.getpriority(os.PRIO_PROCESS, 0)
    assert os.sched_getscheduler(gpu_pid) == os.SCHED_OTHER


def _unacked(broker_url: str, settle: float = 5.0) -> int:
    """Messages of gpu_queue_0 still queued or delivered-but-unacknowledged (the ack follows the result by
    a moment). Redis: the queue's list and kombu's `unacked` hash; RabbitMQ: the queue's message count."""
    deadline = time.monotonic() + settle
    while True:
        pending = _pending(broker_url)
        if pending == 0 or time.monotonic() > deadline:
            return pending
        time.sleep(0.2)


def _pending(broker_url: str) -> int:
    if TEST_BROKER == "amqp":
        return amqp_queue_messages(broker_url.rsplit("/", 1)[1], "gpu_queue_0")
    client = redis.Redis.from_url(broker_url)
    try:
        return int(client.hlen("unacked")) + int(client.llen("gpu_queue_0"))
    finally:
        client.close()


@pytest.mark.broker
def test_solo_worker_recycles_after_max_tasks_and_loses_nothing(isolated_broker: IsolatedBroker) -> None:
    workers = isolated_broker.workers
    workers.start("gpu", ["-m", "workers.supervise", sys.executable, "-m", "workers.gpu"],
                  env={"GPU_MAX_TASKS_PER_CHILD": "3"})
    isolated_broker.wait_ready(["gpu0"])

    results = [isolated_broker.send(PROCESS_INFO, "gpu_queue_0") for _ in range(7)]
    infos = [r.get(timeout=120) for r in results]

    pids = [info["pid"] for info in infos]
    assert len(set(pids)) == 3, pids  # 3 + 3 + 1 tasks: two restarts
    assert pids[0] == pids[1] == pids[2] != pids[3] == pids[4] == pids[5] != pids[6]
    recycles = [line for line in workers.logs("gpu") if line.get("event") == "recycling worker process"]
    assert len(recycles) == 2
    succeeded = wait_for_lines(lambda: workers.logs("gpu"), lambda line: "succeeded in" in str(line.get("event")),
                               count=7, timeout=5)  # the log line follows the result by a moment
    assert len(succeeded) == 7  # each task ran exactly once
    assert _unacked(isolated_broker.env["BROKER_URL"]) == 0  # and each was acknowledged


@pytest.mark.broker
def test_solo_worker_recycles_when_memory_limit_is_exceeded(isolated_broker: IsolatedBroker) -> None:
    workers = isolated_broker.workers
    workers.start("gpu", ["-m", "workers.supervise", sys.executable, "-m", "workers.gpu"],
                  env={"GPU_MAX_MEMORY_PER_CHILD_KB": "1000"})
    isolated_broker.wait_ready(["gpu0"])

    first = isolated_broker.send(PROCESS_INFO, "gpu_queue_0").get(timeout=120)
    second = isolated_broker.send(PROCESS_INFO, "gpu_queue_0").get(timeout=120)

    assert first["pid"] != second["pid"]
    reasons = [line["reason"] for line in workers.logs("gpu") if line.get("event") == "recycling worker process"]
    assert reasons and "resident memory" in reasons[0]
    assert _unacked(isolated_broker.env["BROKER_URL"]) == 0


@pytest.mark.broker
def test_prefork_worker_recycles_its_children(isolated_broker: IsolatedBroker) -> None:
    workers = isolated_broker.workers
    workers.start("cpu", ["-m", "workers.cpu", "--concurrency=1"], env={"CPU_MAX_TASKS_PER_CHILD": "2"})
    isolated_broker.wait_ready(["cpu"])

    pids = [isolated_broker.send(PROCESS_INFO, "cpu").get(timeout=60)["pid"] for _ in range(5)]

    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4], pids


@pytest.mark.broker
def test_two_gpu_queues_spread_photos_and_keep_children_with_their_parent(
    database: str, tmp_path: Path
) -> None:
    from app.intake import submit_photo
    from tests.utils.photos import synthetic_jpeg, wait_final

    broker = IsolatedBroker(*isolated_broker_urls(), tmp_path, gpu_queues=2)
    try:
        for index in (0, 1):
            broker.workers.start(f"gpu{index}", ["-m", "workers.gpu"], env={"GPU_INDEX": str(index)})
        broker.workers.start("cpu", ["-m", "workers.cpu", "--queues=cpu,io", "--concurrency=1"])
        broker.wait_ready(["gpu0", "gpu1", "cpu"])

        photo_ids = [submit_photo(synthetic_jpeg(9500 + i, width=1024, height=768), celery=broker.app).photo_id
                     for i in range(4)]
        for photo_id in photo_ids:
            assert wait_final(photo_id).status == "completed"

        ran_parent = {}
        for worker in ("gpu0", "gpu1"):
            for line in broker.workers.logs(worker):
                if line.get("event") == "photo segmented":
                    ran_parent[line["photo_id"]] = worker
        assert set(ran_parent) == set(photo_ids)
        assert set(ran_parent.values()) == {"gpu0", "gpu1"}  # spread over both GPUs
        for worker in ("gpu0", "gpu1"):
            for line in broker.workers.logs(worker):
                if line.get("event") == "region counted":
                    assert ran_parent[line["photo_id"]] == worker  # children stay with their parent
    finally:
        broker.close()
