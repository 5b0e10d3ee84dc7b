"""Celery beat as a real process: its schedule reaches the CPU worker, which sweeps stale sessions."""

from __future__ import annotations

import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update

from app.celery_app import app as celery
from app.config import get_settings
from app.db import repository
from app.db.models import DeadLetter, ProcessingSession, SessionStatus, utcnow
from app.db.session import db_session
from app.tasks.maintenance import sweep_stale_sessions
from tests.utils.processes import WorkerSet

SWEEP = "app.tasks.maintenance.sweep_stale_sessions"


def stuck_photo(age_seconds: int) -> int:
    """A photo whose session has been `processing` for `age_seconds`, as if its worker died."""
    with db_session() as db:
        photo, _ = repository.create_photo(db, storage_key=f"original/test/{uuid.uuid4()}.jpg",
                                           content_type="image/jpeg", width=640, height=480, size_bytes=1)
        photo_id = photo.id
    long_ago = utcnow() - timedelta(seconds=age_seconds)
    with db_session() as db:
        db.execute(update(ProcessingSession).where(ProcessingSession.photo_id == photo_id).values(
            status=SessionStatus.PROCESSING, created_at=long_ago, started_at=long_ago, updated_at=long_ago))
    return photo_id


def test_schedule_takes_the_sweep_interval_from_settings() -> None:
    entry = celery.conf.beat_schedule["sweep-stale-sessions"]
    assert entry["task"] == SWEEP == sweep_stale_sessions.name
    assert entry["schedule"] == get_settings().sweep_interval_seconds
    assert celery.amqp.router.route({}, SWEEP)["queue"].name == "cpu"


def test_beat_sends_the_sweeper_and_the_cpu_worker_fails_stale_sessions(workers: WorkerSet) -> None:
    stale_after = get_settings().stale_session_seconds  # as the CPU worker was started with
    stuck = stuck_photo(stale_after + 600)
    recent = stuck_photo(60)
    beat_dir = Path(tempfile.mkdtemp(prefix="demeter-beat-"))  # its own schedule file

    with WorkerSet(beat_dir / "logs", env={"SWEEP_INTERVAL_SECONDS": "1", "DATA_DIR": str(beat_dir)}) as beat:
        beat.start("beat", ["-m", "workers.beat"])
        deadline = time.monotonic() + 45
        while True:
            with db_session() as db:
                session = repository.get_session(db, photo_id=stuck)
            if session.status == SessionStatus.FAILED:
                break
            assert beat.processes["beat"].poll() is None, beat.log_path("beat").read_text()[-2000:]
            assert time.monotonic() < deadline, f"not swept after 45 s; beat log: {beat.log_path('beat')}"
            time.sleep(0.5)

    beat_log = beat.log_path("beat").read_text()
    assert "Sending due task sweep-stale-sessions" in beat_log
    assert session.error and "with no task queued, reserved or running" in session.error
    assert session.finished_at is not None
    with db_session() as db:
        assert repository.get_session(db, photo_id=recent).status == SessionStatus.PROCESSING
    # The sweeper fails the session, then records its dead letter and logs the sweep: wait for both.
    deadline = time.monotonic() + 30
    while True:
        with db_session() as db:
            letters = db.scalars(select(DeadLetter).where(DeadLetter.photo_id == stuck)).all()
        swept = [line for line in workers.logs("cpu") if line.get("event") == "stale sessions swept"
                 and stuck in (line.get("photo_ids") or [])]
        if (letters and swept) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [letter.exception_type for letter in letters] == ["StaleSession"]
    assert len(swept) == 1
