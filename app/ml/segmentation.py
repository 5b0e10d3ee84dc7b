"""Container segmentation: one photo in, regions (trays and open beds) out."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from app.geometry import box_overlap
from app.ml.sliced import Letterbox, network_stride
from app.records import RegionProposal


def _simplify(polygon: np.ndarray, max_points: int = 64) -> list[list[float]]:
    """Keep polygons small enough for a database row and a task message."""
    if len(polygon) > max_points:
        step = int(np.ceil(len(polygon) / max_points))
        polygon = polygon[::step]
    return [[round(float(x), 1), round(float(y), 1)] for x, y in polygon]


def _union(a: RegionProposal, b: RegionProposal) -> RegionProposal:
    best = a if a.confidence >= b.confidence else b
    points = np.asarray(a.polygon + b.polygon, dtype=np.float32).reshape(-1, 2)
    hull = cv2.convexHull(points).reshape(-1, 2) if len(points) >= 3 else points
    box = (min(a.bbox[0], b.bbox[0]), min(a.bbox[1], b.bbox[1]), max(a.bbox[2], b.bbox[2]), max(a.bbox[3], b.bbox[3]))
    return RegionProposal(best.class_name, best.confidence, box, _simplify(hull))


def merge_overlapping(regions: list[RegionProposal], threshold: float = 0.2) -> list[RegionProposal]:
    """Containers never overlap on a bench: overlapping proposals are pieces of one container.

    Merging them (box union, convex hull, the more confident class) keeps a container that
    the model split in two from being counted twice where the pieces overlap.
    """
    merged = sorted(regions, key=lambda r: -r.confidence)
    changed = True
    while changed:
        changed = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                if box_overlap(merged[i].bbox, merged[j].bbox, "IOS") > threshold:
                    merged[i] = _union(merged[i], merged.pop(j))
                    changed = True
                    break
            if changed:
                break
    return merged


def letterbox_input(image_rgb: np.ndarray, imgsz: int, stride: int) -> tuple[np.ndarray, float, float]:
    """The photo resized as ultralytics' letterbox would resize it for `imgsz`, in BGR order; and the
    (x, y) factors from the resized photo's pixels back to the photo's.

    Same pixels as predict's own resize (the size from `Letterbox.plan`, OpenCV INTER_LINEAR; the channels
    are resized independently, so their order does not matter), but done before the channel flip: predict
    would first copy the whole photo to make the flipped view contiguous (36 MB at 4000x3000), then resize
    it. A photo that predict would not shrink is returned as it is.
    """
    height, width = image_rgb.shape[:2]
    new_h, new_w = Letterbox.plan((height, width), imgsz, stride, rect=True).resized
    if new_w >= width and new_h >= height:
        return image_rgb[..., ::-1], 1.0, 1.0
    small = cv2.resize(np.ascontiguousarray(image_rgb), (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(small[..., ::-1]), width / new_w, height / new_h


def segmenter_input(model: Any, image_rgb: np.ndarray, imgsz: int) -> tuple[np.ndarray, float, float]:
    """What `segment_photo` hands the segmenter's predict, and the (x, y) factors back to the photo's pixels.

    A loaded PyTorch model runs at `imgsz`: the photo is resized first (`letterbox_input`). An export (its
    `.model` is the file's path) may have an input size of its own, which only predict knows: it gets the
    whole photo to letterbox itself.
    """
    network = getattr(model, "model", None)
    if not hasattr(network, "stride"):
        return image_rgb[..., ::-1], 1.0, 1.0
    return letterbox_input(image_rgb, imgsz, network_stride(network))


def segment_photo(
    model: Any, image_rgb: np.ndarray, *, imgsz: int, confidence: float, class_map: dict[str, str]
) -> list[RegionProposal]:
    """Run instance segmentation; regions sorted top-to-bottom, left-to-right."""
    height, width = image_rgb.shape[:2]
    model_input, scale_x, scale_y = segmenter_input(model, image_rgb, imgsz)
    # Class-agnostic NMS: one container is one region, even when both classes fire on it.
    result = model.predict(
        model_input, imgsz=imgsz, conf=confidence, verbose=False, retina_masks=False, agnostic_nms=True
    )[0]
    if result.boxes is None or len(result.boxes) == 0:
        return []
    scale = np.array([scale_x, scale_y], np.float64)
    boxes = result.boxes.xyxy.cpu().numpy() * np.tile(scale, 2)
    scores = result.boxes.conf.cpu().numpy()
    classes = result.boxes.cls.cpu().numpy().astype(int)
    polygons = ([np.asarray(p) * scale for p in result.masks.xy] if result.masks is not None
                else [np.empty((0, 2))] * len(boxes))
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
    regions = merge_overlapping(regions)
    regions.sort(key=lambda r: (r.bbox[1] // 64, r.bbox[0]))
    return regions
