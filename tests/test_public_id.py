"""One public id: a photo uploaded through the API is named by its UUID in the worker's log lines,
in its dead letter (`demeter dlq list/show`), in Flower's task page and in `demeter logs --photo`."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
from sqlalchemy import select

from app.db.models import DeadLetter, Photo
from app.db.session import db_session
from app.storage import get_storage
from tests.utils.api_server import start_api
from tests.utils.flower import FlowerProcess
from tests.utils.keys import bearer
from tests.utils.logs import wait_for_lines
from tests.utils.photos import synthetic_jpeg, wait_final
from tests.utils.processes import PROJECT_ROOT, IsolatedBroker


def _demeter(args: list[str], broker: IsolatedBroker) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *args], env=broker.workers.env, capture_output=True,
                          text=True, timeout=120, cwd=PROJECT_ROOT)


def _upload_then_break(base_url: str, api_key: str) -> tuple[str, int, str]:
    """Upload a good photo through the API, then corrupt its stored file before any worker runs: it fails for
    good (InvalidImage) once a GPU worker takes it. Its UUID, row id and parent task id."""
    cid = f"public-id-{uuid.uuid4().hex[:8]}"
    part = ("bench.jpg", synthetic_jpeg(9420), "image/jpeg")
    response = httpx.post(f"{base_url}/api/v1/photos", files={"file": part},
                          headers={**bearer(api_key), "X-Correlation-ID": cid}, timeout=30)
    assert response.status_code == 202, response.text
    photo_uuid = response.json()["photo_id"]
    with db_session() as db:
        photo = db.scalars(select(Photo).where(Photo.uuid == uuid.UUID(photo_uuid))).one()
        photo_id, key, task_id = photo.id, photo.storage_key, photo.session.task_id
    get_storage().put(key, b"\xff\xd8\xff\xe0 not really a jpeg", "image/jpeg")
    assert task_id
    return photo_uuid, photo_id, task_id


def test_the_photo_uuid_is_in_its_log_lines_dead_letter_and_flower(
    isolated_broker: IsolatedBroker, api_key: str, tmp_path: Path
) -> None:
    processes = isolated_broker.workers
    base_url = start_api(processes, "api", {})
    flower = FlowerProcess(processes, "flower", user="ops", password=uuid.uuid4().hex, db=tmp_path / "flower.db")
    flower.start()  # before the worker: Flower learns a task's arguments from its "received" event
    photo_uuid, photo_id, task_id = _upload_then_break(base_url, api_key)
    processes.start("gpu", ["-m", "workers.gpu"], env={"GPU_MAX_TASKS_PER_CHILD": "0"})
    isolated_broker.wait_ready(["gpu0"])

    session = wait_final(photo_id)

    assert session.status == "failed" and "InvalidImage" in (session.error or "")
    # The worker's lines about the photo carry its UUID (bound once per task, with the integer id).
    lines = wait_for_lines(lambda: processes.logs("gpu"), lambda line: line.get("photo_uuid") == photo_uuid
                           and line.get("event") == "task dead-lettered")
    assert lines[0]["photo_id"] == photo_id and lines[0]["task_id"] == task_id
    # The dead letter, as the operator lists and shows it, names the photo by its UUID.
    with db_session() as db:
        letter_id = db.scalars(select(DeadLetter.id).where(DeadLetter.photo_id == photo_id)).one()
    listed = _demeter(["dlq", "list", "--json", "--photo", photo_uuid], isolated_broker)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(row["id"], row["photo_uuid"]) for row in rows] == [(letter_id, photo_uuid)]
    text = _demeter(["dlq", "list"], isolated_broker)
    assert f"photo={photo_uuid}" in text.stdout
    shown = json.loads(_demeter(["dlq", "show", str(letter_id)], isolated_broker).stdout)
    assert shown["photo_uuid"] == photo_uuid and shown["kwargs"]["photo_uuid"] == photo_uuid
    unknown = _demeter(["dlq", "list", "--photo", str(uuid.uuid4())], isolated_broker)
    assert unknown.returncode == 1 and "no photo" in unknown.stdout
    # Flower's page for the photo's task shows the UUID among its kwargs.
    info = flower.wait_for(f"/api/task/info/{task_id}", lambda body: body.get("state") == "FAILURE")
    assert photo_uuid in str(info["kwargs"]), info
    page = flower.get(f"/task/{task_id}")
    assert page.status_code == 200 and photo_uuid in page.text
    # `demeter logs --photo UUID` finds the photo's lines by the same id.
    story = subprocess.run([sys.executable, "-m", "app", "logs", "--photo", photo_uuid, str(processes.log_path("gpu"))],
                           env=processes.env, capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)
    assert story.returncode == 0, story.stderr
    assert "task dead-lettered" in story.stdout
