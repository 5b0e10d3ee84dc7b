"""Rows -> response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.api.schemas import (
    DetectionOut,
    Doubt,
    PhotoDetections,
    PhotoStatus,
    Progress,
    RegionDetections,
    RegionOut,
    SessionState,
    Timings,
)
from app.db.models import Detection, Photo


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
        duplicate_of=photo.duplicate_of,
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


def detections_view(photo: Photo, found: dict[int, list[Detection]]) -> PhotoDetections:
    status: SessionState = photo.session.status  # type: ignore[assignment]  # a SessionStatus value
    return PhotoDetections(
        photo_id=photo.uuid, status=status, width=photo.width, height=photo.height,
        regions=[
            RegionDetections(
                index=region.region_index, class_name=region.class_name, bbox=region.bbox,
                polygon=region.polygon or [], count=region.plant_count,
                detections=[DetectionOut(bbox=(d.x1, d.y1, d.x2, d.y2), score=d.score)
                            for d in found.get(region.id, [])],
            )
            for region in photo.session.regions
        ],
    )


COCO_PLANT = 1


def coco_document(view: PhotoDetections, filename: str | None) -> dict[str, Any]:
    """One photo as a COCO object-detection document: plants as boxes of category 1 ("plant").

    Format: https://cocodataset.org/#format-data. `bbox` is [x, y, width, height] in pixels; `score`
    is an extra field importers ignore or read as the prediction's score. `segmentation` is present
    and empty (boxes only): CVAT's importer (datumaro) requires the key and skips an empty one; Label
    Studio's (label_studio_sdk.converter) adds a polygon only for a non-empty one. `file_name` is the
    uploaded name (else the photo's UUID), which the importing tool matches with its images. Every
    field the two importers require, and where each is documented, is in app/review.py.
    """
    annotations: list[dict[str, Any]] = []
    for region in view.regions:
        for plant in region.detections:
            x1, y1, x2, y2 = plant.bbox
            width, height = round(x2 - x1, 1), round(y2 - y1, 1)
            annotations.append({
                "id": len(annotations) + 1, "image_id": 1, "category_id": COCO_PLANT,
                "bbox": [x1, y1, width, height], "area": round(width * height, 2), "iscrowd": 0,
                "segmentation": [], "score": plant.score, "attributes": {"region_index": region.index},
            })
    return {
        "info": {"description": f"Demeter Pipeline detections of photo {view.photo_id}", "version": "1.0"},
        "licenses": [],
        "images": [{"id": 1, "file_name": filename or f"{view.photo_id}.jpg", "width": view.width,
                    "height": view.height}],
        "categories": [{"id": COCO_PLANT, "name": "plant", "supercategory": "plant"}],
        "annotations": annotations,
    }
