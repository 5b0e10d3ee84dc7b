"""Settings that would lose or double work are refused at start-up, in every process (no service needed)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from app.config import PROJECT_ROOT, Settings

CHECKED = ("visibility_timeout", "longest_task_seconds", "retry_backoff", "retry_backoff_max", "task_max_retries",
           "outage_backoff_max", "outage_deadline_seconds", "stale_session_seconds", "gpu_lease_seconds")


def _settings(**changes: object) -> Settings:
    """The checked settings at their defaults (whatever the environment says), with `changes`."""
    defaults = {name: Settings.model_fields[name].default for name in CHECKED}
    return Settings(**{**defaults, **changes})


def test_the_defaults_pass() -> None:
    settings = _settings()
    assert settings.longest_retry_countdown == 30  # OUTAGE_BACKOFF_MAX; own retries wait at most 8 s


@pytest.mark.parametrize(("changes", "named"), [
    ({"visibility_timeout": 600}, "VISIBILITY_TIMEOUT (600 s) must exceed LONGEST_TASK_SECONDS"),
    ({"retry_backoff_max": 4000, "task_max_retries": 12}, "VISIBILITY_TIMEOUT (3600 s)"),
    ({"stale_session_seconds": 300}, "STALE_SESSION_SECONDS (300 s) must exceed LONGEST_TASK_SECONDS"),
    ({"gpu_lease_seconds": 1}, "GPU_LEASE_SECONDS (1)"),
])
def test_combinations_that_lose_or_double_work_are_refused(changes: dict[str, object], named: str) -> None:
    with pytest.raises(ValidationError, match=named.replace("(", r"\(").replace(")", r"\)")):
        _settings(**changes)


def test_a_process_refuses_to_start_and_says_why() -> None:
    env = {**os.environ, "VISIBILITY_TIMEOUT": "60", "LONGEST_TASK_SECONDS": "600"}
    done = subprocess.run([sys.executable, "-c", "import app.celery_app"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "VISIBILITY_TIMEOUT (60 s) must exceed LONGEST_TASK_SECONDS (600 s)" in done.stderr
