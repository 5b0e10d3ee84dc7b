"""Nothing lost on the default settings: killed GPU workers, backlogs, lost messages.

Every test here keeps VISIBILITY_TIMEOUT at its default (3600 s), so no photo can be saved by the
broker's own redelivery: anything that completes within the test's minutes was recovered by the
mechanism under test. A test that shortens another limit says how, and why it scales.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from app import names
from app.db import repository
from app.db.models import DeadLetter
from app.db.session import db_session
from app.deadletter.record import record_stale
from app.deadletter.replay import replay
from app.intake import submit_photo
from tests.conftest import TEST_BROKER
from tests.test_reliability import (
    SMALL,
    Faults,
    _wait_for_log,
    assert_accounted_once,
    start_workers,
)
from tests.utils.photos import synthetic_jpeg, wait_final
from tests.utils.processes import IsolatedBroker
from tests.utils.proxy import TcpProxy
from tests.utils.services import RedisServer
from workers.handover import QueueLease, held_deliveries

DEFAULT_VISIBILITY_TIMEOUT = 3600
GPU_ENV = {"VISIBILITY_TIMEOUT": str(DEFAULT_VISIBILITY_TIMEOUT), "GPU_MAX_TASKS_PER_CHILD": "0"}


@pytest.fixture
def faults(tmp_path: Path) -> Faults:
    return Faults(tmp_path / "faults.json")


def _redis(broker: IsolatedBroker) -> redis.Redis:
    return redis.Redis.from_url(broker.env["BROKER_URL"])


def test_killed_gpu_worker_hands_its_tasks_to_the_restarted_one_on_the_defaults(
    isolated_broker: IsolatedBroker, faults: Faults
) -> None:
    """SIGKILL while a region task runs, restart at once (as compose does): the restarted worker
    requeues the dead one's unacknowledged tasks before it consumes, so every photo completes in
    about a minute, not after the 3600 s visibility timeout; one stock movement per region."""
    faults.set({"ml.count_region": {"delay": 3.0}})  # long enough to be caught in the middle
    start_workers(isolated_broker, faults, visibility_timeout=DEFAULT_VISIBILITY_TIMEOUT)
    photos = [submit_photo(synthetic_jpeg(9500 + i, **SMALL), celery=isolated_broker.app) for i in range(3)]
    _wait_for_log(isolated_broker, "gpu", "app.tasks.ml.ml_child_task[")

    isolated_broker.workers.stop("gpu", sig=signal.SIGKILL)
    assert held_deliveries(_redis(isolated_broker), "gpu_queue_0"), "the killed worker held its region task"
    faults.set({})
    restarted = time.monotonic()
    isolated_broker.workers.start("gpu2", ["-m", "workers.gpu"], env={"FAULT_PLAN_FILE": str(faults.path),
                                                                      **GPU_ENV})

    for submission in photos:
        # Far below the visibility timeout: only the hand-over can have brought the region task back.
        session = wait_final(submission.photo_id, timeout=240)
        assert session.status == "completed"
        assert_accounted_once(submission.photo_id)
    print(f"\nkilled GPU worker: all {len(photos)} photos completed {time.monotonic() - restarted:.1f} s "
          "after the restart (models loaded, lease waited out, tasks requeued)")
    logs = isolated_broker.workers.logs("gpu2")
    assert any(line.get("event") == "requeued the deliveries of a dead GPU worker" for line in logs)
    assert held_deliveries(_redis(isolated_broker), "gpu_queue_0") == []


def test_one_gpu_queue_lease_at_a_time(isolated_broker: IsolatedBroker) -> None:
    """A second worker of the same queue never gets the lease while the first renews it; it gets it once
    the first releases it, or once the first stopped renewing for the lease's length (2 s here instead
    of GPU_LEASE_SECONDS=15; the logic is the same Redis TTL, only shorter)."""
    client = _redis(isolated_broker)
    first, second = QueueLease(client, "gpu_queue_7", 2), QueueLease(client, "gpu_queue_7", 2)
    assert first.try_acquire()
    assert not second.try_acquire()
    for _ in range(3):  # renewed: still the first's after three lease lengths
        time.sleep(1.0)
        assert first.renew()
        assert not second.try_acquire()
    first.release()
    assert second.try_acquire() and second.holder() == second.token
    assert not first.renew()  # taken: the first must stop
    second.release()
    assert first.try_acquire()
    time.sleep(2.5)  # the first "died": nobody renews
    assert second.try_acquire()
    second.release()


def _dead_letters(photo_ids: list[int]) -> list[DeadLetter]:
    with db_session() as db:
        return list(db.scalars(select(DeadLetter).where(DeadLetter.photo_id.in_(photo_ids))))


@pytest.mark.broker
def test_a_backlog_older_than_the_stale_limit_is_never_failed(
    isolated_broker: IsolatedBroker, faults: Faults
) -> None:
    """The GPU worker is down while photos are uploaded; the sweeper runs long after their sessions went
    stale; the worker comes: every photo completes, none is failed or dead-lettered.

    Scaled: the sweeper is sent with max_age_seconds=5 instead of STALE_SESSION_SECONDS=1800. Its decision
    does not depend on the limit (a session older than any limit is still spared while its task is in
    the broker), so the default behaves the same, 1800 s later. On RabbitMQ without BROKER_API (as here) the
    sweeper sees the waiting messages' count, not their photos: while any waits, it fails none."""
    isolated_broker.workers.start("cpu", ["-m", "workers.cpu", "--queues=cpu,io", "--concurrency=1"],
                                  env={"VISIBILITY_TIMEOUT": str(DEFAULT_VISIBILITY_TIMEOUT)})
    isolated_broker.wait_ready(["cpu"])
    photos = [submit_photo(synthetic_jpeg(9520 + i, **SMALL), celery=isolated_broker.app) for i in range(4)]
    time.sleep(6)

    swept = isolated_broker.send(names.SWEEP_TASK, "cpu", [5]).get(timeout=60)
    reconciled = isolated_broker.send(names.RECONCILE_TASK, "cpu", [5]).get(timeout=60)

    # The database is the test session's: sessions that earlier tests left unfinished may be swept too.
    ours = {s.photo_id for s in photos}
    assert not ours & set(swept)
    assert not ours & set(reconciled["requeued"]) and not ours & set(reconciled["given_up"])
    start_workers(isolated_broker, faults, visibility_timeout=DEFAULT_VISIBILITY_TIMEOUT, cpu=False)
    for submission in photos:
        assert assert_accounted_once(submission.photo_id).status == "completed"
    assert _dead_letters([s.photo_id for s in photos]) == []


