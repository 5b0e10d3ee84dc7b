"""Stock: the batches counted per region and the movements they recorded, of the key's tenant."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query

from app.api.errors import ApiError
from app.api.pagination import MAX_PAGE, NO_NUL, InvalidCursor, encode_cursor
from app.api.queries import StockFilters, list_batches, list_movements
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
from app.apikeys import Principal
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


@router.get("/batches", response_model=BatchPage, responses=_ERRORS)
def list_stock_batches(principal: StockReader, photo_id: PhotoFilter = None, container_type: ContainerFilter = None,
                       created_after: After = None, created_before: Before = None, limit: Limit = 50,
                       cursor: Cursor = None) -> BatchPage:
    """Batches (one per counted region), newest first, with totals over every page. Scope `stock:read`."""
    filters = _filters(principal, photo_uuid=photo_id, container_type=container_type, created_after=created_after,
                       created_before=created_before)
    try:
        with db_session() as db:
            rows, (count, quantity) = list_batches(db, filters=filters, limit=limit, cursor=cursor)
    except InvalidCursor as exc:
        raise ApiError(422, "invalid_cursor", str(exc)) from exc
    items = [StockBatchOut(batch_id=row.batch.uuid, photo_id=row.photo_uuid, region_index=row.region_index,
                           container_type=row.batch.container_type, quantity=row.batch.quantity,
                           created_at=row.batch.created_at) for row in rows]
    last = rows[-1].batch if len(rows) == limit else None
    return BatchPage(items=items, next_cursor=encode_cursor(last.created_at, last.id) if last else None,
                     totals=StockTotals(rows=count, quantity=quantity))


@router.get("/movements", response_model=MovementPage, responses=_ERRORS)
def list_stock_movements(principal: StockReader, photo_id: PhotoFilter = None,
                         container_type: ContainerFilter = None,
                         movement_type: MovementFilter = None,
                         created_after: After = None, created_before: Before = None, limit: Limit = 50,
                         cursor: Cursor = None) -> MovementPage:
    """Stock movements, newest first, with totals over every page. Scope `stock:read`."""
    filters = _filters(principal, photo_uuid=photo_id, container_type=container_type, movement_type=movement_type,
                       created_after=created_after, created_before=created_before)
    try:
        with db_session() as db:
            rows, (count, quantity) = list_movements(db, filters=filters, limit=limit, cursor=cursor)
    except InvalidCursor as exc:
        raise ApiError(422, "invalid_cursor", str(exc)) from exc
    items = [StockMovementOut(movement_id=row.movement.uuid, batch_id=row.batch_uuid, photo_id=row.photo_uuid,
                              movement_type=row.movement.movement_type, quantity=row.movement.quantity,
                              created_at=row.movement.created_at) for row in rows]
    last = rows[-1].movement if len(rows) == limit else None
    return MovementPage(items=items, next_cursor=encode_cursor(last.created_at, last.id) if last else None,
                        totals=StockTotals(rows=count, quantity=quantity))
