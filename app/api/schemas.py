"""Response bodies of the HTTP API (they are also its OpenAPI schema)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, AliasChoices, BaseModel, Field


def _to_utc(value: datetime) -> datetime:
    """A query's moment in UTC (naive: taken as UTC), so the database never sees an odd offset."""
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("the moment is out of range once in UTC") from exc


UtcDatetime = Annotated[datetime, AfterValidator(_to_utc)]

SessionState = Literal["pending", "processing", "completed", "warning", "failed"]


class ErrorDetail(BaseModel):
    code: str = Field(examples=["unsupported_media_type"])
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class PhotoAccepted(BaseModel):
    """The photo is stored and queued; follow `status_url`."""

    photo_id: UUID
    session_id: UUID
    task_id: str
    status: SessionState = "pending"
    status_url: str
    correlation_id: str
    duplicate_of: UUID | None = Field(default=None, description="a photo with the same bytes uploaded within "
                                      "DUPLICATE_UPLOAD_WINDOW_SECONDS (with DUPLICATE_UPLOAD_ACTION=flag)")


class Progress(BaseModel):
    regions_done: int
    regions_total: int | None = Field(description="null until segmentation has run")


class RegionOut(BaseModel):
    index: int
    class_name: str = Field(
        validation_alias=AliasChoices("class_name", "class"), serialization_alias="class", examples=["tray", "segment"]
    )
    confidence: float
    bbox: tuple[int, int, int, int] = Field(description="x1, y1, x2, y2 in photo pixels")
    count: int | None
    mean_confidence: float | None
    error: str | None


class Doubt(BaseModel):
    """One reason not to trust the count (the photo is then `warning`; its counts are still written)."""

    check: str = Field(examples=["no_regions", "plant_size", "density", "overlap", "low_confidence", "not_green"])
    message: str = Field(examples=["no containers found: nothing was counted, the photo may still hold plants"])
    value: float | None = None
    limit: float | None = None


class Timings(BaseModel):
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    queued_seconds: float | None = Field(description="from upload to the start of processing")
    processing_seconds: float | None = Field(description="from the start of processing to the result")
    total_seconds: float | None


class PhotoStatus(BaseModel):
    photo_id: UUID
    session_id: UUID
    status: SessionState
    task_id: str | None
    correlation_id: str | None
    filename: str | None
    content_type: str
    width: int
    height: int
    size_bytes: int
    metadata: dict[str, Any]
    duplicate_of: UUID | None = None
    progress: Progress
    regions: list[RegionOut]
    total_count: int | None
    warnings: list[dict[str, Any]] = Field(description="regions that failed for good")
    doubts: list[Doubt] = Field(description="why the count may be wrong; empty when every plausibility check passed")
    model_cards: dict[str, str] = Field(description="provenance: the model card ids that produced the counts",
                                        examples=[{"segmentation": "container_seg@6f1759de5e30",
                                                   "detection": "plant_det@44ed19c8a5c8"}])
    region_mode: str | None = Field(default=None, description="segment, whole or supplied")
    error: str | None
    timings: Timings
    annotated_url: str | None
    thumbnail_url: str | None


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str] = Field(examples=[{"database": "ok", "broker": "ok", "storage": "ok"}])


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class PhotoSummary(BaseModel):
    """One photo in a listing; GET its `status_url` for the regions and timings."""

    photo_id: UUID
    session_id: UUID
    status: SessionState
    created_at: datetime
    finished_at: datetime | None
    correlation_id: str | None
    filename: str | None
    metadata: dict[str, Any]
    total_count: int | None
    duplicate_of: UUID | None
    status_url: str


class PhotoPage(BaseModel):
    """Newest first. `next_cursor` fetches the next page (null on the last one)."""

    items: list[PhotoSummary]
    next_cursor: str | None


class StockTotals(BaseModel):
    rows: int = Field(description="how many rows match the filters, over all pages")
    quantity: int = Field(description="their summed quantity (plants)")


class StockBatchOut(BaseModel):
    """The plants counted in one region of one photo."""

    batch_id: UUID
    photo_id: UUID
    region_index: int
    container_type: str = Field(examples=["tray", "segment"])
    quantity: int
    created_at: datetime


class BatchPage(BaseModel):
    items: list[StockBatchOut]
    next_cursor: str | None
    totals: StockTotals


class StockMovementOut(BaseModel):
    movement_id: UUID
    batch_id: UUID
    photo_id: UUID
    movement_type: str = Field(examples=["count"])
    quantity: int
    created_at: datetime


class MovementPage(BaseModel):
    items: list[StockMovementOut]
    next_cursor: str | None
    totals: StockTotals


class DetectionOut(BaseModel):
    bbox: tuple[float, float, float, float] = Field(description="x1, y1, x2, y2 in photo pixels")
    score: float


class RegionDetections(BaseModel):
    index: int
    class_name: str = Field(serialization_alias="class", validation_alias=AliasChoices("class_name", "class"))
    bbox: tuple[int, int, int, int] = Field(description="x1, y1, x2, y2 in photo pixels")
    polygon: list[list[float]] = Field(description="[[x, y], ...] in photo pixels")
    count: int | None
    detections: list[DetectionOut]


class PhotoDetections(BaseModel):
    """Every plant found on a photo, by region (empty until the photo is counted)."""

    photo_id: UUID
    status: SessionState
    width: int
    height: int
    regions: list[RegionDetections]