def test_results_of_a_session_failed_meanwhile_are_applied_and_logged(
    isolated_broker: IsolatedBroker, faults: Faults
) -> None:
    """A session failed while its regions were still being counted (as the sweeper of an older release
    did, or an operator) completes when its results arrive: counts written once, its dead letter marked
    done, and the cpu worker says so."""
    faults.set({"ml.count_region": {"delay": 2.0}})
    start_workers(isolated_broker, faults, visibility_timeout=DEFAULT_VISIBILITY_TIMEOUT)
    submission = submit_photo(synthetic_jpeg(9530, **SMALL), celery=isolated_broker.app)
    _wait_for_log(isolated_broker, "gpu", "app.tasks.ml.ml_child_task[")
    with db_session() as db:
        repository.fail_session(db, photo_id=submission.photo_id, reason="stuck (failed by hand)")
    record_stale(isolated_broker.app, photo_id=submission.photo_id, reason="stuck (failed by hand)",
                 correlation_id=submission.correlation_id)
    faults.set({})

    deadline = time.monotonic() + 180
    while wait_final(submission.photo_id).status != "completed" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert assert_accounted_once(submission.photo_id).status == "completed"
    (letter,) = _dead_letters([submission.photo_id])
    assert letter.replayed_at is not None  # done: nobody replays it
    events = [line.get("event", "") for line in isolated_broker.workers.logs("cpu")]
    assert any(event.startswith("results applied to a session that had failed") for event in events)


@pytest.fixture
def volatile_redis(tmp_path: Path) -> Iterator[tuple[str, Callable[[float], None]]]:
    """A Redis of our own without any persistence: a restart (as a crash) loses every queued message."""
    server = RedisServer(tmp_path / "redis-volatile", persistent=False)
    yield server.url, lambda down_for: server.restart(down_for, crash=True)
    server.stop()


