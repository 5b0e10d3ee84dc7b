"""Nothing lost, nothing doubled: break things on purpose and check every photo ends well.

Each test runs its own worker processes on an isolated broker, so it can kill them,
cut their database or restart their Redis without touching the other tests.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from app import names
from app.db import repository
from app.db.models import DeadLetter, ProcessingSession, Region, StockBatch, StockMovement
from app.db.session import db_session
from app.deadletter.replay import replay
from app.errors import BrokerUnavailable, ReplayRefused
from app.intake import choose_gpu_queue, enqueue, submit_photo
from app.storage import get_storage, new_key
from tests.conftest import TEST_BROKER
from tests.utils.photos import synthetic_jpeg, wait_final
from tests.utils.processes import IsolatedBroker
from tests.utils.proxy import TcpProxy
from tests.utils.services import RedisServer, amqp_queue_messages, rabbitmq_memory_alarm

SMALL = {"width": 1024, "height": 768}  # fast photos: reliability, not accuracy, is under test here


class Faults:
    """The fault plan file the workers re-read on every injection point."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.set({})

    def set(self, plan: dict[str, dict[str, Any]]) -> None:
        self.path.write_text(json.dumps(plan))


@pytest.fixture
def faults(tmp_path: Path) -> Faults:
    return Faults(tmp_path / "faults.json")


def start_workers(broker: IsolatedBroker, faults: Faults, gpu_env: dict[str, str] | None = None,
                  cpu_env: dict[str, str] | None = None, visibility_timeout: int = 3600, cpu: bool = True) -> None:
    """A GPU and (unless `cpu` is False) a CPU worker. A short visibility timeout brings a killed worker's
    task back soon, but must stay above the longest wait of a prefetched or retrying task, or tasks run twice."""
    # No recycling here (tests/test_workers.py covers it): these tests stop and restart workers themselves.
    env = {"FAULT_PLAN_FILE": str(faults.path), "GPU_MAX_TASKS_PER_CHILD": "0", **timeouts(visibility_timeout)}
    broker.workers.start("gpu", ["-m", "workers.gpu"], env={**env, **(gpu_env or {})})
    if cpu:
        broker.workers.start("cpu", ["-m", "workers.cpu", "--queues=cpu,io", "--concurrency=1"],
                             env={**env, **(cpu_env or {})})
    broker.wait_ready(["gpu0", "cpu"])


