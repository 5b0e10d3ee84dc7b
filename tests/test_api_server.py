"""The API as a real `demeter api` process: what uvicorn and the process do under abuse or outage."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.utils.api_server import start_api
from tests.utils.keys import bearer, make_api_key
from tests.utils.processes import WorkerSet

DEAD_DATABASE = "postgresql+psycopg2://postgres@127.0.0.1:1/nothing"  # nothing listens on port 1


@pytest.fixture(scope="module")
def strict_api(data_dir: Path, database: str) -> Iterator[str]:
    with WorkerSet(data_dir / "logs") as processes:
        yield start_api(processes, "api-strict", {"API_BODY_TIMEOUT_SECONDS": "2", "API_MAX_HEADER_BYTES": "16384"})


def _raw(base_url: str, request: bytes, wait: float = 15.0) -> bytes:
    """Send `request` as is; everything the server answers until it closes or `wait` seconds pass."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        with contextlib.suppress(OSError):  # the server may close while a huge request is still being sent
            sock.sendall(request)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def test_a_body_that_trickles_in_is_cut_off_with_408(strict_api: str) -> None:
    key = make_api_key()
    head = (f"POST /api/v1/photos HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n").encode()
    started = time.monotonic()

    answer = _raw(strict_api, head + b"--b\r\n", wait=30)

    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"request_timeout"' in answer
    assert time.monotonic() - started < 30


def test_headers_over_the_limit_are_refused(strict_api: str) -> None:
    huge = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * 1_000_000 + b"\r\n\r\n"

    answer = _raw(strict_api, huge)

    assert not answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:200]
    assert httpx.get(f"{strict_api}/healthz").status_code == 200  # the server itself is fine


@pytest.fixture(scope="module")
def no_database_api(data_dir: Path) -> Iterator[str]:
    with WorkerSet(data_dir / "logs") as processes:
        yield start_api(processes, "api-no-database", {"DATABASE_URL": DEAD_DATABASE})


def test_get_routes_answer_503_when_the_database_is_down(no_database_api: str) -> None:
    token = "dmt_0123abcd_" + "a" * 43
    with httpx.Client(base_url=no_database_api, headers=bearer(token), timeout=30) as http:
        answers = [http.get(path) for path in ("/api/v1/photos", "/api/v1/stock/batches",
                                               "/api/v1/photos/3f2b8c1e-5d4a-4b7e-9a61-0c2d3e4f5a6b")]
        ready = http.get("/readyz")
        alive = http.get("/healthz")

    for response in answers:
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "database_unavailable" and response.headers["Retry-After"]
    assert alive.status_code == 200
    assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("error")
    assert "127.0.0.1" not in ready.text and "5432" not in ready.text and "port" not in ready.text


def big_png(width: int = 7000, height: int = 6000) -> bytes:
    """A 42-megapixel PNG of ~130 KiB (gradients compress well): 120 MiB of pixels once decoded."""
    import io

    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


UPLOAD_MEMORY_BOUND_MIB = 150  # README: 12 such uploads at once add less than this to the API process


def test_twelve_concurrent_big_png_uploads_stay_under_the_memory_bound(data_dir: Path, tmp_path: Path) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import psutil

    photo, key = big_png(), make_api_key("memory")
    # The embedded filesystem broker in a folder of its own: the photos are queued for no worker.
    with WorkerSet(data_dir / "logs") as processes:
        base_url = start_api(processes, "api-memory", {"BROKER_URL": "", "RESULT_BACKEND": "",
                                                       "DATA_DIR": str(tmp_path)})
        api = psutil.Process(processes.processes["api-memory"].pid)
        baseline, peak, done = api.memory_info().rss, 0, threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, api.memory_info().rss)
                time.sleep(0.01)

        def upload(index: int) -> int:
            with httpx.Client(base_url=base_url, headers=bearer(key), timeout=120) as http:
                return http.post("/api/v1/photos", files={"file": (f"big-{index}.png", photo)}).status_code

        sampler = threading.Thread(target=sample)
        sampler.start()
        with ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(upload, range(12)))
        done.set()
        sampler.join()

    growth_mib = (peak - baseline) / 2**20
    print(f"12 concurrent uploads of a {len(photo) // 1024} KiB 7000x6000 PNG: API RSS +{growth_mib:.0f} MiB")
    assert statuses == [202] * 12
    assert growth_mib < UPLOAD_MEMORY_BOUND_MIB
