"""Rows -> response bodies."""

from __future__ import annotations

from datetime import datetime

from app.api.schemas import Doubt, PhotoStatus, Progress, RegionOut, SessionState, Timings
from app.db.models import Photo


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def photo_status(photo: Photo, *, annotated_url: str | None, thumbnail_url: str | None) -> PhotoStatus:
    session = photo.session
    status: SessionState = session.status  # type: ignore[assignment]  # a SessionStatus value
    return PhotoStatus(
        photo_id=photo.uuid,
        session_id=session.uuid,
        status=status,
        task_id=session.task_id,
        correlation_id=photo.correlation_id,
        filename=photo.original_filename,
        content_type=photo.content_type,
        width=photo.width,
        height=photo.height,
        size_bytes=photo.size_bytes,
        metadata=photo.metadata_json or {},
        progress=Progress(regions_done=session.regions_done or 0, regions_total=session.regions_total),
        regions=[
            RegionOut(
                index=region.region_index,
                class_name=region.class_name,
                confidence=region.confidence,
                bbox=region.bbox,
                count=region.plant_count,
                mean_confidence=region.mean_confidence,
                error=region.error,
            )
            for region in session.regions
        ],
        total_count=session.total_count,
        warnings=session.warnings or [],
        doubts=[Doubt(**doubt) for doubt in session.doubts or []],
        model_cards=session.model_cards or {},
        region_mode=session.region_mode,
        error=session.error,
        timings=Timings(
            created_at=session.created_at,
            started_at=session.started_at,
            finished_at=session.finished_at,
            queued_seconds=_seconds(session.created_at, session.started_at),
            processing_seconds=_seconds(session.started_at, session.finished_at),
            total_seconds=_seconds(session.created_at, session.finished_at),
        ),
        annotated_url=annotated_url,
        thumbnail_url=thumbnail_url,
    )