def test_photos_lost_with_the_broker_are_re_enqueued_by_the_reconciler(
    tmp_path: Path, faults: Faults, volatile_redis: tuple[str, Callable[[float], None]], database: str
) -> None:
    """Redis is killed and restarted empty while photos are queued and one is being counted: beat's
    reconciler, on its default interval (60 s) and grace (30 s), finds the unfinished photos that
    no message names any more and re-enqueues them; every photo completes, none is failed."""
    url, restart = volatile_redis
    broker = IsolatedBroker(f"{url}/0", f"{url}/1", tmp_path)
    try:
        faults.set({"ml.count_region": {"delay": 0.5}})
        start_workers(broker, faults, visibility_timeout=DEFAULT_VISIBILITY_TIMEOUT)
        broker.workers.start("beat", ["-m", "workers.beat"])
        photos = [submit_photo(synthetic_jpeg(9540 + i, **SMALL), celery=broker.app) for i in range(6)]
        _wait_for_log(broker, "gpu", "app.tasks.ml.ml_child_task[")

        restart(2.0)
        restarted = time.monotonic()
        faults.set({})

        for submission in photos:
            assert assert_accounted_once(submission.photo_id).status == "completed"
        print(f"\nbroker lost: all {len(photos)} photos completed {time.monotonic() - restarted:.1f} s after "
              "the restart")
        assert _dead_letters([s.photo_id for s in photos]) == []
        events = [line.get("event") for line in broker.workers.logs("cpu")]
        assert "photo re-enqueued: its work was gone from the broker" in events
    finally:
        broker.close()


def test_a_two_minute_database_outage_is_waited_out(
    isolated_broker: IsolatedBroker, faults: Faults, database: str
) -> None:
    """PostgreSQL cut (a TCP proxy refusing every connection) for 2 minutes while photos are segmented,
    counted and aggregated, then back: every photo completes without a manual step, one movement per
    region, no dead letter. On the defaults: OUTAGE_DEADLINE_SECONDS=900 is not shortened."""
    proxy = TcpProxy("127.0.0.1", 5432)
    try:
        via_proxy = database.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        faults.set({"ml.count_region": {"delay": 0.5}})
        start_workers(isolated_broker, faults, visibility_timeout=DEFAULT_VISIBILITY_TIMEOUT,
                      gpu_env={"DATABASE_URL": via_proxy}, cpu_env={"DATABASE_URL": via_proxy})
        photos = [submit_photo(synthetic_jpeg(9560 + i, **SMALL), celery=isolated_broker.app) for i in range(6)]
        _wait_for_log(isolated_broker, "gpu", "app.tasks.ml.ml_child_task[")

        proxy.cut()
        time.sleep(120)
        proxy.restore()
        restored = time.monotonic()

        for submission in photos:
            assert assert_accounted_once(submission.photo_id).status == "completed"
        print(f"\ndatabase outage of 120 s: all {len(photos)} photos completed "
              f"{time.monotonic() - restored:.1f} s after it ended")
        assert _dead_letters([s.photo_id for s in photos]) == []
        waited = [line for line in isolated_broker.workers.all_logs() if "retry" in str(line.get("event")).lower()]
        assert waited, "the workers should have met the outage and retried"
    finally:
        proxy.close()


