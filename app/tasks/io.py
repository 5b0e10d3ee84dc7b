"""io worker tasks (gevent pool, `io` queue): annotated images and thumbnails. They never fail a session."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import PurePosixPath

from PIL import Image

from app import names
from app.celery_app import app
from app.config import Settings, get_settings
from app.db import repository
from app.db.models import Region
from app.db.session import db_session
from app.drawing import Legend, RegionMark, draw_annotated, draw_thumbnail
from app.ml.images import open_rgb
from app.observability.logging import get_logger
from app.storage import derived_key, get_storage
from app.tasks.base import PipelineTask

log = get_logger(__name__)


def region_marks(regions: Sequence[Region]) -> list[RegionMark]:
    return [RegionMark(r.region_index, r.class_name, (r.x1, r.y1, r.x2, r.y2), r.polygon or (), r.plant_count)
            for r in regions]


def model_name(settings: Settings) -> str:
    """'container_seg.pt + plant_det.pt': the weights' file names (an s3:// URI's last part)."""
    return " + ".join(PurePosixPath(w).name for w in (settings.segmentation_weights, settings.detection_weights))


def _jpeg(image: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@app.task(bind=True, base=PipelineTask, name=names.RENDER_TASK)
def render_annotated(self: PipelineTask, photo_id: int) -> dict[str, str]:
    """Draw regions, plants and the legend on the photo (app/drawing.py); store it and a thumbnail beside
    the original."""
    storage = get_storage()
    with db_session() as db:
        photo = repository.get_photo(db, photo_id=photo_id)
        session = repository.get_session(db, photo_id=photo_id)
        regions, boxes = repository.regions_and_boxes(db, session_id=session.id)
        key = photo.storage_key
        marks = region_marks(regions)
        legend = Legend(photo_id, session.total_count, session.status, model_name(get_settings()),
                        tuple(session.warnings or ()), tuple(str(d["message"]) for d in session.doubts or []))
    original = open_rgb(storage.get(key))
    small, _ = draw_thumbnail(original, legend)  # before the boxes are drawn on the photo itself
    annotated, _ = draw_annotated(original, marks, boxes, legend)
    annotated_key = derived_key(key, "annotated", "jpg")
    thumbnail_key = derived_key(key, "thumbnail", "jpg")
    storage.put(annotated_key, _jpeg(annotated), "image/jpeg")
    storage.put(thumbnail_key, _jpeg(small), "image/jpeg")
    with db_session() as db:
        session = repository.get_session(db, photo_id=photo_id)
        session.annotated_key, session.thumbnail_key = annotated_key, thumbnail_key
    log.info("annotated image stored", annotated_key=annotated_key)
    return {"annotated_key": annotated_key, "thumbnail_key": thumbnail_key}
