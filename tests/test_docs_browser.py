"""/docs renders in a real headless Chromium with no network: the API on loopback, every other host
unresolvable and every non-loopback request sent to a dead proxy, so a Swagger UI loaded from a CDN
would leave a blank page. The page must list every operation of the schema.

Needs a Chromium binary (Debian: `apt-get install chromium`); skipped, saying so, without one.
The screenshot is kept in the test's tmp dir and its path printed (`pytest -s` shows it).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.utils.api_server import start_api
from tests.utils.processes import WorkerSet

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM = next((found for name in BROWSERS if (found := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary (chromium, chromium-browser or "
                                                           "google-chrome) on PATH; `apt-get install chromium`")
OFFLINE = [
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # no name resolves but the API's address
    "--proxy-server=http://127.0.0.1:9",  # and no IP literal is reached (loopback bypasses proxies by default)
]


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               f"--user-data-dir={profile}", "--window-size=1280,1600", "--virtual-time-budget=10000",
               *OFFLINE, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def _swagger_ids(schema: dict) -> set[str]:
    """Swagger UI's element id of each operation: `operations-<first tag>-<operationId>`."""
    return {f"operations-{operation['tags'][0]}-{operation['operationId']}"
            for item in schema["paths"].values() for operation in item.values()}


def test_docs_render_every_operation_offline(tmp_path: Path) -> None:
    with WorkerSet(tmp_path / "logs") as processes:
        base_url = start_api(processes, "api-docs", {})
        schema = httpx.get(f"{base_url}/openapi.json", timeout=10).json()
        dom = _chromium(tmp_path / "profile", "--dump-dom", f"{base_url}/docs")
        screenshot = tmp_path / "docs.png"
        shot = _chromium(tmp_path / "profile", f"--screenshot={screenshot}", f"{base_url}/docs")

    print(f"\n/docs screenshot: {screenshot}")
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    assert "swagger-ui" in page and "cdn." not in page  # served from the API itself
    missing = sorted(element for element in _swagger_ids(schema) if f'id="{element}"' not in page)
    assert not missing, f"operations not rendered: {missing}"
    paths = {path for path in schema["paths"]}
    assert {"/api/v1/photos", "/api/v1/stock/batches", "/api/v1/stock/movements"} <= paths
    assert all(f'data-path="{path}"' in page for path in paths)
    assert "Authorize" in page  # the security scheme's button
    assert shot.returncode == 0 and screenshot.stat().st_size > 10_000, shot.stderr[-2000:]
