"""Data access for the pipeline. Keyword-only functions; nothing here knows Celery or HTTP."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Float, case, cast, delete, func, insert, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app.db.models import (
    DEFAULT_TENANT,
    DeadLetter,
    Detection,
    Photo,
    ProcessingSession,
    Region,
    SessionStatus,
    StockBatch,
    StockMovement,
    utcnow,
)
from app.errors import UnknownPhoto
from app.records import DETECTION_COLUMNS, RegionProposal, detection_rows

FINAL_STATUSES = tuple(status.value for status in SessionStatus if status.is_final)


def create_photo(
    db: Session,
    *,
    storage_key: str,
    content_type: str,
    width: int,
    height: int,
    size_bytes: int,
    original_filename: str | None = None,
    correlation_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    tenant: str = DEFAULT_TENANT,
    idempotency_key: str | None = None,
    request_sha256: str | None = None,
    content_sha256: str | None = None,
    duplicate_of: str | None = None,
) -> tuple[Photo, ProcessingSession]:
    photo = Photo(
        tenant=tenant,
        idempotency_key=idempotency_key,
        request_sha256=request_sha256,
        content_sha256=content_sha256,
        duplicate_of=uuid.UUID(duplicate_of) if duplicate_of else None,
        storage_key=storage_key,
        content_type=content_type,
        width=width,
        height=height,
        size_bytes=size_bytes,
        original_filename=original_filename,
        correlation_id=correlation_id,
        metadata_json=metadata or {},
    )
    session = ProcessingSession(photo=photo, correlation_id=correlation_id, status=SessionStatus.PENDING)
    db.add_all([photo, session])
    db.flush()
    return photo, session


def get_photo(db: Session, *, photo_id: int) -> Photo:
    photo = db.get(Photo, photo_id)
    if photo is None:
        raise UnknownPhoto(f"no photo with id {photo_id}")
    return photo


def photo_uuid(db: Session, *, photo_id: int) -> str | None:
    """The photo's public id (its UUID, as text) from its internal integer id; None when there is no such photo."""
    found = db.scalar(select(Photo.uuid).where(Photo.id == photo_id))
    return str(found) if found is not None else None


def photo_id_for(db: Session, *, photo_uuid: str) -> int:
    """The internal integer id of the photo with this public id; raises UnknownPhoto (also for a malformed UUID)."""
    try:
        value = uuid.UUID(photo_uuid)
    except ValueError as exc:
        raise UnknownPhoto(f"not a photo UUID: {photo_uuid!r}") from exc
    found = db.scalar(select(Photo.id).where(Photo.uuid == value))
    if found is None:
        raise UnknownPhoto(f"no photo {photo_uuid}")
    return int(found)


def resolve_photo(db: Session, *, given: str) -> int:
    """The integer id of the photo a person named on the command line: its UUID (the public id), or for
    scripts written before the UUID was accepted, the integer itself; raises UnknownPhoto."""
    if given.isdigit():
        get_photo(db, photo_id=int(given))
        return int(given)
    return photo_id_for(db, photo_uuid=given)


def get_session(db: Session, *, photo_id: int, lock: bool = False, recount_model: str = "") -> ProcessingSession:
    """The photo's counting session, or with `recount_model` its recount by that model. Raises UnknownPhoto."""
    query = select(ProcessingSession).where(ProcessingSession.photo_id == photo_id,
                                            ProcessingSession.recount_model == recount_model)
    if lock:
        query = query.with_for_update()
    session = db.scalars(query).one_or_none()
    if session is None:
        raise UnknownPhoto(f"no photo with id {photo_id}" + (f" recounted by {recount_model}" if recount_model else ""))
    return session


def mark_processing(db: Session, *, photo_id: int, task_id: str | None, recount_model: str = "") -> ProcessingSession:
    session = get_session(db, photo_id=photo_id, lock=True, recount_model=recount_model)
    if not SessionStatus(session.status).is_final:
        session.status = SessionStatus.PROCESSING
        session.started_at = session.started_at or utcnow()
        session.task_id = session.task_id or task_id
    return session


