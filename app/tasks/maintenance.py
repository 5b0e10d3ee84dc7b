"""CPU worker tasks (`cpu` queue): periodic housekeeping, sent by Celery beat."""

from __future__ import annotations

import shutil
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from app import names
from app.celery_app import app
from app.config import get_settings
from app.db import repository
from app.db.models import DeadLetter, utcnow
from app.db.session import db_session
from app.deadletter import broker as broker_dead_letters
from app.deadletter import record as deadletter
from app.observability.logging import get_logger
from app.tasks.base import PipelineTask

log = get_logger(__name__)


@app.task(bind=True, base=PipelineTask, name=names.SWEEP_TASK)
def sweep_stale_sessions(self: PipelineTask, max_age_seconds: int | None = None) -> list[int]:
    """Fail sessions stuck in pending/processing, and dead-letter each one for replay."""
    max_age = max_age_seconds if max_age_seconds is not None else get_settings().stale_session_seconds
    cutoff = utcnow() - timedelta(seconds=max_age)
    swept = []
    with db_session() as db:
        for session in repository.stale_sessions(db, older_than=cutoff):
            reason = f"stuck in {session.status} for more than {max_age} s"
            repository.fail_session(db, photo_id=session.photo_id, reason=reason)
            swept.append((session.photo_id, reason, session.correlation_id))
    for photo_id, reason, correlation_id in swept:
        deadletter.record_stale(app, photo_id=photo_id, reason=reason, correlation_id=correlation_id)
    photo_ids = [photo_id for photo_id, _, _ in swept]
    log.info("stale sessions swept", swept=len(photo_ids), photo_ids=photo_ids)
    return photo_ids


@app.task(bind=True, base=PipelineTask, name=names.DEAD_LETTER_REPORT_TASK)
def dead_letter_report(self: PipelineTask) -> dict[str, Any]:
    """Log how many dead letters wait for an operator, by task."""
    with db_session() as db:
        rows = db.execute(
            select(DeadLetter.task_name, func.count()).where(DeadLetter.replayed_at.is_(None))
            .group_by(DeadLetter.task_name)
        ).all()
    waiting = {name: count for name, count in rows}
    log.info("dead letter report", waiting=waiting, total=sum(waiting.values()))
    return {"waiting": waiting, "total": sum(waiting.values())}


@app.task(bind=True, base=PipelineTask, name=names.BROKER_DEAD_LETTER_TASK)
def record_broker_dead_letters(self: PipelineTask) -> int:
    """Write what RabbitMQ dead-lettered into `dead_letters` (app/deadletter/broker.py); 0 on Redis."""
    return broker_dead_letters.drain(app, get_settings())


@app.task(bind=True, base=PipelineTask, name=names.CLEANUP_TASK)
def cleanup_temporary_files(self: PipelineTask, max_age_seconds: int = 24 * 3600) -> int:
    """Remove old files from DATA_DIR/tmp."""
    tmp = get_settings().data_dir / "tmp"
    removed = 0
    if tmp.exists():
        cutoff = time.time() - max_age_seconds
        for path in tmp.iterdir():
            if path.stat().st_mtime < cutoff:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
                removed += 1
    log.info("temporary files cleaned", removed=removed)
    return removed
