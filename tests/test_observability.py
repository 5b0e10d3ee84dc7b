"""One correlation id from submission through every task, retry and dead letter, in JSON logs.

Real Redis, PostgreSQL and worker subprocesses. The pipeline tests hold with the real
models (2-6 regions: children run) and with untrained placeholders (no region); the
probe workers run a chord built by `self.replace`, a retried chord member, the chord
callback and a dead letter in each pool (solo, prefork, gevent) whatever the models.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import select

from app.celery_app import app as celery
from app.config import get_settings
from app.db import repository
from app.db.models import DeadLetter, Photo
from app.db.session import db_session
from app.intake import submit_photo
from app.ml.images import inspect_image
from app.observability import correlation
from app.observability.follow import follow
from app.observability.signals import incoming_correlation_id, photo_id_of
from app.storage import get_storage, new_key
from app.tasks.aggregation import aggregate_results
from app.tasks.gpu import ml_child_task, ml_parent_task
from app.tasks.io import render_annotated
from app.tasks.maintenance import cleanup_temporary_files
from tests.utils.keys import bearer, make_api_key
from tests.utils.logs import Line, celery_line, received, wait_for_lines
from tests.utils.photos import synthetic_jpeg, wait_final
from tests.utils.processes import PROJECT_ROOT, WorkerSet

POOLS = ["solo", "prefork", "gevent"]


def new_cid(label: str) -> str:
    return f"obs-{label}-{uuid.uuid4().hex[:12]}"


def pipeline_lines(workers: WorkerSet) -> list[Line]:
    return workers.logs("gpu") + workers.logs("cpu")


def wait_rendered(workers: WorkerSet, photo_id: int) -> None:
    """The flow's last task is render_annotated, queued by the chord callback."""
    wait_for_lines(lambda: workers.logs("cpu"), lambda line: line.get("photo_id") == photo_id
                   and celery_line(line, "app.tasks.io.render_annotated", "succeeded"))


def wait_dead_letter(task_name: str, photo_id: int, timeout: float = 120.0) -> DeadLetter:
    def rows() -> list[Line]:
        with db_session() as db:
            letters = db.scalars(select(DeadLetter).where(DeadLetter.task_name == task_name,
                                                          DeadLetter.photo_id == photo_id)).all()
            return [{"letter": letter} for letter in letters]

    return wait_for_lines(rows, lambda _: True, timeout=timeout)[0]["letter"]


def followed(cid: str, paths: list[Path]) -> list[str]:
    out = io.StringIO()
    assert follow(cid, paths, out=out) == 0
    return out.getvalue().splitlines()


# The pipeline's own workers.


def test_every_line_of_a_photo_carries_its_correlation_id(workers: WorkerSet) -> None:
    cid = new_cid("photo")
    submission = submit_photo(synthetic_jpeg(9200), filename="bench.jpg", correlation_id=cid)

    session = wait_final(submission.photo_id)
    wait_rendered(workers, submission.photo_id)

    assert session.status == "completed", session.error
    lines = [line for line in pipeline_lines(workers) if line.get("photo_id") == submission.photo_id]
    assert {line.get("correlation_id") for line in lines} == {cid}
    tasks = {line.get("task_name") for line in lines}
    assert {"app.tasks.ml.ml_parent_task", "app.tasks.ml.aggregate_results", "app.tasks.io.render_annotated"} <= tasks
    # Celery's own lines, logged while a task runs, are in its context too.
    assert any(celery_line(line, "app.tasks.ml.aggregate_results", "succeeded") for line in lines)
    regions = session.regions_total or 0
    assert len([line for line in lines if line["event"] == "region counted"]) == regions
    # Written off the region tasks' path, by the GPU worker's progress thread, in each task's context.
    progress = [line for line in lines if line["event"] == "region progress"]
    assert sorted(line["regions_done"] for line in progress) == list(range(1, regions + 1))
    assert all(line["regions_total"] == regions for line in progress)
    assert ("app.tasks.ml.ml_child_task" in tasks) == (regions > 0)
    # Every line any of these tasks logged carries the id, except the consumer's "received" lines.
    task_ids = {line["task_id"] for line in lines}
    for line in pipeline_lines(workers):
        if line.get("task_id") in task_ids and not received(line):
            assert line.get("correlation_id") == cid, line


def test_demeter_logs_prints_the_photo_in_time_order(workers: WorkerSet) -> None:
    cid = new_cid("follow")
    submission = submit_photo(synthetic_jpeg(9201), filename="bench.jpg", correlation_id=cid)
    wait_final(submission.photo_id)
    wait_rendered(workers, submission.photo_id)

    printed = followed(cid, [workers.log_path("gpu"), workers.log_path("cpu")])

    stamps = [line[:23] for line in printed if not line.startswith(" ")]
    assert stamps == sorted(stamps)
    text = "\n".join(printed)
    for expected in ("photo segmented", "photo aggregated", "annotated image stored", "] received", "succeeded"):
        assert expected in text
    assert printed[0].split()[4].startswith("ml_parent_task[")  # the parent's "received" line opens the story


