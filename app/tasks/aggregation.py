"""CPU worker tasks (prefork, `cpu` queue): a photo's counts into stock rows, in one transaction.

Imported by the cpu worker (workers/cpu.py); loads no model.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import faults, names
from app.celery_app import app
from app.db import repository
from app.db.models import ProcessingSession, SessionStatus
from app.db.session import db_session
from app.ml.plausibility import RegionDetections, judge, limits_from
from app.ml.registry import get_registry, registry_for
from app.observability import metrics
from app.observability.logging import get_logger
from app.records import decode_detections
from app.tasks.base import FailsSessionTask, PipelineTask

log = get_logger(__name__)


def _summary(session: ProcessingSession, photo_id: int, regions: int) -> dict[str, Any]:
    return {"photo_id": photo_id, "status": session.status, "total_count": session.total_count, "regions": regions}


def _count_finished(summary: dict[str, Any], finished_at: datetime | None, created_at: datetime,
                    since: datetime) -> None:
    """Count the photo in the metrics when this delivery ended it (a redelivery finds it ended before `since`)."""
    if finished_at is None or _aware(finished_at) < since:
        return
    metrics.photo_finished(summary["status"], summary["total_count"],
                           (_aware(finished_at) - _aware(created_at)).total_seconds())


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _judge(db: Session, session: ProcessingSession, results: list[dict[str, Any]],
           recount_model: str = "") -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The plausibility doubts of a photo's counts and the ids of the model cards they are judged by
    (a recount's: its model's detection card, and the recount model's name as `recount_model`).

    Reads the cards only (JSON beside the weights), never a model. Failed regions are left out: their
    failure is reported on its own.
    """
    registry = registry_for(recount_model)
    card = registry.detection_card()
    cards = {"segmentation": get_registry().segmentation_card().id, "detection": card.id}
    if recount_model:
        cards["recount_model"] = recount_model
    photo = repository.get_photo(db, photo_id=session.photo_id)
    boxes = {r.region_index: r.bbox for r in session.regions}
    counted = []
    for result in results:
        index = int(result["region_index"])
        if result.get("failed") or index not in boxes:
            continue
        rows = decode_detections(result.get("detections"))
        counted.append(RegionDetections(boxes[index], rows[:, :4], rows[:, 4], result.get("plant_like")))
    if results and not counted:
        return [], cards  # every region failed: the session fails, no count to doubt
    segmented = (session.region_mode or "segment") == "segment"
    reasons = judge(card, (photo.width, photo.height), counted, limits_from(registry.settings), segmented)
    return [reason.as_dict() for reason in reasons], cards


@app.task(bind=True, base=FailsSessionTask, name=names.AGGREGATE_TASK)
def aggregate_results(self: FailsSessionTask, results: list[dict[str, Any]], photo_id: int,
                      recount_model: str = "") -> dict[str, Any]:
    """Write all counts of a photo, its plausibility doubts and provenance, in one transaction. Safe to run twice.

    A recount (`recount_model`) writes `recount` movements instead (app.db.repository.write_counts), and
    neither counts the photo again in the metrics nor draws it again (the drawing is the count's)."""
    results = sorted(results or [], key=lambda r: int(r["region_index"]))
    since = datetime.now(UTC)
    try:
        faults.inject("db.write_counts", str(photo_id))
        with metrics.stage("aggregation"), db_session() as db:
            # Locked first and held to the commit: a second delivery waits here, then finds it final
            # (PostgreSQL; SQLite has no row locks, and there the unique constraints stop it at commit).
            session = repository.get_session(db, photo_id=photo_id, lock=True, recount_model=recount_model)
            # Results are never dropped: a session failed meanwhile (stale, or given up on) is reopened. Not
            # by results of which every region failed: they count nothing, and reopening would mark the
            # regions' dead letters replayed, leaving nothing to replay them from.
            counted_any = any(not result.get("failed") for result in results)
            reopened = repository.reopen_for_late_results(db, photo_id=photo_id, task_id=self.request.id,
                                                          recount_model=recount_model,
                                                          session=session) if counted_any else None
            # A second delivery finds the counts written: nothing to judge again, nor to log as doubtful again.
            already_final = reopened is None and SessionStatus(session.status).is_final
            doubts, cards = ([], {}) if already_final else _judge(db, session, results, recount_model)
            session = repository.write_counts(db, photo_id=photo_id, results=results, doubts=doubts,
                                              model_cards=cards, recount_model=recount_model, session=session)
            summary = _summary(session, photo_id, len(results))
            finished_at, created_at = session.finished_at, session.created_at
        if not recount_model:
            _count_finished(summary, finished_at, created_at, since)
        if reopened is not None:
            log.warning("results applied to a session that had failed; it is reopened and its dead letters "
                        "marked done", previous_error=reopened[:500])
        if doubts:
            log.warning("photo count doubtful", doubts=[d["message"] for d in doubts], model_cards=cards)
    except IntegrityError:
        # Another delivery of this callback committed first; its rows stand.
        with db_session() as db:
            summary = _summary(repository.get_session(db, photo_id=photo_id, recount_model=recount_model),
                               photo_id, len(results))
    if recount_model:
        log.info("photo recounted", recount_model=recount_model,
                 **{k: v for k, v in summary.items() if k != "photo_id"})
        return summary
    log.info("photo aggregated", **{k: v for k, v in summary.items() if k != "photo_id"})
    app.send_task(names.RENDER_TASK, args=[photo_id])
    return summary


@app.task(bind=True, base=PipelineTask, name=names.AGGREGATE_REGION_TASK)
def aggregate_region(self: PipelineTask, result: dict[str, Any], photo_id: int,
                     recount_model: str = "") -> dict[str, Any]:
    """Add one replayed region's count (or recount) to a session that already ended."""
    with db_session() as db:
        session = repository.add_late_region(db, photo_id=photo_id, result=result, recount_model=recount_model)
        summary = {"photo_id": photo_id, "status": session.status, "total_count": session.total_count}
    log.info("late region aggregated", region_index=result.get("region_index"), status=summary["status"])
    return summary
