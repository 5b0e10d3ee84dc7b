"""Plain records that the models, the tasks and the database share.

Nothing here imports a model, Celery or the database, so `app.db` and the API can use these
types without loading OpenCV or torch:
- `RegionProposal`: one region (tray, open bed) found by container segmentation;
- `validate_bbox`: a region box that fits its photo (segmented, or supplied with the upload);
- the detections codec: how a region's plants travel from its child task to aggregation,
  compact and still JSON.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

from app.errors import InvalidRegion


def validate_bbox(bbox: list[int] | tuple[int, ...], width: int, height: int) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) as ints inside a width x height photo; raises InvalidRegion otherwise."""
    if len(bbox) != 4:
        raise InvalidRegion(f"a region box needs 4 numbers, got {bbox!r}")
    x1, y1, x2, y2 = (int(v) for v in bbox)
    if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
        raise InvalidRegion(f"region box {bbox!r} does not fit a {width}x{height} photo")
    return x1, y1, x2, y2


@dataclass(frozen=True)
class RegionProposal:
    """One region of a photo: class, segmentation confidence (0-1), box and outline in photo pixels."""

    class_name: str
    confidence: float
    bbox: tuple[int, int, int, int]  # x1, y1, x2, y2
    polygon: list[list[float]]  # [[x, y], ...]


# One base64 string of little-endian float32 rows (x1, y1, x2, y2, score) per region. As JSON lists of
# floats, ~250 rows a region were encoded four times on the way (result, chord join, callback message,
# stored callback arguments): ~6 ms of the GPU worker's CPU and ~10 ms of the aggregating worker's a photo.
DETECTION_COLUMNS = ("x1", "y1", "x2", "y2", "score")
_DETECTION_DTYPE = np.dtype("<f4")


def encode_detections(boxes: np.ndarray, scores: np.ndarray) -> str:
    """(N, 4) boxes and (N,) scores -> the string a region's result carries."""
    rows = np.column_stack([boxes, scores]).astype(_DETECTION_DTYPE)
    return base64.b64encode(rows.tobytes()).decode("ascii")


def decode_detections(encoded: str | None) -> np.ndarray:
    """(N, 5) float32 rows as in DETECTION_COLUMNS; an empty string or None is no plants."""
    raw = base64.b64decode(encoded or "", validate=True)
    if len(raw) % (len(DETECTION_COLUMNS) * _DETECTION_DTYPE.itemsize):
        raise ValueError(f"detections are {len(raw)} bytes, not whole rows of {len(DETECTION_COLUMNS)} float32")
    return np.frombuffer(raw, dtype=_DETECTION_DTYPE).reshape(-1, len(DETECTION_COLUMNS))


def detection_rows(encoded: str | None) -> list[tuple[float, ...]]:
    """Decoded rows as Python floats for the database: boxes to 0.1 px, scores to 0.001."""
    rows = decode_detections(encoded).astype(np.float64)
    rows[:, :4] = rows[:, :4].round(1)
    rows[:, 4] = rows[:, 4].round(3)
    return [tuple(row) for row in rows.tolist()]