def _upload(headers: dict[str, str], seed: int) -> tuple[str, int]:
    headers = {**headers, **bearer(make_api_key())}
    """POST one photo to the HTTP API in this process; the correlation id it answered and the photo's row id."""
    from app.api.main import create_app

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.post("/api/v1/photos", headers=headers,
                                     files={"file": ("bench.jpg", synthetic_jpeg(seed), "image/jpeg")})

    response = asyncio.run(post())
    assert response.status_code == 202, response.text
    cid = response.headers[correlation.HEADER]
    assert response.json()["correlation_id"] == cid
    with db_session() as db:
        photo_id = db.scalars(select(Photo.id).where(Photo.uuid == UUID(response.json()["photo_id"]))).one()
    return cid, photo_id


def _photo_lines_carry(workers: WorkerSet, photo_id: int, cid: str) -> None:
    session = wait_final(photo_id)
    wait_rendered(workers, photo_id)
    assert session.correlation_id == cid
    lines = [line for line in pipeline_lines(workers) if line.get("photo_id") == photo_id]
    assert {line.get("correlation_id") for line in lines} == {cid}
    assert {"app.tasks.ml.ml_parent_task", "app.tasks.ml.aggregate_results",
            "app.tasks.io.render_annotated"} <= {line.get("task_name") for line in lines}


def test_an_upload_through_the_api_keeps_its_x_correlation_id_to_the_last_task(workers: WorkerSet) -> None:
    sent = new_cid("api")

    cid, photo_id = _upload({correlation.HEADER: sent}, 9203)

    assert cid == sent
    _photo_lines_carry(workers, photo_id, sent)


def test_an_upload_without_the_header_gets_a_generated_id_that_its_tasks_carry(workers: WorkerSet) -> None:
    cid, photo_id = _upload({}, 9204)

    assert re.fullmatch(r"[0-9a-f]{32}", cid)
    _photo_lines_carry(workers, photo_id, cid)


def test_a_dead_letter_carries_the_correlation_id_from_the_header(workers: WorkerSet) -> None:
    cid = new_cid("dead")
    unknown_photo = 9_299_001  # UnknownPhoto: a permanent error, dead-lettered at once

    result = ml_parent_task.apply_async(args=[unknown_photo], queue="gpu_queue_0",
                                        headers={correlation.MESSAGE_HEADER: cid})

    letter = wait_dead_letter("app.tasks.ml.ml_parent_task", unknown_photo)
    assert (letter.task_id, letter.correlation_id, letter.exception_type) == (result.id, cid, "UnknownPhoto")
    logged = wait_for_lines(lambda: workers.logs("gpu"), lambda line: line.get("event") == "task dead-lettered"
                            and line.get("task_id") == result.id)[0]
    assert logged["correlation_id"] == cid and logged["photo_id"] == unknown_photo
    task_lines = [line for line in workers.logs("gpu") if line.get("task_id") == result.id and not received(line)]
    assert {line.get("correlation_id") for line in task_lines} == {cid}


def test_the_correlation_id_kwarg_is_used_when_there_is_no_header(workers: WorkerSet) -> None:
    cid = new_cid("kwarg")
    unknown_photo = 9_299_002
    assert correlation.correlation_id.get() is None  # so this process adds no header either

    result = ml_parent_task.apply_async(args=[unknown_photo], kwargs={"correlation_id": cid}, queue="gpu_queue_0")

    letter = wait_dead_letter("app.tasks.ml.ml_parent_task", unknown_photo)
    assert (letter.task_id, letter.correlation_id) == (result.id, cid)
    task_lines = [line for line in workers.logs("gpu") if line.get("task_id") == result.id and not received(line)]
    assert task_lines and {line.get("correlation_id") for line in task_lines} == {cid}


def _stored_not_queued(data: bytes, cid: str) -> tuple[int, Path]:
    """A photo as submit_photo stores it, but not queued yet, and the path of its file."""
    info = inspect_image(data)
    key = new_key("original", info.extension)
    get_storage().put(key, data, info.content_type)
    with db_session() as db:
        photo, _ = repository.create_photo(db, storage_key=key, content_type=info.content_type, width=info.width,
                                           height=info.height, size_bytes=len(data), correlation_id=cid)
        photo_id = photo.id
    return photo_id, get_settings().storage_dir_resolved / key