def save_regions(db: Session, *, photo_id: int, proposals: list[RegionProposal],
                 region_mode: str = "segment", recount_model: str = "",
                 session: ProcessingSession | None = None) -> list[Region]:
    """Store the regions once (and how they were found); a redelivered parent finds and reuses the same rows.

    `session`: the session row when this transaction has locked it already (`mark_processing`).
    """
    session = session or get_session(db, photo_id=photo_id, lock=True, recount_model=recount_model)
    session.region_mode = region_mode
    existing = list(db.scalars(select(Region).where(Region.session_id == session.id).order_by(Region.region_index)))
    if existing:
        return existing
    regions = [
        Region(
            session_id=session.id,
            region_index=index,
            class_name=proposal.class_name,
            confidence=proposal.confidence,
            x1=proposal.bbox[0],
            y1=proposal.bbox[1],
            x2=proposal.bbox[2],
            y2=proposal.bbox[3],
            polygon=proposal.polygon,
        )
        for index, proposal in enumerate(proposals)
    ]
    db.add_all(regions)
    session.regions_total = len(regions)
    db.flush()
    return regions


def copy_regions(db: Session, *, photo_id: int, recount_model: str) -> list[Region]:
    """The counting session's regions, copied once into the recount session, so a recount counts the very
    regions whose stock it corrects (same index, box and outline). A redelivered parent reuses the copies."""
    counted = get_session(db, photo_id=photo_id)
    proposals = [RegionProposal(r.class_name, r.confidence, r.bbox, r.polygon) for r in counted.regions]
    return save_regions(db, photo_id=photo_id, proposals=proposals, region_mode=counted.region_mode or "segment",
                        recount_model=recount_model)


def create_recount(db: Session, *, photo_id: int, recount_model: str,
                   correlation_id: str | None = None) -> tuple[ProcessingSession, bool]:
    """The photo's recount session for `recount_model` and whether it must (still) run.

    A new one is created pending; a failed one is made pending again when it wrote no movement; a finished
    one is left as it is (its difference is written: False). Raises UnknownPhoto, and ValueError when the
    photo's own count has not finished or failed (there is no stock to correct). Two concurrent callers
    meet the (photo_id, recount_model) unique constraint at commit.
    """
    counted = get_session(db, photo_id=photo_id)
    if counted.status not in (SessionStatus.COMPLETED, SessionStatus.WARNING):
        raise ValueError(f"photo {photo_id} is {counted.status}: only a counted photo can be recounted")
    existing = db.scalars(select(ProcessingSession).where(
        ProcessingSession.photo_id == photo_id, ProcessingSession.recount_model == recount_model)
        .with_for_update()).one_or_none()
    if existing is None:
        session = ProcessingSession(photo_id=photo_id, recount_model=recount_model, correlation_id=correlation_id,
                                    status=SessionStatus.PENDING)
        db.add(session)
        db.flush()
        return session, True
    if existing.status == SessionStatus.FAILED and not _recount_written(db, existing):
        existing.status, existing.error, existing.finished_at = SessionStatus.PENDING, None, None
        return existing, True
    return existing, not SessionStatus(existing.status).is_final


def _recount_written(db: Session, session: ProcessingSession) -> bool:
    """Whether this recount wrote its movements (on the batches of the photo's counting session)."""
    return bool(db.scalar(
        select(func.count()).select_from(StockMovement)
        .join(StockBatch, StockBatch.id == StockMovement.batch_id)
        .join(ProcessingSession, ProcessingSession.id == StockBatch.session_id)
        .where(ProcessingSession.photo_id == session.photo_id, StockMovement.recount_model == session.recount_model)))


def _on_postgresql(db: Session) -> bool:
    """The embedded default runs on SQLite; a few writes use what only PostgreSQL has."""
    return db.get_bind().dialect.name == "postgresql"


