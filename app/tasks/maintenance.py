"""CPU worker tasks (`cpu` queue): periodic housekeeping, sent by Celery beat."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from app import inflight, names
from app.celery_app import app
from app.config import get_settings
from app.db import repository
from app.db.models import SessionStatus, utcnow
from app.db.session import db_session
from app.deadletter import broker as broker_dead_letters
from app.deadletter import record as deadletter
from app.observability import metrics
from app.observability.logging import get_logger
from app.observability.signals import photo_uuid_of
from app.tasks.base import HousekeepingTask

log = get_logger(__name__)


@app.task(bind=True, base=HousekeepingTask, name=names.SWEEP_TASK)
def sweep_stale_sessions(self: HousekeepingTask, max_age_seconds: int | None = None) -> list[int]:
    """Fail sessions unchanged for STALE_SESSION_SECONDS whose work is gone, and dead-letter each one.

    A photo whose task is still queued, reserved or running (app/inflight.py) is never failed, however
    long it waited: a backlog is not a failure. Only when the broker's work cannot be seen (the embedded
    filesystem broker, RabbitMQ without BROKER_API and no task waiting in its queues) does age alone
    decide; the log says why.
    """
    max_age = max_age_seconds if max_age_seconds is not None else get_settings().stale_session_seconds
    cutoff = utcnow() - timedelta(seconds=max_age)
    with db_session() as db:
        candidates = [s.photo_id for s in repository.stale_sessions(db, older_than=cutoff)]
    gone = inflight.photos_without_work(app, candidates)
    if isinstance(gone, inflight.Unseen):
        log.info("stale sessions judged by age alone", reason=gone.reason, candidates=len(candidates))
    stale = sorted(candidates if isinstance(gone, inflight.Unseen) else gone)
    swept = []
    for photo_id in stale:
        with db_session() as db:
            session = repository.get_session(db, photo_id=photo_id, lock=True)
            if SessionStatus(session.status).is_final or _aware(session.updated_at) >= cutoff:
                continue  # finished or moved on meanwhile; the row lock makes two sweeps agree on that
            reason = f"stuck in {session.status} for more than {max_age} s with no task queued, reserved or running"
            if not repository.fail_session(db, photo_id=photo_id, reason=reason):
                continue
            correlation_id = session.correlation_id
        metrics.photo_finished("failed", None, None)
        deadletter.record_stale(app, photo_id=photo_id, reason=reason, correlation_id=correlation_id)
        swept.append(photo_id)
    log.info("stale sessions swept", swept=len(swept), photo_ids=swept, alive=len(candidates) - len(stale))
    return swept


@app.task(bind=True, base=HousekeepingTask, name=names.RECONCILE_TASK)
def reconcile_unfinished(self: HousekeepingTask, grace_seconds: int | None = None) -> dict[str, list[int]]:
    """Re-enqueue unfinished photos whose work is gone from the broker (lost with a broker restart,
    stranded by a crash), within a minute or two instead of at the stale limit.

    The database is the source of truth: every pending/processing session unchanged for
    RECONCILE_GRACE_SECONDS is checked against the broker (app/inflight.py: two looks). One with no
    message anywhere gets its parent task again (segmentation reuses its saved regions, every write
    is idempotent), at most RECONCILE_MAX_ATTEMPTS times; then it is failed and dead-lettered as
    `WorkLost`. Where the broker's work cannot be seen (RabbitMQ without BROKER_API, the embedded
    broker) nothing is re-enqueued and the log says why. Returns {"requeued": [...], "given_up": [...]}
    photo ids.
    """
    from app.intake import choose_gpu_queue, enqueue  # publishes by name; loads no model code

    settings = get_settings()
    grace = grace_seconds if grace_seconds is not None else settings.reconcile_grace_seconds
    cutoff = utcnow() - timedelta(seconds=grace)
    with db_session() as db:
        candidates = [s.photo_id for s in repository.stale_sessions(db, older_than=cutoff)]
    gone = inflight.photos_without_work(app, candidates)
    if isinstance(gone, inflight.Unseen):
        log.info("unfinished photos not reconciled: the broker's work cannot be seen", reason=gone.reason,
                 unfinished=len(candidates))
        return {"requeued": [], "given_up": []}
    requeued, given_up = [], []
    for photo_id in sorted(gone):
        with db_session() as db:
            decision = repository.note_requeue(db, photo_id=photo_id, older_than=cutoff,
                                               max_attempts=settings.reconcile_max_attempts)
            session = repository.get_session(db, photo_id=photo_id)
            correlation_id, attempts = session.correlation_id, session.requeue_attempts
            if decision == "give up":
                reason = f"its work was lost {attempts} times (RECONCILE_MAX_ATTEMPTS)"
                if repository.fail_session(db, photo_id=photo_id, reason=reason):
                    metrics.photo_finished("failed", None, None)
        if decision == "requeue":
            cid = correlation_id or f"photo-{photo_id}"
            task_id = enqueue(photo_id, cid, choose_gpu_queue(photo_id, app), app)
            log.warning("photo re-enqueued: its work was gone from the broker", photo_id=photo_id,
                        photo_uuid=photo_uuid_of(photo_id), attempt=attempts, new_task_id=task_id)
            requeued.append(photo_id)
        elif decision == "give up":
            deadletter.record_stale(app, photo_id=photo_id, reason=reason, correlation_id=correlation_id,
                                    kind="WorkLost")
            given_up.append(photo_id)
    log.info("unfinished photos reconciled", checked=len(candidates), requeued=requeued, given_up=given_up)
    return {"requeued": requeued, "given_up": given_up}


def _aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; they are UTC (app.db.models.utcnow)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.task(bind=True, base=HousekeepingTask, name=names.DEAD_LETTER_REPORT_TASK)
def dead_letter_report(self: HousekeepingTask) -> dict[str, Any]:
    """Log how many dead letters wait for an operator, by task."""
    with db_session() as db:
        waiting = repository.waiting_dead_letters(db)
    log.info("dead letter report", waiting=waiting, total=sum(waiting.values()))
    return {"waiting": waiting, "total": sum(waiting.values())}


@app.task(bind=True, base=HousekeepingTask, name=names.BROKER_DEAD_LETTER_TASK)
def record_broker_dead_letters(self: HousekeepingTask) -> int:
    """Write what RabbitMQ dead-lettered into `dead_letters` (app/deadletter/broker.py); 0 on Redis."""
    return broker_dead_letters.drain(app, get_settings())


@app.task(bind=True, base=HousekeepingTask, name=names.CLEANUP_TASK)
def cleanup_temporary_files(self: HousekeepingTask, max_age_seconds: int = 24 * 3600) -> int:
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
