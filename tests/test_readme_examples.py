"""The README's curl examples, run as written against a real API process and real workers."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.client import DemeterClient
from tests.utils.api_server import start_api
from tests.utils.keys import make_api_key
from tests.utils.photos import synthetic_jpeg
from tests.utils.processes import WorkerSet

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def curl_examples() -> str:
    block = re.search(r"<!-- curl-examples.*?-->\n```bash\n(.*?)```\n<!-- /curl-examples -->", README, re.DOTALL)
    assert block, "the README's curl-examples block is missing"
    return block.group(1)


def json_documents(text: str) -> list[Any]:
    decoder, documents, position = json.JSONDecoder(), [], 0
    while position < len(text.rstrip()):
        document, position = decoder.raw_decode(text, position)
        documents.append(document)
        while position < len(text) and text[position].isspace():
            position += 1
    return documents


@pytest.fixture(scope="module")
def api(data_dir: Path, workers: WorkerSet) -> Iterator[str]:
    with WorkerSet(data_dir / "logs") as processes:
        yield start_api(processes, "api-readme", {})


def test_the_readme_curl_examples_work_as_written(api: str, tmp_path: Path) -> None:
    script = curl_examples()
    photo = synthetic_jpeg(9220, 1024, 768)
    (tmp_path / "bench.jpg").write_bytes(photo)
    key = make_api_key("readme")
    # The same upload as the README's, made first and waited for, so that its last line (the
    # annotated image) finds the image rendered: the README's upload is then an idempotent replay.
    with DemeterClient.connect(api, key) as client:
        first = client.upload_photo(photo, filename="bench.jpg", bench="B-12", idempotency_key="bench-12-2026-11-30")
        client.wait_for_photo(first.photo_id)
        for _ in range(120):
            if client.get_photo(first.photo_id).annotated_url:
                break
            time.sleep(0.5)

    run = subprocess.run(["bash", "-euo", "pipefail", "-c", script.replace("http://localhost:8000", api)],
                         cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "DEMETER_KEY": key},
                         capture_output=True, text=True, timeout=120)

    assert run.returncode == 0, run.stderr
    printed = json_documents(run.stdout)  # curl prints each answer without a newline after it
    assert printed[0]["photo_id"] == str(first.photo_id) and printed[0]["status"] == "completed"
    assert [item["photo_id"] for item in printed[1]["items"]] == [str(first.photo_id)]
    assert printed[2]["totals"]["rows"] == len(printed[2]["items"])
    coco = json.loads((tmp_path / "bench.coco.json").read_text())
    assert coco["images"][0]["file_name"] == "bench.jpg"
    assert (tmp_path / "annotated.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
