"""Box geometry, written once: overlaps of (x1, y1, x2, y2) boxes and greedy one-to-one matching.

Boxes are in pixels, x1 < x2 and y1 < y2. Overlap metrics are SAHI's and the detection literature's:
- IoU, intersection over union (the PASCAL VOC / COCO matching criterion);
- IoS, intersection over the smaller box's area (SAHI's `IOS` match metric: a small box inside
  a large one scores 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def box_overlap(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float],
                metric: str = "IOU") -> np.ndarray:
    """Element-wise IoU (metric "IOU") or IoS (metric "IOS") of two broadcastable (..., 4) box arrays;
    0 where a box has no area.

    Returns an array of the broadcast shape without the last axis, values in [0, 1].
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    width = (np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])).clip(min=0)
    height = (np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])).clip(min=0)
    inter = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    denominator = np.minimum(area_a, area_b) if metric == "IOS" else area_a + area_b - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, inter / denominator, 0.0)


def greedy_match(predicted: Sequence[Sequence[float]], truth: Sequence[Sequence[float]],
                 min_iou: float = 0.5) -> list[tuple[int, int]]:
    """One-to-one matching by IoU, best pairs first (the greedy matching of PASCAL VOC evaluation).

    Returns (predicted index, truth index) pairs whose IoU is at least `min_iou`.
    """
    if not len(predicted) or not len(truth):
        return []
    iou = box_overlap(np.asarray(predicted, dtype=np.float64)[:, None, :], np.asarray(truth, dtype=np.float64)[None])
    used_p: set[int] = set()
    used_t: set[int] = set()
    matches = []
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        i, j = divmod(int(flat), iou.shape[1])
        if iou[i, j] < min_iou:
            break
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            matches.append((i, j))
    return matches