def test_a_retry_after_a_storage_outage_carries_the_correlation_id(workers: WorkerSet) -> None:
    cid = new_cid("retry")
    data = synthetic_jpeg(9202)
    photo_id, path = _stored_not_queued(data, cid)
    path.unlink()
    path.mkdir()  # reading a directory raises IsADirectoryError: StorageUnavailable, a transient error

    result = ml_parent_task.apply_async(args=[photo_id], queue="gpu_queue_0",
                                        headers={correlation.MESSAGE_HEADER: cid})
    retry = wait_for_lines(lambda: workers.logs("gpu"), lambda line: line.get("task_id") == result.id
                           and celery_line(line, "app.tasks.ml.ml_parent_task", "retry"))[0]
    path.rmdir()
    path.write_bytes(data)  # the store is back before the first retry's countdown (2 s) ends

    session = wait_final(photo_id)
    wait_rendered(workers, photo_id)

    assert session.status == "completed", session.error
    assert retry["correlation_id"] == cid and "StorageUnavailable" in retry["event"]
    lines = [line for line in pipeline_lines(workers) if line.get("photo_id") == photo_id]
    assert {line.get("correlation_id") for line in lines} == {cid}
    assert any(line.get("retries", 0) >= 1 and line.get("task_name") == "app.tasks.ml.ml_parent_task"
               for line in lines)
    assert "app.tasks.io.render_annotated" in {line.get("task_name") for line in lines}


# The probe workers: the same app and signal handlers in every pool.


@pytest.fixture(scope="module")
def probes(database: str, data_dir: Path) -> Iterator[WorkerSet]:
    with WorkerSet(data_dir / "logs-probe") as probe_set:
        for pool in POOLS:
            probe_set.start(pool, ["-m", "tests.utils.probe_worker", pool, f"probe_{pool}"])
        probe_set.wait_ready([f"probe-{pool}" for pool in POOLS])
        yield probe_set


@pytest.mark.parametrize("pool", POOLS)
def test_replace_chord_retry_callback_and_dead_letter_keep_the_id_in_every_pool(probes: WorkerSet,
                                                                                pool: str) -> None:
    cid = new_cid(pool)
    photo_id = 9_290_000 + POOLS.index(pool)

    celery.send_task("probe.fan_out", args=[3, photo_id], queue=f"probe_{pool}",
                     headers={correlation.MESSAGE_HEADER: cid})

    letter = wait_dead_letter("probe.bury", photo_id)
    wait_for_lines(lambda: probes.logs(pool), lambda line: line.get("event") == "task dead-lettered"
                   and line.get("task_id") == letter.task_id)
    assert letter.correlation_id == cid
    flow = [line for line in probes.logs(pool) if line.get("photo_id") == photo_id]
    assert {line.get("correlation_id") for line in flow} == {cid}
    events = [line["event"] for line in flow]
    assert events.count("probe fanned out") == events.count("probe gathered") == 1
    assert events.count("probe counted") == 3
    assert "task dead-lettered" in events
    assert any(celery_line(line, "probe.count", "retry") for line in flow)  # a retried chord member
    assert any(celery_line(line, "probe.gather", "succeeded") for line in flow)  # the callback
    # The consumer's "received" lines carry no context; `demeter logs` joins them by task id.
    received_lines = [line for line in followed(cid, [probes.log_path(pool)]) if "] received" in line]
    assert len(received_lines) == 7  # fan_out, 3 members, 1 retry, gather, bury
    assert all(f"probe-{pool}@" in line for line in received_lines)  # each line names its worker


def test_a_flow_sent_without_an_id_gets_one_that_all_its_tasks_share(probes: WorkerSet) -> None:
    photo_id = 9_290_010

    celery.send_task("probe.fan_out", args=[2, photo_id], queue="probe_solo")

    letter = wait_dead_letter("probe.bury", photo_id)
    wait_for_lines(lambda: probes.logs("solo"), lambda line: line.get("event") == "task dead-lettered"
                   and line.get("task_id") == letter.task_id)
    flow = [line for line in probes.logs("solo") if line.get("photo_id") == photo_id]
    assert len({line.get("task_id") for line in flow}) >= 4
    assert {line.get("correlation_id") for line in flow} == {letter.correlation_id}
    assert re.fullmatch(r"[0-9a-f]{32}", letter.correlation_id or "")


# Pure parts.


def test_photo_id_is_read_by_parameter_name() -> None:
    assert photo_id_of(ml_parent_task, (7,), {"correlation_id": "x"}) == 7
    assert photo_id_of(ml_child_task, ({"index": 0, "bbox": [0, 0, 1, 1]}, 8), {}) == 8
    assert photo_id_of(aggregate_results, ([{"region_index": 0}],), {"photo_id": 9}) == 9
    assert photo_id_of(render_annotated, (10,), {}) == 10
    assert photo_id_of(cleanup_temporary_files, (3600,), {}) is None  # an int, but not a photo id
    assert photo_id_of(render_annotated, (True,), {}) is None


