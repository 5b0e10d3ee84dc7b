"""Reading back what a photo's count found: its regions and plant boxes (for review exports)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Detection, Photo, Region
from app.db.repository import get_photo, get_session


@dataclass(frozen=True)
class PhotoDetections:
    photo: Photo
    regions: list[Region]  # in region_index order
    plants: list[tuple[float, float, float, float, float]]  # x1, y1, x2, y2, score in photo pixels


def photo_detections(db: Session, *, photo_id: int) -> PhotoDetections:
    """The photo, its regions and every stored plant box. Raises UnknownPhoto."""
    photo = get_photo(db, photo_id=photo_id)
    session = get_session(db, photo_id=photo_id)
    regions = list(db.scalars(select(Region).where(Region.session_id == session.id).order_by(Region.region_index)))
    rows = db.execute(select(Detection.x1, Detection.y1, Detection.x2, Detection.y2, Detection.score)
                      .join(Region, Region.id == Detection.region_id)
                      .where(Region.session_id == session.id)
                      .order_by(Region.region_index, Detection.id)).all()
    plants = [(float(a), float(b), float(c), float(d), float(e)) for a, b, c, d, e in rows]
    return PhotoDetections(photo, regions, plants)
