"""Flower on the test broker: it sees the workers and a photo's tasks, keeps its state across
a restart, guards its API and UI with basic auth, serves /metrics, and refuses to run open."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.intake import submit_photo
from tests.utils.flower import FlowerProcess, run_flower_briefly
from tests.utils.logs import celery_line, wait_for_lines
from tests.utils.photos import synthetic_jpeg, wait_final
from tests.utils.processes import WorkerSet


@pytest.fixture(scope="module")
def flower(workers: WorkerSet, data_dir: Path) -> Iterator[FlowerProcess]:
    with WorkerSet(data_dir / "logs-flower") as processes:
        instance = FlowerProcess(processes, "flower", user="ops", password=secrets.token_urlsafe(12),
                                 db=data_dir / "flower-test" / "flower.db")
        instance.start()
        yield instance


def _short(hostnames: Any) -> set[str]:
    return {str(name).split("@")[0] for name in hostnames}


def _photo_tasks(tasks: dict[str, dict[str, Any]], root_id: str) -> dict[str, dict[str, Any]]:
    """The photo's tasks: the parent (its id is the root) and every task that shares its root."""
    return {uuid_: task for uuid_, task in tasks.items() if uuid_ == root_id or task.get("root_id") == root_id}


def _photo(workers: WorkerSet, seed: int) -> tuple[str, int]:
    submission = submit_photo(synthetic_jpeg(seed), filename="bench.jpg",
                              correlation_id=f"flower-{uuid.uuid4().hex[:12]}")
    session = wait_final(submission.photo_id)
    assert session.status == "completed", session.error
    wait_for_lines(lambda: workers.logs("cpu"), lambda line: line.get("photo_id") == submission.photo_id
                   and celery_line(line, "app.tasks.io.render_annotated", "succeeded"))
    return submission.task_id, session.regions_total or 0


def _all_succeeded(root_id: str, regions: int) -> Any:
    def check(tasks: dict[str, dict[str, Any]]) -> bool:
        mine = _photo_tasks(tasks, root_id)
        names = [task.get("name") for task in mine.values()]
        return (root_id in mine and all(task.get("state") == "SUCCESS" for task in mine.values())
                and names.count("app.tasks.ml.ml_child_task") == regions
                and "app.tasks.io.render_annotated" in names)

    return check


def test_flower_lists_the_gpu_and_cpu_workers(flower: FlowerProcess) -> None:
    workers = flower.wait_for("/api/workers", lambda body: {"gpu0", "cpu"} <= _short(body), refresh=1)

    assert {"gpu0", "cpu"} <= _short(workers)
    alive = flower.wait_for("/api/workers", lambda body: {"gpu0", "cpu"} <= _short(h for h, up in body.items() if up),
                            status=1)  # from the workers' heartbeat events
    assert alive
    page = flower.get("/workers")
    assert page.status_code == 200 and "gpu0@" in page.text


def test_flower_shows_a_photos_tasks_with_their_states(flower: FlowerProcess, workers: WorkerSet) -> None:
    root_id, regions = _photo(workers, 9210)

    tasks = flower.wait_for("/api/tasks", _all_succeeded(root_id, regions), limit=1000)

    mine = _photo_tasks(tasks, root_id)
    assert len(mine) == regions + 3  # the parent, each region, the chord's callback, the io task
    by_name = {task["name"]: task for task in mine.values()}
    parent, aggregation = mine[root_id], by_name["app.tasks.ml.aggregate_results"]
    assert parent["name"] == "app.tasks.ml.ml_parent_task" and parent["worker"].startswith("gpu0@")
    assert f"'regions': {regions}" in parent["result"] and parent["runtime"] > 0  # its own GPU run, timed
    assert aggregation["worker"].startswith("cpu@") and "'total_count'" in aggregation["result"]
    assert aggregation["uuid"] in parent["result"]  # the parent names the task that aggregates its photo
    assert by_name["app.tasks.io.render_annotated"]["parent_id"] == aggregation["uuid"]
    assert by_name["app.tasks.io.render_annotated"]["worker"].startswith("cpu@")
    assert {task["worker"].split("@")[0] for task in mine.values()} == {"gpu0", "cpu"}


def test_metrics_and_healthcheck_need_no_auth_but_the_api_and_ui_do(flower: FlowerProcess,
                                                                     workers: WorkerSet) -> None:
    root_id, regions = _photo(workers, 9211)
    flower.wait_for("/api/tasks", _all_succeeded(root_id, regions), limit=1000)

    metrics = flower.get("/metrics", auth=None)
    health = flower.get("/healthcheck", auth=None)

    assert metrics.status_code == 200 and health.text == "OK"
    assert 'flower_events_total{task="app.tasks.io.render_annotated",type="task-succeeded",worker="cpu@' in metrics.text
    assert 'flower_worker_online{worker="gpu0@' in metrics.text
    assert "flower_task_runtime_seconds_bucket" in metrics.text
    for path in ("/api/workers", "/api/tasks", "/"):
        assert flower.get(path, auth=None).status_code == 401, path
    assert flower.get("/api/workers", auth=("ops", "not-the-password")).status_code == 401
    assert flower.get("/", auth=None).headers["WWW-Authenticate"].startswith("Basic")  # browsers ask for it


def test_flower_keeps_its_tasks_across_a_restart(workers: WorkerSet, data_dir: Path, tmp_path: Path) -> None:
    with WorkerSet(data_dir / "logs-flower") as processes:
        first = FlowerProcess(processes, "flower-restart", user="ops", password="pw-1", db=tmp_path / "flower.db")
        first.start()
        root_id, regions = _photo(workers, 9212)
        first.wait_for("/api/tasks", _all_succeeded(root_id, regions), limit=1000)
        assert first.stop() == 0  # SIGTERM: Flower saves its state on the way out
        assert list(tmp_path.glob("flower.db*"))

        second = FlowerProcess(processes, "flower-restart-2", user="ops", password="pw-2", db=tmp_path / "flower.db")
        second.start()
        tasks = second.get("/api/tasks", limit=1000).json()

    assert _all_succeeded(root_id, regions)(tasks)


@pytest.mark.parametrize(("env", "message"), [
    ({}, "refusing to serve Flower without authentication"),
    ({"FLOWER_ALLOW_NO_AUTH": "false"}, "refusing to serve Flower without authentication"),
    ({"FLOWER_ALLOW_NO_AUTH": "true", "ENVIRONMENT": "production"}, "required in production"),
    ({"FLOWER_BASIC_AUTH": "ops-without-password"}, "must be user:password"),
])
def test_flower_refuses_to_start_without_usable_auth(env: dict[str, str], message: str) -> None:
    done = run_flower_briefly(env)

    assert done.returncode == 2
    assert message in done.stderr
    assert "Visit me at" not in done.stderr + done.stdout