def _wait_for_status(photo_id: int, status: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db_session() as db:
            if repository.get_session(db, photo_id=photo_id).status == status:
                return
        time.sleep(0.1)
    raise TimeoutError(f"photo {photo_id} never reached {status}")


def test_a_region_failing_while_the_database_is_away_is_spooled_and_its_photo_still_counted(
    isolated_broker: IsolatedBroker, faults: Faults, database: str
) -> None:
    """A region fails for good (its own error, retries spent) while the GPU worker's database is away: its
    dead letter goes to the local spool instead of breaking the chord, the photo ends `warning` with the
    other regions counted once the database is back, and the spooled dead letter reaches the table.
    RETRY_BACKOFF=1 only makes the region's three own retries quicker (1, 2, 4 s instead of 2, 4, 8 s);
    the outage is waited out on its default deadline."""
    proxy = TcpProxy("127.0.0.1", 5432)
    try:
        via_proxy = database.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        start_workers(isolated_broker, faults, visibility_timeout=DEFAULT_VISIBILITY_TIMEOUT,
                      gpu_env={"DATABASE_URL": via_proxy, "RETRY_BACKOFF": "1"})
        # The photo's load waits 2 s, so region 0's fault is in place before its first try; the database
        # is cut once the parent's one transaction (session `processing`, regions saved) has committed.
        faults.set({"storage.get": {"delay": 2.0}})
        submission = submit_photo(synthetic_jpeg(9580, **SMALL), celery=isolated_broker.app)
        faults.set({"ml.count_region": {"fail_first": 99, "keys": [f"{submission.photo_id}:0"]}})
        _wait_for_status(submission.photo_id, "processing")
        proxy.cut()
        _wait_for_log(isolated_broker, "gpu", "dead letter spooled until the database is back")
        proxy.restore()

        session = assert_accounted_once(submission.photo_id)
        assert session.status == "warning" and [w["region_index"] for w in session.warnings] == [0]
        deadline = time.monotonic() + 60
        while not _dead_letters([submission.photo_id]) and time.monotonic() < deadline:
            time.sleep(0.5)
        (letter,) = _dead_letters([submission.photo_id])
        assert letter.task_name == names.CHILD_TASK and letter.retries == 3
    finally:
        proxy.close()


def test_the_first_photo_completes_before_the_last_is_segmented(
    isolated_broker: IsolatedBroker, faults: Faults
) -> None:
    """20 full-size photos uploaded at once: aggregation keeps up with the GPU worker on the default
    BACKGROUND_CPU_PRIORITY, so the first photo is `completed` before the last photo's segmentation
    starts (the sessions' `finished_at` and `started_at`); it fails when aggregation waits for the GPU
    backlog to drain. Only the order is asserted; benchmarks/bench_pipeline.py --latency measures it."""
    start_workers(isolated_broker, faults, visibility_timeout=DEFAULT_VISIBILITY_TIMEOUT)
    photos = [submit_photo(synthetic_jpeg(9600 + i), celery=isolated_broker.app) for i in range(20)]

    sessions = [wait_final(s.photo_id, timeout=600) for s in photos]

    assert all(s.status == "completed" for s in sessions)
    first_done = min(s.finished_at for s in sessions if s.finished_at is not None)
    last_started = max(s.started_at for s in sessions if s.started_at is not None)
    print(f"\nfirst photo completed {(last_started - first_done).total_seconds():.1f} s before the last one "
          "was segmented")
    assert first_done < last_started


def test_the_broker_copy_of_the_dead_letters_is_bounded_and_purged_with_its_row(
    isolated_broker: IsolatedBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `dead_letter` list keeps the newest DEAD_LETTER_QUEUE_MAX_LENGTH copies (3 here instead of
    10000: the same LTRIM), and `purge` removes a letter's copy with its row."""
    from app.config import get_settings
    from app.deadletter.record import Failure, copy_letter_id, publish, store
    from app.deadletter.replay import purge

    monkeypatch.setattr(get_settings(), "dead_letter_queue_max_length", 3)
    client = _redis(isolated_broker)
    ids = []
    for n in range(5):
        failure = Failure(task_name=names.PARENT_TASK, task_id=f"bounded-{n}-{time.time_ns()}",
                          exception_type="InvalidImage", exception_message="test", args=[n])
        ids.append(store(failure))
        publish(isolated_broker.app, failure, ids[-1])

    def copies() -> list[int | None]:
        return [copy_letter_id(raw) for raw in client.lrange(names.DEAD_LETTER_QUEUE, 0, -1)]

    assert copies() == ids[:1:-1]  # the newest three, newest first
    assert purge(ids[3], celery=isolated_broker.app) == 1
    assert copies() == [ids[4], ids[2]]


def test_an_outage_past_its_deadline_is_dead_lettered_without_the_database_and_nothing_is_held(
    isolated_broker: IsolatedBroker, faults: Faults, database: str
) -> None:
    """The cpu worker's database stays away past OUTAGE_DEADLINE_SECONDS (6 s here instead of 900: the same
    clock in the message headers, only shorter; the two-minute test above shows the default waits it out):
    aggregation fails for good, its dead letter waits in the spool and reaches the table once the
    database is back, no message is left unacknowledged, and replaying the letter completes the photo."""
    proxy = TcpProxy("127.0.0.1", 5432)
    try:
        via_proxy = database.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        start_workers(isolated_broker, faults, visibility_timeout=DEFAULT_VISIBILITY_TIMEOUT,
                      cpu_env={"DATABASE_URL": via_proxy, "OUTAGE_DEADLINE_SECONDS": "6"})
        faults.set({"ml.count_region": {"delay": 1.0}})
        submission = submit_photo(synthetic_jpeg(9585, **SMALL), celery=isolated_broker.app)
        _wait_for_log(isolated_broker, "gpu", "photo segmented")
        proxy.cut()
        _wait_for_log(isolated_broker, "cpu", "dead letter spooled until the database is back")
        proxy.restore()

        deadline = time.monotonic() + 60
        while not _dead_letters([submission.photo_id]) and time.monotonic() < deadline:
            time.sleep(0.5)
        (letter,) = _dead_letters([submission.photo_id])
        assert letter.task_name == names.AGGREGATE_TASK and letter.exception_type == "DatabaseUnavailable"
        events = [line.get("event") for line in isolated_broker.workers.logs("cpu")]
        assert "outage outlasted its deadline" in events
        client = _redis(isolated_broker)
        time.sleep(2)  # the acknowledgement follows the failure by a moment
        assert held_deliveries(client, "cpu") == []

        faults.set({})
        replay(letter.id, isolated_broker.app)
        assert assert_accounted_once(submission.photo_id).status == "completed"
    finally:
        proxy.close()


def _stored_never_enqueued(seed: int, correlation_id: str) -> int:
    """A photo stored and recorded with its session, whose task was never sent: no work anywhere."""
    from app.storage import get_storage, new_key

    key = new_key("original", "jpg")
    get_storage().put(key, synthetic_jpeg(seed, **SMALL), "image/jpeg")
    with db_session() as db:
        photo, _ = repository.create_photo(db, storage_key=key, content_type="image/jpeg", width=1024, height=768,
                                           size_bytes=1, correlation_id=correlation_id)
        return photo.id


def test_two_sweeps_at_once_fail_a_stuck_photo_once(isolated_broker: IsolatedBroker) -> None:
    """Two sweeper runs in parallel (two cpu processes) over the same photo with no work left: one of them
    fails it, with one dead letter; neither crashes."""
    isolated_broker.workers.start("cpu", ["-m", "workers.cpu", "--queues=cpu,io", "--concurrency=2"])
    isolated_broker.wait_ready(["cpu"])
    photo_id = _stored_never_enqueued(9595, "stuck-twice")

    sweeps = [isolated_broker.send(names.SWEEP_TASK, "cpu", [0]) for _ in range(2)]
    results = [sweep.get(timeout=120) for sweep in sweeps]

    assert sorted(photo_id in result for result in results) == [False, True]
    assert wait_final(photo_id).status == "failed"
    assert [letter.exception_type for letter in _dead_letters([photo_id])] == ["StaleSession"]


def test_the_reconciler_gives_up_after_its_attempts_with_a_dead_letter(isolated_broker: IsolatedBroker) -> None:
    """A photo whose work keeps vanishing (its queue emptied after each re-enqueue, as a broker that loses
    it every time) is re-enqueued RECONCILE_MAX_ATTEMPTS (3) times, then failed and dead-lettered as
    `WorkLost`. The grace is passed as 0 s instead of RECONCILE_GRACE_SECONDS=30, the only change."""
    isolated_broker.workers.start("cpu", ["-m", "workers.cpu", "--queues=cpu,io", "--concurrency=1"])
    isolated_broker.wait_ready(["cpu"])
    photo_id = _stored_never_enqueued(9596, "lost-every-time")
    client = _redis(isolated_broker)

    outcomes = []
    for _ in range(4):
        outcomes.append(isolated_broker.send(names.RECONCILE_TASK, "cpu", [0]).get(timeout=120))
        client.delete(*[key for key in client.keys("gpu_queue_0*") if client.type(key) == b"list"] or ["-"])
        time.sleep(1.1)  # the next look sees the session unchanged for longer than the grace

    assert [photo_id in o["requeued"] for o in outcomes] == [True, True, True, False]
    assert photo_id in outcomes[3]["given_up"]
    session = wait_final(photo_id)
    assert session.status == "failed" and "lost 3 times" in (session.error or "")
    assert [letter.exception_type for letter in _dead_letters([photo_id])] == ["WorkLost"]


@pytest.mark.broker
@pytest.mark.skipif(TEST_BROKER != "amqp", reason="RabbitMQ hides its unacknowledged messages; Redis shows them")
def test_without_the_management_api_the_reconciler_on_rabbitmq_requeues_nothing_and_says_why(
    isolated_broker: IsolatedBroker,
) -> None:
    """RabbitMQ without BROKER_API (this machine's has no management plugin): a photo with no work
    anywhere is not re-enqueued, since a photo whose task runs unacknowledged would look the same;
    the cpu worker logs the reason. Grace 0 s instead of RECONCILE_GRACE_SECONDS=30, the only change."""
    isolated_broker.workers.start("cpu", ["-m", "workers.cpu", "--queues=cpu,io", "--concurrency=1"],
                                  env={"BROKER_API": ""})
    isolated_broker.wait_ready(["cpu"])
    photo_id = _stored_never_enqueued(9597, "unseen-on-rabbitmq")  # on Redis the reconciler would re-enqueue it
    time.sleep(1.1)  # unchanged for longer than the grace

    outcome = isolated_broker.send(names.RECONCILE_TASK, "cpu", [0]).get(timeout=120)

    assert photo_id not in outcome["requeued"] and photo_id not in outcome["given_up"]
    with db_session() as db:
        assert repository.get_session(db, photo_id=photo_id).requeue_attempts == 0
    skipped = [line for line in isolated_broker.workers.logs("cpu")
               if line.get("event") == "unfinished photos not reconciled: the broker's work cannot be seen"]
    assert skipped and "BROKER_API" in skipped[-1]["reason"]
