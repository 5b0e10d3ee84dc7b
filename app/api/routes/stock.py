"""Stock: the batches counted per region and the movements they recorded, of the key's tenant."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Query

from app.api.errors import ApiError
from app.api.schemas import (
    BatchPage,
    ErrorBody,
    MovementPage,
    StockBatchOut,
    StockMovementOut,
    StockTotals,
    UtcDatetime,
)
from app.api.security import StockReader
from app.db.apikeys import Principal
from app.db.listings import StockFilters, list_batches, list_movements
from app.db.models import StockBatch, StockMovement
from app.db.pagination import MAX_PAGE, NO_NUL, InvalidCursor, encode_cursor
from app.db.session import db_session

router = APIRouter(prefix="/api/v1/stock", tags=["stock"])

_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 403, 422, 503)}

PhotoFilter = Annotated[UUID | None, Query(description="only the stock of this photo")]
ContainerFilter = Annotated[str | None, Query(max_length=64, pattern=NO_NUL, examples=["tray"])]
MovementFilter = Annotated[str | None, Query(max_length=32, pattern=NO_NUL, examples=["count"])]
After = Annotated[UtcDatetime | None, Query(description="inclusive, ISO 8601 with a zone")]
Before = Annotated[UtcDatetime | None, Query(description="exclusive, ISO 8601 with a zone")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Cursor = Annotated[str | None, Query(max_length=200, description="`next_cursor` of the previous page")]


def _filters(principal: Principal, **values: Any) -> StockFilters:
    return StockFilters(tenant=None if principal.all_tenants else principal.tenant, **values)


Row = TypeVar("Row")


def _read_page(listing: Callable[..., tuple[list[Row], tuple[int, int]]], filters: StockFilters, limit: int,
               cursor: str | None) -> tuple[list[Row], StockTotals]:
    """One page of a stock listing and its totals over every page; a bad cursor is a 422."""
    try:
        with db_session() as db:
            rows, (count, quantity) = listing(db, filters=filters, limit=limit, cursor=cursor)
    except InvalidCursor as exc:
        raise ApiError(422, "invalid_cursor", str(exc)) from exc
    return rows, StockTotals(rows=count, quantity=quantity)


def _next_cursor(entities: list[StockBatch] | list[StockMovement], limit: int) -> str | None:
    """The cursor after the last row of a full page (newest first by creation time, then id); None after the last."""
    if len(entities) < limit:
        return None
    return encode_cursor(entities[-1].created_at, entities[-1].id)


@router.get("/batches", response_model=BatchPage, responses=_ERRORS)
def list_stock_batches(principal: StockReader, photo_id: PhotoFilter = None, container_type: ContainerFilter = None,
                       created_after: After = None, created_before: Before = None, limit: Limit = 50,
                       cursor: Cursor = None) -> BatchPage:
    """Batches (one per counted region), newest first, with totals over every page. Scope `stock:read`."""
    filters = _filters(principal, photo_uuid=photo_id, container_type=container_type, created_after=created_after,
                       created_before=created_before)
    rows, totals = _read_page(list_batches, filters, limit, cursor)
    items = [StockBatchOut(batch_id=row.batch.uuid, photo_id=row.photo_uuid, region_index=row.region_index,
                           container_type=row.batch.container_type, quantity=row.batch.quantity,
                           created_at=row.batch.created_at) for row in rows]
    return BatchPage(items=items, next_cursor=_next_cursor([row.batch for row in rows], limit), totals=totals)


@router.get("/movements", response_model=MovementPage, responses=_ERRORS)
def list_stock_movements(principal: StockReader, photo_id: PhotoFilter = None,
                         container_type: ContainerFilter = None,
                         movement_type: MovementFilter = None,
                         created_after: After = None, created_before: Before = None, limit: Limit = 50,
                         cursor: Cursor = None) -> MovementPage:
    """Stock movements, newest first, with totals over every page. Scope `stock:read`."""
    filters = _filters(principal, photo_uuid=photo_id, container_type=container_type, movement_type=movement_type,
                       created_after=created_after, created_before=created_before)
    rows, totals = _read_page(list_movements, filters, limit, cursor)
    items = [StockMovementOut(movement_id=row.movement.uuid, batch_id=row.batch_uuid, photo_id=row.photo_uuid,
                              movement_type=row.movement.movement_type, quantity=row.movement.quantity,
                              created_at=row.movement.created_at) for row in rows]
    return MovementPage(items=items, next_cursor=_next_cursor([row.movement for row in rows], limit), totals=totals)
