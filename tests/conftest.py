"""Test harness: the real Redis and PostgreSQL on this machine, real worker processes.

The environment is set here, before any `app` module reads its settings. Tests under
tests/unit need no service at all. Every other test session gets its own PostgreSQL
database and its own Redis database numbers, and starts the GPU (solo) and CPU workers
as subprocesses, exactly as production does.

The broker: TEST_BROKER=redis (default), amqp (RabbitMQ classic queues) or amqp-quorum (RabbitMQ
quorum queues: the same as amqp with BROKER_QUEUE_TYPE=quorum, which also passes through as is).
On RabbitMQ the session's broker is a fresh virtual host on the machine's RabbitMQ (TEST_AMQP_URL,
guest/guest on 127.0.0.1 by default), and the isolated tests get a second one. The result backend
stays on Redis either way. Tests marked `broker` are the ones whose behaviour depends on the
broker; CI runs them on all three.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
POSTGRES = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432")
TEST_DB = f"demeter_test_{os.getpid()}"
# Two Redis databases (broker, results); TEST_REDIS_DB=N uses N and N+1, so test runs side by side don't mix.
BROKER_DB = int(os.environ.get("TEST_REDIS_DB", "14"))
RESULT_DB = BROKER_DB + 1
# Tests that start their own workers use another pair, so the session's workers don't steal their tasks.
ISOLATED_DB = BROKER_DB - 6
DATA_DIR = Path(tempfile.mkdtemp(prefix="demeter-test-"))
TEST_BROKER_MODE = os.environ.get("TEST_BROKER", "redis")
if TEST_BROKER_MODE not in ("redis", "amqp", "amqp-quorum"):
    raise RuntimeError(f"TEST_BROKER must be redis, amqp or amqp-quorum, not {TEST_BROKER_MODE!r}")
if TEST_BROKER_MODE == "amqp-quorum":
    os.environ["BROKER_QUEUE_TYPE"] = "quorum"  # read by this process's settings and every worker started
TEST_BROKER = "amqp" if TEST_BROKER_MODE.startswith("amqp") else "redis"  # the broker, whatever its queues
AMQP = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")
VHOST = f"demeter_test_{os.getpid()}"
ISOLATED_VHOST = f"{VHOST}_isolated"
BROKER_URL = f"{AMQP}/{VHOST}" if TEST_BROKER == "amqp" else f"{REDIS}/{BROKER_DB}"

os.environ.update(
    {
        "ENVIRONMENT": "test",
        "DATA_DIR": str(DATA_DIR),
        "DATABASE_URL": f"{POSTGRES}/{TEST_DB}",
        "BROKER_URL": BROKER_URL,
        "RESULT_BACKEND": f"{REDIS}/{RESULT_DB}",
        "STORAGE_BACKEND": "local",
        "LOG_FORMAT": "json",
        "VISIBILITY_TIMEOUT": "30",
        # Consistent with it (app/config.py refuses a visibility timeout shorter than a task plus its retry wait).
        "LONGEST_TASK_SECONDS": "20",
        "OUTAGE_BACKOFF_MAX": "8",
    }
)

from tests.utils.processes import IsolatedBroker, WorkerSet  # noqa: E402
from tests.utils.services import (  # noqa: E402
    create_database,
    create_vhost,
    delete_vhost,
    drop_database,
    empty_vhost,
    flush_redis,
)

UNIT_TESTS = Path(__file__).resolve().parent / "unit"


@pytest.fixture(scope="session")
def database() -> Iterator[str]:
    from app.db.migrate import upgrade_database
    from app.db.session import dispose_engine

    create_database(POSTGRES, TEST_DB)
    flush_redis(REDIS, BROKER_DB, RESULT_DB)
    if TEST_BROKER == "amqp":
        create_vhost(VHOST)
        create_vhost(ISOLATED_VHOST)
    upgrade_database()
    yield os.environ["DATABASE_URL"]
    dispose_engine()
    drop_database(POSTGRES, TEST_DB)
    if TEST_BROKER == "amqp":
        delete_vhost(VHOST)
        delete_vhost(ISOLATED_VHOST)


@pytest.fixture(autouse=True)
def _services_outside_the_unit_layer(request: pytest.FixtureRequest) -> None:
    """Every test outside tests/unit gets the session's PostgreSQL database; the unit layer needs no service."""
    if UNIT_TESTS not in Path(str(request.node.path)).parents:
        request.getfixturevalue("database")


@pytest.fixture(scope="session")
def api_key(database: str) -> str:
    """A key of the default tenant (where photos taken in without HTTP land) with every non-admin scope."""
    from tests.utils.keys import make_api_key

    return make_api_key("default")


@pytest.fixture(scope="session")
def workers(database: str) -> Iterator[WorkerSet]:
    """One GPU worker (solo pool) and one CPU worker serving the cpu and io queues."""
    with WorkerSet(DATA_DIR / "logs") as worker_set:
        # Supervised, as in production: the solo worker recycles itself every GPU_MAX_TASKS_PER_CHILD tasks.
        worker_set.start("gpu", ["-m", "workers.supervise", sys.executable, "-m", "workers.gpu"])
        worker_set.start("cpu", ["-m", "workers.cpu", "--queues=cpu,io", "--concurrency=1"])
        worker_set.wait_ready(["gpu0", "cpu"])
        yield worker_set


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


ISOLATED_QUEUES = ["gpu_queue_0", "gpu_queue_1", "cpu", "io", "dead_letter", "broker_dead_letter"]


def isolated_broker_urls() -> tuple[str, str]:
    """An emptied broker and result backend for a test of its own: Redis databases, or a RabbitMQ vhost."""
    flush_redis(REDIS, ISOLATED_DB, ISOLATED_DB + 1)
    results = f"{REDIS}/{ISOLATED_DB + 1}"
    if TEST_BROKER == "amqp":
        empty_vhost(f"{AMQP}/{ISOLATED_VHOST}", ISOLATED_QUEUES)
        return f"{AMQP}/{ISOLATED_VHOST}", results
    return f"{REDIS}/{ISOLATED_DB}", results


@pytest.fixture
def isolated_broker(database: str, tmp_path: Path) -> Iterator[IsolatedBroker]:
    """A broker and result backend of their own, for tests that start and break workers."""
    broker = IsolatedBroker(*isolated_broker_urls(), tmp_path)
    yield broker
    broker.close()
    isolated_broker_urls()
