"""Sliced detection of small plants inside one region (the SAHI method, batched).

The region is cut into overlapping square slices, the detector runs over the
slices in batches, boxes are shifted back to photo coordinates and overlapping
boxes from neighbouring slices are merged with SAHI's own matching functions.
Everything after the forward pass is NumPy arrays: no per-detection objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sahi.postprocess.combine import greedy_nmm, nms
from sahi.slicing import get_slice_bboxes


@dataclass(frozen=True)
class SliceParams:
    slice_size: int = 320  # at the reference long side
    reference_side: int = 2048
    overlap: float = 0.2
    imgsz: int = 320
    confidence: float = 0.35
    batch_size: int = 16
    merge_method: str = "GREEDYNMM"  # or "NMS"
    merge_metric: str = "IOS"  # or "IOU"
    merge_threshold: float = 0.5

    def slice_pixels(self, photo_width: int, photo_height: int) -> int:
        """Slices grow with the photo, so a plant spans the same share of a slice at any resolution."""
        long_side = max(photo_width, photo_height)
        return max(32, round(self.slice_size * max(1.0, long_side / self.reference_side)))


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray  # (N, 4) float32 x1, y1, x2, y2 in photo pixels
    scores: np.ndarray  # (N,) float32

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))


def slice_windows(width: int, height: int, size: int, overlap: float) -> np.ndarray:
    """(K, 4) windows x1, y1, x2, y2 covering a width x height area; one window if it fits."""
    if width <= size and height <= size:
        return np.array([[0, 0, width, height]], dtype=np.int64)
    windows = get_slice_bboxes(
        image_height=height,
        image_width=width,
        slice_height=size,
        slice_width=size,
        overlap_height_ratio=overlap,
        overlap_width_ratio=overlap,
    )
    return np.asarray(windows, dtype=np.int64)


def predict_windows(
    model: Any, crop_bgr: np.ndarray, windows: np.ndarray, params: SliceParams
) -> tuple[np.ndarray, np.ndarray]:
    """Run the detector over every window; boxes come back in crop coordinates."""
    all_boxes, all_scores = [], []
    for start in range(0, len(windows), params.batch_size):
        batch = windows[start : start + params.batch_size]
        tiles = [crop_bgr[y1:y2, x1:x2] for x1, y1, x2, y2 in batch]
        results = model.predict(tiles, imgsz=params.imgsz, conf=params.confidence, verbose=False)
        for (x1, y1, _, _), result in zip(batch, results, strict=True):
            if result.boxes is None or len(result.boxes) == 0:
                continue
            all_boxes.append(result.boxes.xyxy.cpu().numpy() + np.array([x1, y1, x1, y1], np.float32))
            all_scores.append(result.boxes.conf.cpu().numpy())
    if not all_boxes:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    return np.concatenate(all_boxes).astype(np.float32), np.concatenate(all_scores).astype(np.float32)


def _overlap(box: np.ndarray, other: np.ndarray, metric: str) -> float:
    iw = min(box[2], other[2]) - max(box[0], other[0])
    ih = min(box[3], other[3]) - max(box[1], other[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area_a = (box[2] - box[0]) * (box[3] - box[1])
    area_b = (other[2] - other[0]) * (other[3] - other[1])
    denominator = min(area_a, area_b) if metric == "IOS" else area_a + area_b - inter
    return float(inter / denominator) if denominator > 0 else 0.0


def merge_detections(boxes: np.ndarray, scores: np.ndarray, params: SliceParams) -> Detections:
    """Merge duplicates from overlapping slices exactly as SAHI's postprocess does."""
    if len(scores) == 0:
        return Detections.empty()
    predictions = np.concatenate([boxes, scores[:, None], np.zeros((len(scores), 1), np.float32)], axis=1)
    if params.merge_method == "NMS":
        keep = np.asarray(nms(predictions, match_metric=params.merge_metric, match_threshold=params.merge_threshold))
        return Detections(boxes[keep], scores[keep])
    keep_to_merge = greedy_nmm(predictions, match_metric=params.merge_metric, match_threshold=params.merge_threshold)
    merged_boxes = np.empty((len(keep_to_merge), 4), np.float32)
    merged_scores = np.empty((len(keep_to_merge),), np.float32)
    for row, (kept, merges) in enumerate(keep_to_merge.items()):
        box, score = boxes[kept].copy(), scores[kept]
        for index in merges:
            # Like SAHI: re-check against the grown box, then take the union and the best score.
            if _overlap(box, boxes[index], params.merge_metric) >= params.merge_threshold:
                box = np.array(
                    [
                        min(box[0], boxes[index][0]),
                        min(box[1], boxes[index][1]),
                        max(box[2], boxes[index][2]),
                        max(box[3], boxes[index][3]),
                    ],
                    np.float32,
                )
                score = max(score, scores[index])
        merged_boxes[row], merged_scores[row] = box, score
    return Detections(merged_boxes, merged_scores)


def detect_in_region(
    model: Any, image_rgb: np.ndarray, bbox: tuple[int, int, int, int], params: SliceParams
) -> Detections:
    """Detect plants inside `bbox` of the photo; boxes in photo coordinates."""
    height, width = image_rgb.shape[:2]
    x1, y1, x2, y2 = bbox
    crop_bgr = np.ascontiguousarray(image_rgb[y1:y2, x1:x2, ::-1])
    windows = slice_windows(x2 - x1, y2 - y1, params.slice_pixels(width, height), params.overlap)
    boxes, scores = predict_windows(model, crop_bgr, windows, params)
    boxes += np.array([x1, y1, x1, y1], np.float32)
    return merge_detections(boxes, scores, params)
