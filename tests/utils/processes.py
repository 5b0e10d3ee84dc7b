"""Worker processes started by the tests, with their JSON logs kept for assertions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def project_pythonpath() -> str:
    """PYTHONPATH for a child process: the project first, then whatever this process was given (packages
    installed beside it)."""
    return os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    if not path.exists():
        return lines
    for raw in path.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                continue
    return lines


class WorkerSet:
    """Start, signal and stop worker subprocesses; each logs to its own file."""

    def __init__(self, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, **(env or {}), "PYTHONPATH": project_pythonpath()}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        handle = self.log_path(name).open("ab")
        process = subprocess.Popen(
            [sys.executable, *args], stdout=handle, stderr=subprocess.STDOUT,
            env={**self.env, **(env or {})}, cwd=PROJECT_ROOT,
        )
        self.processes[name] = process
        return process

    def logs(self, name: str) -> list[dict[str, Any]]:
        return read_json_lines(self.log_path(name))

    def all_logs(self) -> list[dict[str, Any]]:
        return [line for name in self.processes for line in self.logs(name)]

    def wait_ready(self, hostnames: list[str], timeout: float = 120.0, app: Any = None) -> None:
        """Wait until every named worker answers a ping over the broker."""
        if app is None:
            from app.celery_app import app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            replies = app.control.ping(timeout=1.0) or []
            seen = {name.split("@")[0] for reply in replies for name in reply}
            if all(h in seen for h in hostnames):
                return
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"worker {name} exited with {process.returncode}: {self.log_path(name)}")
        raise TimeoutError(f"workers {hostnames} not ready after {timeout} s")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int | None:
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def __enter__(self) -> WorkerSet:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for name in list(self.processes):
            self.stop(name)


# Delivery and worker tests count small (1024x768) photos and blank or odd ones, whose plausibility is not
# what they test. There "completed" must mean "nothing lost", so their workers lift the share thresholds;
# no_regions and no_plants still apply.
LENIENT_PLAUSIBILITY = {"PLAUSIBILITY_SIZE_OUTLIERS": "1", "PLAUSIBILITY_OVERLAP": "1",
                        "PLAUSIBILITY_LOW_CONFIDENCE": "1", "PLAUSIBILITY_NOT_GREEN": "1",
                        "PLAUSIBILITY_DENSITY_FACTOR": "1000"}


class IsolatedBroker:
    """A Celery client app on its own Redis databases, with workers started against them."""

    def __init__(self, broker_url: str, result_backend: str, log_dir: Path, gpu_queues: int = 1) -> None:
        from app.celery_app import create_app
        from app.config import get_settings

        self.env = {"BROKER_URL": broker_url, "RESULT_BACKEND": result_backend, "GPU_QUEUES": str(gpu_queues),
                    **LENIENT_PLAUSIBILITY}
        settings = get_settings().model_copy(
            update={"broker_url": broker_url, "result_backend": result_backend, "gpu_queues": gpu_queues}
        )
        self.app = create_app(settings)
        self.workers = WorkerSet(log_dir, env=self.env)

    def send(self, name: str, queue: str, args: list[Any] | None = None, **options: Any) -> Any:
        return self.app.send_task(name, args=args or [], queue=queue, **options)

    def inspect(self, method: str, timeout: float = 3.0) -> dict[str, Any]:
        return getattr(self.app.control.inspect(timeout=timeout), method)() or {}

    def wait_ready(self, hostnames: list[str], timeout: float = 120.0) -> None:
        self.workers.wait_ready(hostnames, timeout, app=self.app)

    def close(self) -> None:
        self.workers.__exit__(None, None, None)
        self.app.close()
