"""CPU worker tasks (prefork, `cpu` queue): a photo's counts into stock rows, in one transaction.

Imported by the cpu worker (workers/cpu.py); loads no model.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError

from app import faults, names
from app.celery_app import app
from app.db import repository
from app.db.models import ProcessingSession
from app.db.session import db_session
from app.observability.logging import get_logger
from app.tasks.base import FailsSessionTask, PipelineTask

log = get_logger(__name__)


def _summary(session: ProcessingSession, photo_id: int, regions: int) -> dict[str, Any]:
    return {"photo_id": photo_id, "status": session.status, "total_count": session.total_count, "regions": regions}


@app.task(bind=True, base=FailsSessionTask, name=names.AGGREGATE_TASK)
def aggregate_results(self: FailsSessionTask, results: list[dict[str, Any]], photo_id: int) -> dict[str, Any]:
    """Write all counts of a photo in one transaction. Safe to run twice."""
    results = sorted(results or [], key=lambda r: int(r["region_index"]))
    try:
        faults.inject("db.write_counts", str(photo_id))
        with db_session() as db:
            # Results are never dropped: a session failed meanwhile (stale, or given up on) is reopened.
            reopened = repository.reopen_for_late_results(db, photo_id=photo_id, task_id=self.request.id)
            summary = _summary(repository.write_counts(db, photo_id=photo_id, results=results), photo_id,
                               len(results))
        if reopened is not None:
            log.warning("results applied to a session that had failed; it is reopened and its dead letters "
                        "marked done", previous_error=reopened[:500])
    except IntegrityError:
        # Another delivery of this callback committed first; its rows stand.
        with db_session() as db:
            summary = _summary(repository.get_session(db, photo_id=photo_id), photo_id, len(results))
    log.info("photo aggregated", **{k: v for k, v in summary.items() if k != "photo_id"})
    app.send_task(names.RENDER_TASK, args=[photo_id])
    return summary


@app.task(bind=True, base=PipelineTask, name=names.AGGREGATE_REGION_TASK)
def aggregate_region(self: PipelineTask, result: dict[str, Any], photo_id: int) -> dict[str, Any]:
    """Add one replayed region's count to a session that already ended."""
    with db_session() as db:
        session = repository.add_late_region(db, photo_id=photo_id, result=result)
        summary = {"photo_id": photo_id, "status": session.status, "total_count": session.total_count}
    log.info("late region aggregated", region_index=result.get("region_index"), status=summary["status"])
    return summary