@pytest.mark.parametrize(("header", "kwarg", "expected"), [
    ("from-header", "from-kwarg", "from-header"),
    (None, "from-kwarg", "from-kwarg"),
    (None, None, None),
    ("not a safe id!", None, None),
])
def test_the_incoming_id_is_the_header_else_the_kwarg_else_new(header: str | None, kwarg: str | None,
                                                               expected: str | None) -> None:
    ml_parent_task.push_request(**({correlation.MESSAGE_HEADER: header} if header else {}))
    try:
        value = incoming_correlation_id(ml_parent_task, {"correlation_id": kwarg} if kwarg else {})
    finally:
        ml_parent_task.pop_request()
    if expected:
        assert value == expected
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", value)


def _log_one_line(log_format: str, tty: bool, environment: str = "development") -> str:
    code = ("from app.observability.logging import configure_logging, get_logger\n"
            f"configure_logging('INFO', {log_format!r}, {environment!r})\n"
            "get_logger('probe').info('bench photographed', photo_id=7)\n")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    if not tty:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
        return done.stderr
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, "-c", code], stderr=follower, env=env)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(timeout=60)
    finally:
        os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_auto_format_is_console_at_a_development_terminal_and_json_elsewhere() -> None:
    human = _log_one_line("auto", tty=True)
    assert "bench photographed" in human and "photo_id" in human and not human.lstrip().startswith("{")
    piped = json.loads(_log_one_line("auto", tty=False))
    assert piped["event"] == "bench photographed" and piped["photo_id"] == 7
    assert json.loads(_log_one_line("auto", tty=True, environment="production").strip())["level"] == "info"
    # An explicit LOG_FORMAT wins over the terminal test either way.
    assert json.loads(_log_one_line("json", tty=True).strip())["level"] == "info"
    assert not _log_one_line("console", tty=False).lstrip().startswith("{")


def _records(*records: dict[str, Any]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def test_follow_merges_files_by_time_and_joins_received_lines(tmp_path: Path) -> None:
    gpu, cpu = tmp_path / "gpu.log", tmp_path / "cpu.log"
    gpu.write_text(
        " -------------- gpu0@host v5 (banner, not JSON)\n"
        + _records(
            {"timestamp": "2026-01-01T10:00:00.100Z", "event": "Task p[t1] received", "task_id": "t1",
             "task_name": "app.tasks.ml.ml_parent_task"},
            {"timestamp": "2026-01-01T10:00:00.200Z", "event": "photo segmented", "correlation_id": "c1",
             "task_id": "t1", "task_name": "app.tasks.ml.ml_parent_task", "regions": 2},
            {"timestamp": "2026-01-01T10:00:00.250Z", "event": "Task q[t9] received", "task_id": "t9"},
            {"timestamp": "2026-01-01T10:00:00.300Z", "event": "other photo", "correlation_id": "c2", "task_id": "t9"},
        )
    )
    cpu.write_text(_records(
        {"timestamp": "2026-01-01T10:00:00.150Z", "event": "too early for this story", "correlation_id": "c3"},
        {"timestamp": "2026-01-01T10:00:00.400Z", "event": "photo aggregated", "correlation_id": "c1",
         "task_id": "t2", "level": "info", "exception": "Traceback\n  boom"},
    ))
    out = io.StringIO()

    assert follow("c1", [cpu, gpu], out=out) == 0

    lines = out.getvalue().splitlines()
    assert "ml_parent_task[t1]" in lines[0] and lines[0].endswith("Task p[t1] received")
    assert "photo segmented" in lines[1] and "regions=2" in lines[1]
    assert "photo aggregated" in lines[2] and lines[3:] == ["    Traceback", "      boom"]
    assert "other photo" not in out.getvalue() and "t9" not in out.getvalue()


def test_follow_streams_standard_input_and_says_when_nothing_matched(capsys: pytest.CaptureFixture[str]) -> None:
    stream = io.StringIO(_records(
        {"timestamp": "2026-01-01T10:00:00.1Z", "event": "Task p[t1] received", "task_id": "t1", "worker": "gpu0@h"},
        {"timestamp": "2026-01-01T10:00:00.2Z", "event": "Task q[t2] received", "task_id": "t2", "worker": "gpu0@h"},
        {"timestamp": "2026-01-01T10:00:00.3Z", "event": "photo segmented", "correlation_id": "c1", "task_id": "t1"},
    ))
    out = io.StringIO()

    assert follow("c1", [], out=out, stdin=stream) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "gpu0@h" in lines[0] and lines[0].endswith("Task p[t1] received")
    assert "photo segmented" in lines[1]
    assert follow("nobody", [], out=io.StringIO(), stdin=io.StringIO("not json\n")) == 1
    assert "no log lines" in capsys.readouterr().err