def timeouts(visibility_timeout: int) -> dict[str, str]:
    """VISIBILITY_TIMEOUT and, when it is shortened, the retry caps and expected task length shortened with
    it, so the combination passes app/config.py's check (a retry held in a worker must come due before
    the broker gives its task to another worker)."""
    env = {"VISIBILITY_TIMEOUT": str(visibility_timeout)}
    if visibility_timeout < 3600:
        cap = str(max(1, visibility_timeout // 4))
        env.update(RETRY_BACKOFF="1", RETRY_BACKOFF_MAX=cap, OUTAGE_BACKOFF_MAX=cap,
                   LONGEST_TASK_SECONDS=str(visibility_timeout // 2))
    return env


def movements_of(photo_id: int) -> list[StockMovement]:
    with db_session() as db:
        session = repository.get_session(db, photo_id=photo_id)
        query = select(StockMovement).join(StockBatch).where(StockBatch.session_id == session.id)
        return list(db.scalars(query))


def assert_accounted_once(photo_id: int) -> ProcessingSession:
    """The session ended, and each region that was counted has exactly one batch and one movement."""
    session = wait_final(photo_id, timeout=240)
    with db_session() as db:
        regions = list(db.scalars(select(Region).where(Region.session_id == session.id)))
        batches = list(db.scalars(select(StockBatch).where(StockBatch.session_id == session.id)))
    movements = movements_of(photo_id)
    counted = [r for r in regions if r.error is None]
    assert len(batches) == len(movements) == len(counted)
    assert len({m.idempotency_key for m in movements}) == len(movements)
    assert sum(m.quantity for m in movements) == sum(b.quantity for b in batches) == (session.total_count or 0)
    return session


def dead_letters_for(photo_id: int) -> list[DeadLetter]:
    with db_session() as db:
        return list(db.scalars(select(DeadLetter).where(DeadLetter.photo_id == photo_id)))


def retry_times(log: list[dict], task_id: str) -> list[datetime]:
    """When the worker started each run of a task: the first run and every retry."""
    marks = [line for line in log if line.get("task_id") == task_id and line.get("event") == "task started"]
    return [datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")) for line in marks]


@pytest.mark.broker
def test_storage_failing_twice_completes_after_two_documented_backoffs(
    isolated_broker: IsolatedBroker, faults: Faults
) -> None:
    faults.set({"storage.get": {"fail_first": 2}})
    start_workers(isolated_broker, faults)

    submission = submit_photo(synthetic_jpeg(9300, **SMALL), celery=isolated_broker.app)

    session = assert_accounted_once(submission.photo_id)
    assert session.status == "completed"
    starts = retry_times(isolated_broker.workers.logs("gpu"), submission.task_id)
    assert len(starts) == 3  # the first run and two retries
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert 2.0 <= gaps[0] < 3.5 and 4.0 <= gaps[1] < 5.5, gaps  # RETRY_BACKOFF=2: 2 s, then 4 s
    assert dead_letters_for(submission.photo_id) == []


def _submit_corrupt(broker: IsolatedBroker) -> tuple[int, str, str]:
    """A photo whose stored file got corrupted after it was accepted."""
    key = new_key("original", "jpg")
    get_storage().put(key, b"\xff\xd8\xff\xe0 not really a jpeg", "image/jpeg")
    with db_session() as db:
        photo, _ = repository.create_photo(db, storage_key=key, content_type="image/jpeg", width=1024,
                                           height=768, size_bytes=20, correlation_id="corrupt-photo")
        photo_id = photo.id
    task_id = enqueue(photo_id, "corrupt-photo", choose_gpu_queue(photo_id), broker.app)
    return photo_id, key, task_id


@pytest.mark.broker
def test_corrupt_photo_is_one_dead_letter_and_replays_once_fixed(
    isolated_broker: IsolatedBroker, faults: Faults
) -> None:
    start_workers(isolated_broker, faults)
    good = [submit_photo(synthetic_jpeg(9310 + i, **SMALL), celery=isolated_broker.app) for i in range(2)]
    bad_id, bad_key, _ = _submit_corrupt(isolated_broker)

    for submission in good:
        assert assert_accounted_once(submission.photo_id).status == "completed"
    failed = wait_final(bad_id)
    assert failed.status == "failed" and "InvalidImage" in (failed.error or "")
    letters = dead_letters_for(bad_id)
    assert len(letters) == 1
    assert letters[0].exception_type == "InvalidImage" and letters[0].retries == 0  # no retry wasted
    assert letters[0].correlation_id == "corrupt-photo"

    # The operator fixes the file and replays: the photo completes, and a second replay is refused.
    get_storage().put(bad_key, synthetic_jpeg(9312, **SMALL), "image/jpeg")
    replay(letters[0].id, isolated_broker.app)
    assert assert_accounted_once(bad_id).status == "completed"
    with pytest.raises(ReplayRefused):
        replay(letters[0].id, isolated_broker.app)
    assert len(movements_of(bad_id)) == (wait_final(bad_id).regions_total or 0)


@pytest.mark.broker
def test_region_failing_for_good_leaves_a_warning_and_replays_into_the_session(
    isolated_broker: IsolatedBroker, faults: Faults
) -> None:
    start_workers(isolated_broker, faults)
    submission = submit_photo(synthetic_jpeg(9360, **SMALL), celery=isolated_broker.app)
    faults.set({"ml.count_region": {"fail_first": 99, "keys": [f"{submission.photo_id}:0"]}})

    session = assert_accounted_once(submission.photo_id)

    assert session.regions_total and session.regions_total >= 2
    assert session.status == "warning"
    assert [w["region_index"] for w in session.warnings] == [0]
    (letter,) = dead_letters_for(submission.photo_id)
    assert letter.task_name == "app.tasks.ml.ml_child_task" and letter.retries == 3
    counted_before = session.total_count or 0

    faults.set({})
    replay(letter.id, isolated_broker.app)
    deadline = time.monotonic() + 60
    while wait_final(submission.photo_id).status != "completed" and time.monotonic() < deadline:
        time.sleep(0.3)
    session = assert_accounted_once(submission.photo_id)
    assert session.status == "completed" and session.warnings == []
    assert (session.total_count or 0) > counted_before


def _wait_for_log(broker: IsolatedBroker, name: str, needle: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(needle in str(line.get("event")) for line in broker.workers.logs(name)):
            return
        time.sleep(0.1)
    raise TimeoutError(f"no {needle!r} in the {name} worker's log")


@pytest.mark.broker
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_worker_stopped_in_the_middle_of_a_child_task(
    isolated_broker: IsolatedBroker, faults: Faults, sig: signal.Signals
) -> None:
    faults.set({"ml.count_region": {"delay": 3.0}})  # long enough to be caught in the middle
    start_workers(isolated_broker, faults, visibility_timeout=8)
    submission = submit_photo(synthetic_jpeg(9320), celery=isolated_broker.app)
    _wait_for_log(isolated_broker, "gpu", "app.tasks.ml.ml_child_task[")

    isolated_broker.workers.stop("gpu", sig=sig)
    faults.set({})
    isolated_broker.workers.start("gpu2", ["-m", "workers.gpu"], env={
        "FAULT_PLAN_FILE": str(faults.path), "GPU_MAX_TASKS_PER_CHILD": "0", **timeouts(8)})

    session = assert_accounted_once(submission.photo_id)
    assert session.status == "completed"
    assert session.regions_total and session.regions_total > 0


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[tuple[str, Callable[[float], None]]]:
    """A Redis of our own with AOF persistence, which the test may shut down cleanly and restart."""
    server = RedisServer(tmp_path / "redis", persistent=True)
    yield server.url, lambda down_for: server.restart(down_for, crash=False)
    server.stop()


def test_redis_restart_with_queued_photos(tmp_path: Path, faults: Faults, persistent_redis, database: str) -> None:
    # Beat runs as in production: a message a worker has popped but not yet registered as unacknowledged
    # when Redis goes away can be gone from Redis (kombu's BRPOP, then its unacked write); a CI run lost one
    # region so. The reconciler, on its defaults (60 s interval, 30 s grace), re-enqueues such a photo.
    url, restart = persistent_redis
    broker = IsolatedBroker(f"{url}/0", f"{url}/1", tmp_path)
    try:
        start_workers(broker, faults, visibility_timeout=10)
        broker.workers.start("beat", ["-m", "workers.beat"])
        photos = [submit_photo(synthetic_jpeg(9330 + i, **SMALL), celery=broker.app) for i in range(3)]

        restart(down_for=2.0)

        for submission in photos:
            assert assert_accounted_once(submission.photo_id).status == "completed"
    finally:
        broker.close()


def test_database_refusing_connections_during_aggregation(
    isolated_broker: IsolatedBroker, faults: Faults, database: str
) -> None:
    proxy = TcpProxy("127.0.0.1", 5432)
    try:
        via_proxy = database.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        start_workers(isolated_broker, faults, cpu_env={"DATABASE_URL": via_proxy})
        submission = submit_photo(synthetic_jpeg(9340, **SMALL), celery=isolated_broker.app)
        proxy.cut()  # the aggregation worker's database goes away for 10 s
        time.sleep(10)
        proxy.restore()

        session = assert_accounted_once(submission.photo_id)
        assert session.status == "completed"
        retried = [line for line in isolated_broker.workers.logs("cpu")
                   if "aggregate_results" in str(line.get("event")) and "retry" in str(line.get("event"))]
        assert retried, "aggregation should have met the outage and retried"
    finally:
        proxy.close()


def test_soak_with_random_transient_faults(isolated_broker: IsolatedBroker, faults: Faults) -> None:
    photos = int(os.environ.get("SOAK_PHOTOS", "100"))
    faults.set({"storage.get": {"rate": 0.1, "seed": 1}, "ml.count_region": {"rate": 0.1, "seed": 2},
                "db.write_counts": {"rate": 0.1, "seed": 3}})
    start_workers(isolated_broker, faults)
    payloads = [synthetic_jpeg(9400 + i % 10, **SMALL) for i in range(photos)]

    ids = [submit_photo(data, celery=isolated_broker.app).photo_id for data in payloads]
    sessions = [assert_accounted_once(photo_id) for photo_id in ids]

    statuses = {s: sum(1 for x in sessions if x.status == s) for s in ("completed", "warning", "failed")}
    dead = {photo_id for photo_id in ids if dead_letters_for(photo_id)}
    injected = sum(1 for line in isolated_broker.workers.all_logs() if "injected fault" in json.dumps(line)
                   and "retry" in str(line.get("event")).lower())
    with db_session() as db:
        duplicates = db.scalar(select(func.count()).select_from(
            select(StockMovement.idempotency_key).group_by(StockMovement.idempotency_key)
            .having(func.count() > 1).subquery()))
    print(f"\nsoak: photos={photos} faults_retried={injected} completed={statuses['completed']} "
          f"warning={statuses['warning']} failed={statuses['failed']} dead_lettered={len(dead)} "
          f"duplicates={duplicates}")
    assert duplicates == 0
    assert statuses["completed"] + statuses["warning"] + statuses["failed"] == photos
    # Anything that did not complete cleanly is in the dead-letter queue for an operator.
    assert {s.photo_id for s in sessions if s.status != "completed"} <= dead
    assert injected > 0


def test_stale_session_is_swept_and_dead_lettered(isolated_broker: IsolatedBroker, faults: Faults) -> None:
    start_workers(isolated_broker, faults)
    key = new_key("original", "jpg")
    get_storage().put(key, synthetic_jpeg(9350, **SMALL), "image/jpeg")
    with db_session() as db:
        photo, _session = repository.create_photo(db, storage_key=key, content_type="image/jpeg", width=1024,
                                                 height=768, size_bytes=1, correlation_id="stuck-photo")
        photo_id = photo.id  # never enqueued: it is stuck in pending

    swept = isolated_broker.send("app.tasks.maintenance.sweep_stale_sessions", "cpu", [0]).get(timeout=60)

    assert photo_id in swept
    assert wait_final(photo_id).status == "failed"
    (letter,) = dead_letters_for(photo_id)
    assert letter.exception_type == "StaleSession" and letter.correlation_id == "stuck-photo"
    replay(letter.id, isolated_broker.app)
    assert assert_accounted_once(photo_id).status == "completed"



@pytest.mark.broker
@pytest.mark.skipif(TEST_BROKER != "amqp", reason="AMQP heartbeats: Redis connections have none")
def test_a_task_longer_than_the_heartbeat_interval_runs_once(isolated_broker: IsolatedBroker, faults: Faults) -> None:
    # RabbitMQ closes a connection that stays silent for about its heartbeat timeout (two missed heartbeats,
    # sent every half of it). Scaled 1:30 from the default BROKER_HEARTBEAT=60: a 2 s heartbeat and an 8 s
    # region are a 240 s region under the default, four timeouts long. The solo GPU worker cannot send
    # heartbeats while its task runs, so it must negotiate none (app/topology.py, solo_worker_options);
    # with the 2 s heartbeat it loses its connection in the middle of every run and the region runs again and
    # again (the photo never completes: checked by negotiating the heartbeat, the test then times out).
    # The cpu worker keeps the default heartbeat: with 2 s, on quorum queues and a loaded 2-core machine, it
    # lost its connection during its own start (after mingle), again and again, and was never ready.
    start_workers(isolated_broker, faults, gpu_env={"BROKER_HEARTBEAT": "2"})
    submission = submit_photo(synthetic_jpeg(9370, **SMALL), celery=isolated_broker.app)
    faults.set({"ml.count_region": {"delay": 8.0, "keys": [f"{submission.photo_id}:0"]}})

    assert assert_accounted_once(submission.photo_id).status == "completed"

    log = isolated_broker.workers.logs("gpu")
    started = [line["task_id"] for line in log if line.get("event") == "task started" and line.get("task_id")]
    assert started and len(started) == len(set(started)), "a task ran twice"
    assert not any("missed heartbeats" in str(line) or "Connection to broker lost" in str(line) for line in log)


@pytest.mark.broker
@pytest.mark.skipif(TEST_BROKER != "amqp", reason="RabbitMQ's own dead-lettering: Redis has none")
def test_a_message_the_broker_dead_letters_becomes_a_dead_letter_row(isolated_broker: IsolatedBroker) -> None:
    isolated_broker.workers.start("cpu", ["-m", "workers.cpu", "--queues=cpu,io", "--concurrency=1"])
    isolated_broker.wait_ready(["cpu"])
    # A task no worker knows is rejected without requeue: RabbitMQ dead-letters it into demeter.dlx.
    sent = isolated_broker.send("app.tasks.gone.old_task", "cpu", [41, 42])

    deadline, recorded = time.monotonic() + 60, 0
    while not recorded and time.monotonic() < deadline:
        recorded = isolated_broker.send(names.BROKER_DEAD_LETTER_TASK, "cpu").get(timeout=60)
        time.sleep(0.5)

    with db_session() as db:
        letter = db.scalars(select(DeadLetter).where(DeadLetter.task_id == sent.id)).one()
    assert recorded == 1
    assert letter.task_name == "app.tasks.gone.old_task" and letter.args == [41, 42]
    assert letter.exception_type == "BrokerDeadLetter" and letter.queue == "cpu"
    assert "rejected" in (letter.exception_message or "")


@pytest.mark.broker
@pytest.mark.skipif(TEST_BROKER != "amqp", reason="RabbitMQ's memory alarm blocks publishers; Redis has none")
def test_a_memory_alarm_during_upload_answers_503_and_keeps_the_photo(
    isolated_broker: IsolatedBroker, faults: Faults
) -> None:
    vhost = isolated_broker.env["BROKER_URL"].rsplit("/", 1)[1]
    with rabbitmq_memory_alarm(), pytest.raises(BrokerUnavailable):  # the API answers 503 for this
        submit_photo(synthetic_jpeg(9380, **SMALL), celery=isolated_broker.app)

    # Never a task for a deleted photo: its rows are kept, whatever became of the blocked publish.
    with db_session() as db:
        (session,) = db.scalars(select(ProcessingSession).order_by(ProcessingSession.id.desc()).limit(1))
        photo_id, task_id = session.photo_id, session.task_id
    assert session.status == "pending" and task_id is None  # listed as not queued (no task id)
    time.sleep(2)  # the broker reads the blocked connection's buffer once the alarm is gone
    queued = amqp_queue_messages(vhost, "gpu_queue_0")
    assert queued <= 1  # one publish, never retried into copies
    if queued:  # it did arrive after all: the photo completes
        start_workers(isolated_broker, faults)
        assert assert_accounted_once(photo_id).status == "completed"
