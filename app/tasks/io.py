"""io worker tasks (gevent pool, `io` queue): annotated images and thumbnails. They never fail a session."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import select

from app import names
from app.celery_app import app
from app.db import repository
from app.db.models import Detection, Region
from app.db.session import db_session
from app.ml.images import open_rgb
from app.observability.logging import get_logger
from app.storage import derived_key, get_storage
from app.tasks.base import PipelineTask

log = get_logger(__name__)

REGION_COLOURS = {"tray": (255, 170, 0), "segment": (0, 160, 255)}
THUMBNAIL_SIDE = 512  # at most, in pixels


def draw_annotations(image: Image.Image, regions: list[Region],
                     boxes: Sequence[tuple[float, float, float, float]], doubts: Sequence[str] = ()) -> Image.Image:
    """Regions with their counts, a box per plant, and the plausibility doubts (if any) across the top.
    Draws on `image` itself when it is RGB."""
    canvas = image if image.mode == "RGB" else image.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    width = max(2, canvas.width // 600)
    for region in regions:
        colour = REGION_COLOURS.get(region.class_name, (255, 255, 255))
        if len(region.polygon) >= 3:
            draw.polygon([tuple(p) for p in region.polygon], outline=colour, width=width)
        else:
            draw.rectangle(region.bbox, outline=colour, width=width)
        count = "?" if region.plant_count is None else region.plant_count
        label = f"#{region.region_index} {region.class_name}: {count}"
        draw.text((region.x1 + 4, max(0, region.y1 - 14)), label, fill=colour)
    for box in boxes:
        draw.rectangle(box, outline=(255, 0, 60), width=1)
    _draw_doubts(draw, canvas.width, doubts)
    return canvas


DOUBT_BANNER = (150, 0, 0)  # dark red behind white text


def _draw_doubts(draw: ImageDraw.ImageDraw, width: int, doubts: Sequence[str]) -> None:
    """The plausibility reasons across the top of the picture, so the image never looks like a sure count."""
    if not doubts:
        return
    size = max(12, width // 80)
    font = ImageFont.load_default(size=size)
    lines = ["COUNT DOUBTFUL - check it by eye:", *(f"- {doubt}" for doubt in doubts)]
    line_height = int(size * 1.3)
    draw.rectangle((0, 0, width, line_height * len(lines) + 8), fill=DOUBT_BANNER)
    for row, line in enumerate(lines):
        draw.text((6, 4 + row * line_height), line, fill=(255, 255, 255), font=font)


def thumbnail(image: Image.Image) -> Image.Image:
    """At most THUMBNAIL_SIDE a side, by averaging whole blocks of pixels (2 ms for a 2048x1536
    photo, against 9 ms for Pillow's resampling `thumbnail()`)."""
    return image.reduce(max(1, math.ceil(max(image.size) / THUMBNAIL_SIDE)))


def _jpeg(image: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@app.task(bind=True, base=PipelineTask, name=names.RENDER_TASK)
def render_annotated(self: PipelineTask, photo_id: int) -> dict[str, str]:
    """Draw regions and plants on the photo; store it and a thumbnail beside the original."""
    storage = get_storage()
    with db_session() as db:
        photo = repository.get_photo(db, photo_id=photo_id)
        session = repository.get_session(db, photo_id=photo_id)
        regions = list(db.scalars(select(Region).where(Region.session_id == session.id)))
        # Plain tuples, not ORM objects: a photo has ~1000 plants.
        boxes = db.execute(
            select(Detection.x1, Detection.y1, Detection.x2, Detection.y2)
            .where(Detection.region_id.in_([r.id for r in regions]))
        ).tuples().all() if regions else []
        key = photo.storage_key
        doubts = [str(doubt["message"]) for doubt in session.doubts or []]
    original = open_rgb(storage.get(key))
    annotated = draw_annotations(original, regions, boxes, doubts)
    annotated_key = derived_key(key, "annotated", "jpg")
    thumbnail_key = derived_key(key, "thumbnail", "jpg")
    storage.put(annotated_key, _jpeg(annotated), "image/jpeg")
    storage.put(thumbnail_key, _jpeg(thumbnail(annotated)), "image/jpeg")
    with db_session() as db:
        session = repository.get_session(db, photo_id=photo_id)
        session.annotated_key, session.thumbnail_key = annotated_key, thumbnail_key
    log.info("annotated image stored", annotated_key=annotated_key)
    return {"annotated_key": annotated_key, "thumbnail_key": thumbnail_key}
