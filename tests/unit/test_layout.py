"""Each process imports only what it runs; one backoff schedule for every task."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from app.celery_app import task_modules
from app.config import PROJECT_ROOT
from workers.queues import consumed_queues

HEAVY = ("torch", "cv2", "ultralytics", "sahi")


def _imported_after(module: str, env: dict[str, str] | None = None, code: str = "") -> list[str]:
    """The modules a fresh interpreter holds after importing `module` (and running `code`)."""
    script = f"import json, sys, {module}\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120, check=True)
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_api_process_loads_neither_torch_nor_opencv() -> None:
    loaded = _imported_after("app.api.main", code="app.api.main.create_app()")
    assert [name for name in HEAVY if name in loaded] == []


def test_the_database_layer_imports_nothing_from_the_models() -> None:
    loaded = _imported_after("app.db.repository")
    assert [name for name in loaded if name.startswith("app.ml")] == []


@pytest.mark.parametrize("queue", ["cpu", "io"])
def test_cpu_and_io_task_modules_load_no_model_code(queue: str) -> None:
    modules = task_modules([queue])
    loaded = _imported_after("app.celery_app", code="".join(f"import {m}\n" for m in modules))
    assert [name for name in HEAVY if name in loaded] == []


def test_each_worker_imports_the_task_modules_of_its_queues() -> None:
    assert task_modules(consumed_queues(["worker", "--queues=cpu", "--queues=cpu,io"])) == [
        "app.tasks.aggregation", "app.tasks.maintenance", "app.tasks.probes", "app.tasks.io"]
    assert task_modules(consumed_queues(["worker", "-Q", "gpu_queue_1"])) == ["app.tasks.gpu", "app.tasks.probes"]


def _region_retry_countdowns(jitter: bool) -> list[int]:
    """Countdowns the region task picks for its 4th attempt (retries=3), from a fresh process."""
    code = ("from app.tasks.gpu import ml_child_task\n"
            "ml_child_task.push_request(retries=3)\n"
            "print(json.dumps([ml_child_task.retry_countdown() for _ in range(200)]))\n")
    script = f"import json\n{code}"
    env = {**os.environ, "RETRY_JITTER": str(jitter).lower(), "RETRY_BACKOFF": "2", "RETRY_BACKOFF_MAX": "600"}
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          env=env, timeout=120, check=True)
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_region_retries_follow_the_retry_settings_with_and_without_jitter() -> None:
    assert set(_region_retry_countdowns(jitter=False)) == {16}  # RETRY_BACKOFF * 2**3
    jittered = _region_retry_countdowns(jitter=True)
    assert min(jittered) >= 0 and max(jittered) <= 16
    assert len(set(jittered)) > 5  # full jitter: spread over [0, 16], not one value
