"""`demeter recount`: count stored photos again with another plant detector, and record the difference.

A recount of a photo is a processing session of its own (`recount_model` set, one per photo and model),
run by the workers through the same parent, region and aggregation tasks as a count: the parent reuses
the regions of the photo's count, the regions are counted with the named model (app.ml.registry.
registry_for), and aggregation writes one `recount` stock movement per region: the new count minus what
the region's batch holds now. The database refuses a second recount movement of a region by the same
model, so running a recount again writes nothing more. Nothing here loads a model.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from celery import Celery
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.db import repository
from app.db.models import Photo, ProcessingSession, Region, SessionStatus, StockBatch, StockMovement
from app.db.session import db_session
from app.observability import correlation

POLL_SECONDS = 0.5
MAX_MODEL_NAME = 64  # the movement's idempotency key (128 characters) holds it with the photo and region


@dataclass(frozen=True)
class RegionDifference:
    region_index: int
    counted: int | None  # the count's quantity for the region (its `count` movement)
    recounted: int | None  # the recount's count; None when that region failed
    difference: int | None  # the recount's `recount` movement; None when none was written


@dataclass(frozen=True)
class RecountReport:
    photo_uuid: str
    status: str  # the recount session's: pending, processing, completed, warning, failed
    already_done: bool  # recounted by this model before: nothing was sent, nothing more written
    model_cards: dict[str, str]
    regions: list[RegionDifference]
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def photos_to_recount(given: list[str], since: datetime | None) -> list[int]:
    """The photos named (UUIDs, or integer ids) and those counted since `since`, without repeats, oldest first.
    Raises UnknownPhoto for a name that is no photo."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    with db_session() as db:
        ids = [repository.resolve_photo(db, given=name) for name in given]
        if since is not None:
            ids += list(db.scalars(
                select(Photo.id).join(ProcessingSession, ProcessingSession.photo_id == Photo.id)
                .where(Photo.created_at >= since, ProcessingSession.recount_model == "",
                       ProcessingSession.status.in_([SessionStatus.COMPLETED, SessionStatus.WARNING]))
                .order_by(Photo.created_at, Photo.id)))
    return list(dict.fromkeys(ids))


def start_recount(photo_id: int, model: str, celery: Celery | None = None) -> bool:
    """Create (or find) the photo's recount session and send its task (through `celery`, default the
    configured broker) when it must run; False when this model's recount already ended (or runs).
    Raises ValueError for a photo that was not counted."""
    from app.intake import choose_gpu_queue, enqueue

    cid = correlation.new_correlation_id()
    try:
        with db_session() as db:
            _, must_run = repository.create_recount(db, photo_id=photo_id, recount_model=model, correlation_id=cid)
    except IntegrityError:  # another `demeter recount` created it at the same moment: it sends the task
        return False
    if must_run:
        enqueue(photo_id, cid, choose_gpu_queue(photo_id, celery), celery, recount_model=model)
    return must_run


def wait_for_recounts(photo_ids: list[int], model: str, deadline: float) -> bool:
    """Poll until every recount session ended or `deadline` (time.monotonic()) passes; True when all ended."""
    while True:
        with db_session() as db:
            statuses = db.scalars(select(ProcessingSession.status).where(
                ProcessingSession.photo_id.in_(photo_ids), ProcessingSession.recount_model == model)).all()
        if len(statuses) == len(photo_ids) and all(SessionStatus(s).is_final for s in statuses):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)


def report(photo_id: int, model: str, already_done: bool) -> RecountReport:
    """The recount of one photo: its status, provenance and, per region, count, recount and difference."""
    with db_session() as db:
        photo = repository.get_photo(db, photo_id=photo_id)
        session = repository.get_session(db, photo_id=photo_id, recount_model=model)
        counted = _region_quantities(db, photo_id, "")
        movements = _region_quantities(db, photo_id, model)
        regions = [RegionDifference(r.region_index, counted.get(r.region_index), r.plant_count,
                                    movements.get(r.region_index)) for r in session.regions]
        return RecountReport(str(photo.uuid), session.status, already_done, dict(session.model_cards or {}),
                             regions, session.error)


def _region_quantities(db: Any, photo_id: int, recount_model: str) -> dict[int, int]:
    """The quantity of each region's movement of this kind (count: '', a recount: its model), by region index."""
    rows = db.execute(
        select(Region.region_index, StockMovement.quantity)
        .join(StockBatch, StockBatch.id == StockMovement.batch_id)
        .join(Region, Region.id == StockBatch.region_id)
        .join(ProcessingSession, ProcessingSession.id == StockBatch.session_id)
        .where(ProcessingSession.photo_id == photo_id, StockMovement.recount_model == recount_model)
    ).tuples().all()
    return {int(index): int(quantity) for index, quantity in rows}