def record_region_progress(db: Session, *, photo_id: int, region_index: int, count: int | None,
                           mean_confidence: float | None, error: str | None = None,
                           recount_model: str = "") -> tuple[int, int] | None:
    """Note one region as done (idempotent); return how many regions are done, and of how many, or None
    when the session has ended already (or there is no such photo): nothing is written then.

    Progress is advisory (aggregation writes the counts that matter, from the chord's results), so on
    PostgreSQL this transaction does not wait for its WAL flush: a crash may lose the last few
    progress updates, never a count.
    """
    if _on_postgresql(db):
        db.execute(text("SET LOCAL synchronous_commit TO OFF"))
    # Two statements, no reads first. Only while the session runs: once it is final, its rows are
    # aggregation's (exact), and a progress write that arrives late must not touch them.
    this_session = ((ProcessingSession.photo_id == photo_id) & (ProcessingSession.recount_model == recount_model)
                    & ProcessingSession.status.not_in(FINAL_STATUSES))
    session_id = select(ProcessingSession.id).where(this_session).scalar_subquery()
    db.execute(
        update(Region)
        .where(Region.session_id == session_id, Region.region_index == region_index)
        .values(plant_count=count, mean_confidence=mean_confidence, error=error)
        .execution_options(synchronize_session=False)
    )
    done = (
        select(func.count())
        .select_from(Region)
        .where(Region.session_id == ProcessingSession.id,
               (Region.plant_count.is_not(None)) | (Region.error.is_not(None)))
        .scalar_subquery()
    )
    row = db.execute(
        update(ProcessingSession)
        .where(this_session)
        .values(regions_done=done)
        .returning(ProcessingSession.regions_done, ProcessingSession.regions_total)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if row is None:
        return None
    return int(row.regions_done), int(row.regions_total or 0)


def movement_key(photo_id: int, region_index: int) -> str:
    return f"photo:{photo_id}:region:{region_index}"


def recount_movement_key(photo_id: int, region_index: int, recount_model: str) -> str:
    return f"recount:{recount_model}:photo:{photo_id}:region:{region_index}"


def write_counts(db: Session, *, photo_id: int, results: list[dict[str, Any]],
                 doubts: list[dict[str, Any]] | None = None,
                 model_cards: dict[str, str] | None = None, recount_model: str = "",
                 session: ProcessingSession | None = None) -> ProcessingSession:
    """Write detections, one stock batch and one stock movement per counted region, and the status.

    `doubts` are the plausibility reasons ({"check", "message", ...}); any makes the session `warning`,
    its counts still written. `model_cards` records which cards produced the counts.
    A recount (`recount_model`) writes, instead of a batch and a `count` movement, one `recount` movement
    per region on the counted region's batch: the new count minus that batch's movements so far.
    Call inside one transaction. A session that is already final is returned as it is,
    and the unique constraints stop a concurrent second writer at commit.
    `session`: the session row when this transaction has locked it already (its regions loaded or not).
    """
    session = session or get_session(db, photo_id=photo_id, lock=True, recount_model=recount_model)
    if SessionStatus(session.status).is_final:
        return session
    regions = {r.region_index: r for r in session.regions}
    failures: list[dict[str, Any]] = []
    counted: list[tuple[Region, dict[str, Any]]] = []
    total = 0
    for result in results:
        region = regions.get(int(result["region_index"]))
        if region is None:
            failures.append({"region_index": result["region_index"], "error": "unknown region"})
            continue
        if result.get("failed"):
            region.error = str(result.get("error"))
            failures.append({"region_index": region.region_index, "error": region.error})
            continue
        if recount_model:
            total += _write_recount_region(db, region=region, result=result, photo_id=photo_id,
                                           recount_model=recount_model, failures=failures)
        else:
            counted.append((region, result))
    total += _write_regions(db, session=session, counted=counted, photo_id=photo_id)
    session.total_count = total
    session.regions_done = len(results)
    session.warnings = failures
    session.doubts = list(doubts or [])
    session.model_cards = dict(model_cards or {})
    session.finished_at = utcnow()
    if failures and len(failures) == len(results):
        session.status = SessionStatus.FAILED
        session.error = "every region failed: " + "; ".join(f"#{f['region_index']}: {f['error']}" for f in failures)
    else:
        session.status = SessionStatus.WARNING if failures or session.doubts else SessionStatus.COMPLETED
    return session


def _store_region_counts(db: Session, *, counted: list[tuple[Region, dict[str, Any]]]) -> list[int]:
    """The regions' counts and plants (replacing any stored before), in one UPDATE, one DELETE and one
    insert whatever the number of regions: each statement is a round trip to the database (the ORM's
    UPDATE of changed regions would be one a region). The counts, in order."""
    ids = [region.id for region, _ in counted]
    counts = {region.id: int(result["count"]) for region, result in counted}
    confidences = {region.id: result.get("mean_confidence") for region, result in counted}
    db.execute(
        update(Region).where(Region.id.in_(ids))
        .values(plant_count=case(counts, value=Region.id),
                # The cast types a column of NULLs (no region has a confidence) for PostgreSQL.
                mean_confidence=cast(case(confidences, value=Region.id), Float))
        .execution_options(synchronize_session=False)
    )
    rows: list[tuple[float, ...]] = []
    for region, result in counted:
        # What the UPDATE wrote, without making the rows dirty (the ORM would update them once more).
        set_committed_value(region, "plant_count", counts[region.id])
        set_committed_value(region, "mean_confidence", confidences[region.id])
        rows.extend((region.id, *row) for row in detection_rows(result.get("detections")))
    db.execute(delete(Detection).where(Detection.region_id.in_(ids)))
    if rows:
        _insert_detections(db, rows)
    return [counts[region.id] for region, _ in counted]


def _write_regions(db: Session, *, session: ProcessingSession, counted: list[tuple[Region, dict[str, Any]]],
                   photo_id: int) -> int:
    """Store counted regions with one stock batch and one `count` movement each; their total count.

    The batches go in one INSERT and the movements in another (at the next flush), not two per region."""
    if not counted:
        return 0
    counts = _store_region_counts(db, counted=counted)
    batches = [StockBatch(session_id=session.id, region_id=region.id, container_type=region.class_name, quantity=count)
               for (region, _), count in zip(counted, counts, strict=True)]
    db.add_all(batches)
    db.flush()
    db.add_all([StockMovement(batch_id=batch.id, idempotency_key=movement_key(photo_id, region.region_index),
                              movement_type="count", quantity=count)
                for (region, _), batch, count in zip(counted, batches, counts, strict=True)])
    return sum(counts)


def _write_recount_region(db: Session, *, region: Region, result: dict[str, Any], photo_id: int,
                          recount_model: str, failures: list[dict[str, Any]]) -> int:
    """Store a recounted region and its `recount` movement: the difference from the quantity its counted
    batch holds now (the count and the movements of earlier recounts). The batch row is locked, so two
    recounts of the same region by different models take their differences one after the other.
    A region whose count wrote no batch (it had failed) gets no movement: noted in `failures`."""
    [count] = _store_region_counts(db, counted=[(region, result)])
    batch = db.scalars(
        select(StockBatch).join(Region, Region.id == StockBatch.region_id)
        .join(ProcessingSession, ProcessingSession.id == Region.session_id)
        .where(ProcessingSession.photo_id == photo_id, ProcessingSession.recount_model == "",
               Region.region_index == region.region_index)
        .with_for_update(of=StockBatch)
    ).one_or_none()
    if batch is None:
        failures.append({"region_index": region.region_index, "error": "the count wrote no stock for this region"})
        return count
    held = int(db.scalar(select(func.coalesce(func.sum(StockMovement.quantity), 0))
                         .where(StockMovement.batch_id == batch.id)) or 0)
    db.add(StockMovement(batch_id=batch.id, movement_type="recount", quantity=count - held,
                         recount_model=recount_model,
                         idempotency_key=recount_movement_key(photo_id, region.region_index, recount_model)))
    return count


def _insert_detections(db: Session, rows: list[tuple[float, ...]]) -> None:
    """Insert plants, rows of (region_id, *DETECTION_COLUMNS): ~250 a region, ~1000 a photo.

    On PostgreSQL through COPY: a photo's aggregation took 15 ms instead of 40 ms here, most of it
    spent rendering the multi-row INSERT's 6000 bound parameters; elsewhere a plain executemany.
    """
    columns = ("region_id", *DETECTION_COLUMNS)
    if not _on_postgresql(db):
        db.execute(insert(Detection), [dict(zip(columns, row, strict=True)) for row in rows])
        return
    text_rows = io.StringIO("".join("\t".join(map(repr, row)) + "\n" for row in rows))
    cursor = db.connection().connection.cursor()
    try:
        cursor.copy_expert(f"COPY {Detection.__tablename__} ({', '.join(columns)}) FROM STDIN", text_rows)
    finally:
        cursor.close()


def add_late_region(db: Session, *, photo_id: int, result: dict[str, Any],
                    recount_model: str = "") -> ProcessingSession:
    """Write one region's count (or recount) after its session ended (a replayed child). Idempotent."""
    session = get_session(db, photo_id=photo_id, lock=True, recount_model=recount_model)
    index = int(result["region_index"])
    region = db.scalars(select(Region).where(Region.session_id == session.id, Region.region_index == index)).one()
    if recount_model:
        written = db.scalar(select(func.count()).select_from(StockMovement).where(
            StockMovement.idempotency_key == recount_movement_key(photo_id, index, recount_model)))
    else:
        written = db.scalar(select(func.count()).select_from(StockBatch).where(StockBatch.region_id == region.id))
    if written or result.get("failed"):
        return session
    region.error = None
    failures: list[dict[str, Any]] = []
    if recount_model:
        count = _write_recount_region(db, region=region, result=result, photo_id=photo_id,
                                      recount_model=recount_model, failures=failures)
    else:
        count = _write_regions(db, session=session, counted=[(region, result)], photo_id=photo_id)
    session.total_count = (session.total_count or 0) + count
    session.warnings = [w for w in session.warnings or [] if int(w["region_index"]) != index] + failures
    # The doubts were judged on the other regions' plants; a late region does not lift them.
    session.status = SessionStatus.WARNING if session.warnings or session.doubts else SessionStatus.COMPLETED
    session.error = None
    session.finished_at = utcnow()
    return session


def reopen_session(db: Session, *, photo_id: int, status: SessionStatus) -> bool:
    """Make a failed session with no stock written runnable again; False if there is nothing to redo."""
    session = get_session(db, photo_id=photo_id, lock=True)
    if session.status != SessionStatus.FAILED:
        return not SessionStatus(session.status).is_final
    written = db.scalar(select(func.count()).select_from(StockBatch).where(StockBatch.session_id == session.id))
    if written:
        return False
    session.status, session.error, session.finished_at = status, None, None
    return True


def reopen_for_late_results(db: Session, *, photo_id: int, task_id: str | None,
                            recount_model: str = "", session: ProcessingSession | None = None) -> str | None:
    """Reopen a session that failed without writing stock, because its results have arrived after all
    (it was failed as stale, or its work was given up on, while a worker still had it). Its dead letters
    are marked done, so nobody replays them. Returns the error the session had, or None when there
    was nothing to reopen. `session`: the session row when this transaction has locked it already.
    """
    session = session or get_session(db, photo_id=photo_id, lock=True, recount_model=recount_model)
    if session.status != SessionStatus.FAILED:
        return None
    if db.scalar(select(func.count()).select_from(StockBatch).where(StockBatch.session_id == session.id)):
        return None
    if recount_model and _recount_written(db, session):
        return None
    previous = session.error or ""
    session.status, session.error, session.finished_at = SessionStatus.PROCESSING, None, None
    db.execute(
        update(DeadLetter)
        .where(DeadLetter.photo_id == photo_id, DeadLetter.replayed_at.is_(None))
        .values(replayed_at=utcnow(), replay_task_id=task_id)
        .execution_options(synchronize_session=False)
    )
    return previous


def note_requeue(db: Session, *, photo_id: int, older_than: datetime,
                 max_attempts: int) -> Literal["requeue", "give up", "skip"]:
    """Decide about an unfinished photo whose work is gone from the broker: "requeue" (one more attempt
    counted), "give up" (`max_attempts` used), or "skip" (it finished or moved on since it was seen)."""
    session = get_session(db, photo_id=photo_id, lock=True)
    updated = session.updated_at if session.updated_at.tzinfo else session.updated_at.replace(tzinfo=UTC)
    if SessionStatus(session.status).is_final or updated >= older_than:
        return "skip"
    if session.requeue_attempts >= max_attempts:
        return "give up"
    session.requeue_attempts += 1
    return "requeue"


def fail_session(db: Session, *, photo_id: int, reason: str, recount_model: str = "") -> bool:
    """Mark a session failed, unless it already ended; True when this call ended it.

    Locks the session first: an aggregation writing its counts holds that lock, and this waits for its
    commit and then finds the session final, instead of overwriting a counted photo with `failed`.
    """
    session = db.scalars(select(ProcessingSession).where(
        ProcessingSession.photo_id == photo_id, ProcessingSession.recount_model == recount_model)
        .with_for_update()).one_or_none()
    if session is None or SessionStatus(session.status).is_final:
        return False
    session.status = SessionStatus.FAILED
    session.error = reason
    session.finished_at = utcnow()
    return True


def stale_sessions(db: Session, *, older_than: datetime) -> list[ProcessingSession]:
    # Counting sessions only: a recount that stalls is sent again by running `demeter recount` again.
    query = select(ProcessingSession).where(
        ProcessingSession.status.in_([SessionStatus.PENDING, SessionStatus.PROCESSING]),
        ProcessingSession.updated_at < older_than,
        ProcessingSession.recount_model == "",
    )
    return list(db.scalars(query))


def regions_and_boxes(db: Session, *, session_id: int) -> tuple[list[Region], list[tuple[float, float, float, float]]]:
    """A session's regions, and every plant box (x1, y1, x2, y2 in photo pixels) of them as plain tuples
    (a photo has ~1000 plants: tuples, not ORM objects)."""
    regions = list(db.scalars(select(Region).where(Region.session_id == session_id)))
    if not regions:
        return regions, []
    boxes = db.execute(
        select(Detection.x1, Detection.y1, Detection.x2, Detection.y2)
        .where(Detection.region_id.in_([r.id for r in regions]))
    ).tuples().all()
    return regions, list(boxes)


def sessions_of(db: Session, *, photo_ids: list[int]) -> dict[int, ProcessingSession]:
    """The counting sessions of these photos, by photo id."""
    sessions = db.scalars(select(ProcessingSession).where(ProcessingSession.photo_id.in_(photo_ids),
                                                          ProcessingSession.recount_model == ""))
    return {session.photo_id: session for session in sessions}


def count_unrendered(db: Session, *, photo_ids: list[int]) -> int:
    """How many of these photos (not failed) have no annotated image yet."""
    return int(db.scalar(
        select(func.count()).select_from(ProcessingSession).where(
            ProcessingSession.photo_id.in_(photo_ids), ProcessingSession.recount_model == "",
            ProcessingSession.annotated_key.is_(None),
            ProcessingSession.status != SessionStatus.FAILED)
    ) or 0)


def recent_duplicate(db: Session, *, tenant: str, content_sha256: str, since: datetime) -> str | None:
    """The UUID of the tenant's latest photo with these bytes created at or after `since`, or None."""
    found = db.scalars(
        select(Photo.uuid)
        .where(Photo.tenant == tenant, Photo.content_sha256 == content_sha256, Photo.created_at >= since)
        .order_by(Photo.created_at.desc())
        .limit(1)
    ).first()
    return str(found) if found is not None else None


def delete_photo(db: Session, *, photo_id: int) -> None:
    """Remove a photo and its session (an upload whose task could not be queued); nothing else refers to them."""
    photo = db.get(Photo, photo_id)
    if photo is not None:
        db.delete(photo.session)
        db.delete(photo)


def waiting_dead_letters(db: Session) -> dict[str, int]:
    """Dead letters not yet replayed, counted by task name."""
    rows = db.execute(
        select(DeadLetter.task_name, func.count()).where(DeadLetter.replayed_at.is_(None))
        .group_by(DeadLetter.task_name)
    ).all()
    return {name: count for name, count in rows}
