"""Response bodies of the HTTP API (they are also its OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import AliasChoices, BaseModel, Field

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
