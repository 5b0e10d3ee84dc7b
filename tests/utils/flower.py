"""Flower (`python -m workers.flower`) as a subprocess on a free port, and a client for its HTTP API."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.utils.processes import PROJECT_ROOT, WorkerSet, project_pythonpath


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FlowerProcess:
    """One Flower on the test broker, with basic auth and its own state file."""

    def __init__(self, processes: WorkerSet, name: str, *, user: str, password: str, db: Path) -> None:
        self.processes, self.name = processes, name
        self.auth = (user, password)
        self.db = db
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        env = {"FLOWER_PORT": str(self.port), "FLOWER_ADDRESS": "127.0.0.1", "FLOWER_DB": str(self.db),
               "FLOWER_BASIC_AUTH": ":".join(self.auth)}
        process = self.processes.start(self.name, ["-m", "workers.flower"], env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"flower exited with {process.returncode}: {self.processes.log_path(self.name)}")
            try:
                if httpx.get(f"{self.base_url}/healthcheck", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"flower not serving after {timeout} s")

    def stop(self) -> int | None:
        return self.processes.stop(self.name)

    def get(self, path: str, *, auth: tuple[str, str] | bool | None = True, **params: Any) -> httpx.Response:
        credentials = self.auth if auth is True else (auth or None)
        return httpx.get(f"{self.base_url}{path}", params=params, auth=credentials, timeout=10)

    def wait_for(self, path: str, predicate: Callable[[Any], bool], timeout: float = 90.0, **params: Any) -> Any:
        """Poll an authenticated JSON endpoint until `predicate(body)` holds; the body."""
        deadline = time.monotonic() + timeout
        body: Any = None
        while time.monotonic() < deadline:
            response = self.get(path, **params)
            if response.status_code == 200:
                body = response.json()
                if predicate(body):
                    return body
            time.sleep(0.5)
        raise TimeoutError(f"{path} never matched in {timeout} s; last body: {str(body)[:2000]}")


def run_flower_briefly(env: dict[str, str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run the entrypoint expecting it to refuse at once (it must not serve)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    return subprocess.run([sys.executable, "-m", "workers.flower"], env={**clean, "FLOWER_PORT": str(free_port()),
                          **env, "PYTHONPATH": project_pythonpath()}, cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=timeout)
