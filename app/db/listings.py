"""Read-only look-ups for the API. Keyword-only, like app.db.repository; nothing here knows HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.sql.elements import ColumnElement

from app.db.models import Detection, Photo, ProcessingSession, Region, StockBatch, StockMovement
from app.db.pagination import before


def find_photo(db: Session, *, photo_uuid: UUID, tenant: str | None) -> Photo | None:
    """The photo (of `tenant`; None: of any) with its session and regions loaded, usable after the session closes."""
    query = (
        select(Photo)
        .where(Photo.uuid == photo_uuid)
        .options(selectinload(Photo.session).selectinload(ProcessingSession.regions))
    )
    if tenant is not None:
        query = query.where(Photo.tenant == tenant)
    return db.scalars(query).one_or_none()


def find_by_idempotency_key(db: Session, *, tenant: str, key: str) -> Photo | None:
    """The tenant's photo uploaded with this Idempotency-Key, with its session."""
    query = (
        select(Photo)
        .where(Photo.tenant == tenant, Photo.idempotency_key == key)
        .options(selectinload(Photo.session))
    )
    return db.scalars(query).one_or_none()


AnySelect = TypeVar("AnySelect", bound="Select[*tuple[Any, ...]]")


@dataclass(frozen=True)
class PhotoFilters:
    tenant: str | None  # None: every tenant (an admin key)
    status: str | None = None
    created_after: datetime | None = None  # inclusive
    created_before: datetime | None = None  # exclusive
    correlation_id: str | None = None
    bench: str | None = None


def list_photos(db: Session, *, filters: PhotoFilters, limit: int,
                cursor: str | None) -> list[tuple[Photo, ProcessingSession]]:
    """Up to `limit` photos with their sessions, newest first, after `cursor` (raises InvalidCursor)."""
    counting = (ProcessingSession.photo_id == Photo.id) & (ProcessingSession.recount_model == "")
    query = select(Photo, ProcessingSession).join(ProcessingSession, counting)
    if filters.tenant is not None:
        query = query.where(Photo.tenant == filters.tenant)
    if filters.status is not None:
        query = query.where(ProcessingSession.status == filters.status)
    if filters.created_after is not None:
        query = query.where(Photo.created_at >= filters.created_after)
    if filters.created_before is not None:
        query = query.where(Photo.created_at < filters.created_before)
    if filters.correlation_id is not None:
        query = query.where(Photo.correlation_id == filters.correlation_id)
    if filters.bench is not None:
        query = query.where(Photo.metadata_json["bench"].as_string() == filters.bench)
    if cursor is not None:
        query = query.where(before(Photo.created_at, Photo.id, cursor))
    query = query.order_by(Photo.created_at.desc(), Photo.id.desc()).limit(limit)
    return [(photo, session) for photo, session in db.execute(query).tuples()]


@dataclass(frozen=True)
class StockFilters:
    tenant: str | None  # None: every tenant (an admin key)
    photo_uuid: UUID | None = None
    container_type: str | None = None
    movement_type: str | None = None  # movements only
    created_after: datetime | None = None  # inclusive
    created_before: datetime | None = None  # exclusive


@dataclass(frozen=True)
class BatchRow:
    batch: StockBatch
    photo_uuid: UUID
    region_index: int


@dataclass(frozen=True)
class MovementRow:
    movement: StockMovement
    batch_uuid: UUID
    photo_uuid: UUID


def _stock_conditions(filters: StockFilters, created: Any) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.tenant is not None:
        conditions.append(Photo.tenant == filters.tenant)
    if filters.photo_uuid is not None:
        conditions.append(Photo.uuid == filters.photo_uuid)
    if filters.container_type is not None:
        conditions.append(StockBatch.container_type == filters.container_type)
    if filters.created_after is not None:
        conditions.append(created >= filters.created_after)
    if filters.created_before is not None:
        conditions.append(created < filters.created_before)
    return conditions


def _batch_joins(query: AnySelect) -> AnySelect:
    return (query.join(Region, Region.id == StockBatch.region_id)
            .join(ProcessingSession, ProcessingSession.id == StockBatch.session_id)
            .join(Photo, Photo.id == ProcessingSession.photo_id))


def list_batches(db: Session, *, filters: StockFilters, limit: int,
                 cursor: str | None) -> tuple[list[BatchRow], tuple[int, int]]:
    """A page of batches newest first, and (rows, quantity) over every page. Raises InvalidCursor."""
    conditions = _stock_conditions(filters, StockBatch.created_at)
    totals = db.execute(_batch_joins(
        select(func.count(StockBatch.id), func.coalesce(func.sum(StockBatch.quantity), 0)).select_from(StockBatch)
    ).where(*conditions)).tuples().one()
    query = _batch_joins(select(StockBatch, Photo.uuid, Region.region_index).select_from(StockBatch)).where(*conditions)
    if cursor is not None:
        query = query.where(before(StockBatch.created_at, StockBatch.id, cursor))
    query = query.order_by(StockBatch.created_at.desc(), StockBatch.id.desc()).limit(limit)
    rows = [BatchRow(batch, photo_uuid, index) for batch, photo_uuid, index in db.execute(query).tuples()]
    return rows, (int(totals[0]), int(totals[1]))


def list_movements(db: Session, *, filters: StockFilters, limit: int,
                   cursor: str | None) -> tuple[list[MovementRow], tuple[int, int]]:
    """A page of movements newest first, and (rows, quantity) over every page. Raises InvalidCursor."""
    conditions = _stock_conditions(filters, StockMovement.created_at)
    if filters.movement_type is not None:
        conditions.append(StockMovement.movement_type == filters.movement_type)

    def joined(query: AnySelect) -> AnySelect:
        return _batch_joins(query.join(StockBatch, StockBatch.id == StockMovement.batch_id))

    totals = db.execute(joined(
        select(func.count(StockMovement.id), func.coalesce(func.sum(StockMovement.quantity), 0))
        .select_from(StockMovement)
    ).where(*conditions)).tuples().one()
    query = joined(select(StockMovement, StockBatch.uuid, Photo.uuid).select_from(StockMovement)).where(*conditions)
    if cursor is not None:
        query = query.where(before(StockMovement.created_at, StockMovement.id, cursor))
    query = query.order_by(StockMovement.created_at.desc(), StockMovement.id.desc()).limit(limit)
    rows = [MovementRow(movement, batch_uuid, photo_uuid)
            for movement, batch_uuid, photo_uuid in db.execute(query).tuples()]
    return rows, (int(totals[0]), int(totals[1]))


def photo_detections(db: Session, *, session_id: int) -> dict[int, list[Detection]]:
    """The plants of a session's regions, by region id, in insertion order."""
    query = (select(Detection).join(Region, Region.id == Detection.region_id)
             .where(Region.session_id == session_id).order_by(Detection.id))
    found: dict[int, list[Detection]] = {}
    for detection in db.scalars(query):
        found.setdefault(detection.region_id, []).append(detection)
    return found
