"""The `demeter` command as a person runs it: real subprocesses, a pseudo-terminal, real databases.

Errors are one line on stderr with the exit code of their class; the demo at a
terminal shows progress and no JSON; piped, its standard output is the table only;
every worker's log is JSON from its very first line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app import exits
from tests.utils.processes import PROJECT_ROOT
from tests.utils.terminal import run_in_terminal

CONNECTION_VARIABLES = ("DATABASE_URL", "BROKER_URL", "RESULT_BACKEND", "STORAGE_BACKEND", "LOG_FORMAT",
                        "LOG_LEVEL", "ENVIRONMENT")
POSTGRES = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432")


def _embedded_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """A developer's shell: no servers configured, ENVIRONMENT and LOG_FORMAT at their defaults."""
    env = {k: v for k, v in os.environ.items() if k not in CONNECTION_VARIABLES}
    env.update({"DATA_DIR": str(data_dir), "PYTHONPATH": str(PROJECT_ROOT), **extra})
    return env


def _demeter(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=PROJECT_ROOT)


def _one_line_error(done: subprocess.CompletedProcess[str], code: int, words: str) -> None:
    assert done.returncode == code, done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("demeter: ") and words in done.stderr, done.stderr


def test_input_errors_are_one_line_and_exit_65(tmp_path: Path) -> None:
    env = _embedded_env(tmp_path / "data")
    text = tmp_path / "notanimage.jpg"
    text.write_text("plain text, not a JPEG")

    _one_line_error(_demeter(["process", str(tmp_path / "missing.jpg")], env), exits.BAD_INPUT, "missing.jpg")
    _one_line_error(_demeter(["process", str(text)], env), exits.BAD_INPUT, "not a readable image")
    _one_line_error(_demeter(["logs", "--correlation-id", "X", str(tmp_path / "nofile.log")], env),
                    exits.BAD_INPUT, "nofile.log: No such file or directory")
    # Nothing was started for a bad input: no run folder, no worker.
    assert not (tmp_path / "data" / "runs").exists()


def test_debug_adds_the_traceback(tmp_path: Path) -> None:
    done = _demeter(["--debug", "process", str(tmp_path / "missing.jpg")], _embedded_env(tmp_path))
    assert done.returncode == exits.BAD_INPUT
    assert "Traceback" in done.stderr and done.stderr.splitlines()[-1].startswith("demeter: bad input: ")


def test_unreachable_databases_are_one_line_and_exit_69(tmp_path: Path) -> None:
    missing = _embedded_env(tmp_path, DATABASE_URL=f"{POSTGRES}/demeter_no_such_database_{os.getpid()}")
    _one_line_error(_demeter(["migrate"], missing), exits.UNAVAILABLE, "does not exist")
    down = _embedded_env(tmp_path, DATABASE_URL="postgresql+psycopg2://postgres@127.0.0.1:9/demeter")
    _one_line_error(_demeter(["dlq", "list"], down), exits.UNAVAILABLE, "database unreachable")


def test_demo_refuses_configured_servers_without_yes(tmp_path: Path) -> None:
    # An address nothing listens on: the refusal comes before any connection is tried (else exit 69).
    env = _embedded_env(tmp_path, DATABASE_URL="postgresql+psycopg2://grower:pw@127.0.0.1:9/stock")
    _one_line_error(_demeter(["demo"], env), exits.USAGE, "DATABASE_URL=postgresql+psycopg2://grower:***@127.0.0.1:9")
    assert "--yes" in _demeter(["demo"], env).stderr


def test_migrate_says_one_thing_and_alembic_stays_quiet(tmp_path: Path) -> None:
    done = _demeter(["migrate"], _embedded_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "database is at the newest schema\n"
    assert done.stderr == ""


def test_synth_says_where_it_wrote(tmp_path: Path) -> None:
    done = _demeter(["synth", "--out", str(tmp_path / "set"), "--n", "1", "--width", "320", "--height", "240"],
                    _embedded_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert str(tmp_path / "set" / "images") in done.stdout and str(tmp_path / "set" / "annotations.json") in done.stdout


def _wait_for(path: Path, words: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and words in path.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{words!r} not in {path}")


@pytest.mark.parametrize("worker", ["cpu", "io"])
def test_every_line_a_worker_prints_is_json_from_the_first(worker: str, tmp_path: Path) -> None:
    """In development with LOG_FORMAT unset and the output collected, a worker logs JSON only: no structlog
    default line before logging is configured, no Celery banner, no kombu hostname warning."""
    log = tmp_path / f"{worker}.log"
    with log.open("wb") as handle:
        process = subprocess.Popen([sys.executable, "-m", f"workers.{worker}", "--concurrency=1"],
                                   stdout=handle, stderr=subprocess.STDOUT, env=_embedded_env(tmp_path / "data"),
                                   cwd=PROJECT_ROOT)
        try:
            _wait_for(log, " ready.")
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    # Celery's own shutdown words ("worker: Warm shutdown") are printed, not logged, after the last log line.
    logged = [line for line in lines if not line.startswith("worker: ")]
    assert logged and all(json.loads(line)["event"] for line in logged), lines
    assert "No hostname was supplied" not in log.read_text()


def test_demo_at_a_terminal_shows_progress_and_no_json(tmp_path: Path) -> None:
    code, output = run_in_terminal([sys.executable, "-m", "app", "demo", "--photos", "1"],
                                   _embedded_env(tmp_path / "data"), PROJECT_ROOT)
    assert code == 0, output[-3000:]
    assert "counting" in output and "1/1 photos" in output and "regions" in output
    assert not any(line.lstrip("\r\x1b[2K").startswith("{") for line in output.splitlines()), output[-3000:]
    assert "all completed: yes" in output
    annotated = next((tmp_path / "data" / "runs").glob("*/annotated/1_bench_9000.jpg"))
    assert str(annotated) in output


def test_demo_piped_prints_the_table_only_and_keeps_earlier_runs(tmp_path: Path) -> None:
    env = _embedded_env(tmp_path / "data")
    first = _demeter(["demo", "--photos", "1"], env, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.splitlines()[0].split() == ["photo", "status", "regions", "counted", "true", "seconds"]
    assert "{" not in first.stdout and "\x1b" not in first.stdout and "counting" not in first.stdout
    # Progress went to stderr as plain lines.
    assert "counting: 1/1 photos" in first.stderr and "\x1b" not in first.stderr
    # A second run times out at once: its own folder, the first run's image still there, and the word "timeout".
    second = _demeter(["demo", "--photos", "1", "--timeout", "0"], env, timeout=600)
    assert second.returncode == exits.TIMEOUT
    assert second.stderr.splitlines()[-1].startswith("demeter: timeout: 1 of 1 photos not finished after 0 s")
    runs = sorted((tmp_path / "data" / "runs").iterdir())
    assert len(runs) == 2 and (runs[0] / "annotated" / "1_bench_9000.jpg").exists()


def test_eval_shows_progress_on_stderr_and_the_report_on_stdout(tmp_path: Path) -> None:
    env = _embedded_env(tmp_path)
    assert _demeter(["synth", "--out", str(tmp_path / "set"), "--n", "1", "--width", "640", "--height", "480"],
                    env).returncode == 0
    done = _demeter(["eval", "--data", str(tmp_path / "set"), "--no-full-image"], env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "evaluating: 0/1 photos" in done.stderr and "evaluating: 1/1 photos" in done.stderr
    assert done.stdout.startswith("photo ") and "evaluating" not in done.stdout
