"""Container segmentation: one photo in, regions (trays and open beds) out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RegionProposal:
    class_name: str
    confidence: float
    bbox: tuple[int, int, int, int]  # x1, y1, x2, y2 in photo pixels
    polygon: list[list[float]]  # [[x, y], ...] in photo pixels

    def to_json(self) -> dict[str, Any]:
        return {
            "class_name": self.class_name,
            "confidence": self.confidence,
            "bbox": list(self.bbox),
            "polygon": self.polygon,
        }


def _simplify(polygon: np.ndarray, max_points: int = 64) -> list[list[float]]:
    """Keep polygons small enough for a database row and a task message."""
    if len(polygon) > max_points:
        step = int(np.ceil(len(polygon) / max_points))
        polygon = polygon[::step]
    return [[round(float(x), 1), round(float(y), 1)] for x, y in polygon]


def segment_photo(
    model: Any, image_rgb: np.ndarray, *, imgsz: int, confidence: float, class_map: dict[str, str]
) -> list[RegionProposal]:
    """Run instance segmentation; regions sorted top-to-bottom, left-to-right."""
    height, width = image_rgb.shape[:2]
    result = model.predict(image_rgb[..., ::-1], imgsz=imgsz, conf=confidence, verbose=False, retina_masks=False)[0]
    if result.boxes is None or len(result.boxes) == 0:
        return []
    boxes = result.boxes.xyxy.cpu().numpy()
    scores = result.boxes.conf.cpu().numpy()
    classes = result.boxes.cls.cpu().numpy().astype(int)
    polygons = result.masks.xy if result.masks is not None else [np.empty((0, 2))] * len(boxes)
    regions = []
    for box, score, cls, polygon in zip(boxes, scores, classes, polygons, strict=True):
        x1, y1, x2, y2 = (round(v) for v in box)
        x1, y1, x2, y2 = max(0, x1), max(0, y1), min(width, x2), min(height, y2)
        if x2 - x1 < 2 or y2 - y1 < 2:
            continue
        name = str(model.names[int(cls)])
        regions.append(
            RegionProposal(
                class_name=class_map.get(name, name),
                confidence=round(float(score), 4),
                bbox=(x1, y1, x2, y2),
                polygon=_simplify(np.asarray(polygon)),
            )
        )
    regions.sort(key=lambda r: (r.bbox[1] // 64, r.bbox[0]))
    return regions
