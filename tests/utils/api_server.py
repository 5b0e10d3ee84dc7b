"""The API as a real `python -m app api` process, for what cannot happen in-process
(another broker, another storage backend than the test session's)."""

from __future__ import annotations

import socket
import time

import httpx

from tests.utils.processes import WorkerSet


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_api(processes: WorkerSet, name: str, env: dict[str, str], timeout: float = 60.0) -> str:
    """Start the API on a free port with `env` on top of the session's; return its base URL once it answers."""
    port = free_port()
    process = processes.start(name, ["-m", "app", "api", "--port", str(port)], env=env)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"API {name} exited with {process.returncode}: {processes.log_path(name)}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
                return base_url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"API {name} not answering after {timeout} s: {processes.log_path(name)}")


def terminate_all(processes: WorkerSet) -> None:
    """SIGTERM every process at once, so their shutdowns overlap (WorkerSet then waits for each)."""
    for process in processes.processes.values():
        if process.poll() is None:
            process.terminate()
