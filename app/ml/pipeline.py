"""The counting pipeline as plain functions, with no Celery and no database.

The tasks call these one step at a time (segment in the parent, count one
region per child); `analyse_photo` runs them in one process for the eval and
the benchmarks, so both measure exactly the code that the workers run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from app.config import Settings
from app.ml.plausibility import plant_like_count
from app.ml.registry import ModelRegistry
from app.ml.segmentation import segment_photo
from app.ml.sliced import Detections, SliceParams, detect_in_region, detect_in_region_at
from app.records import RegionProposal, encode_detections, validate_bbox


def slice_params(settings: Settings) -> SliceParams:
    return SliceParams(
        slice_size=settings.slice_size,
        reference_side=settings.slice_reference_side,
        overlap=settings.slice_overlap,
        imgsz=settings.detection_imgsz,
        confidence=settings.detection_confidence,
        batch_size=settings.detection_batch_size,
        merge_method=settings.merge_method,
        merge_metric=settings.merge_metric,
        merge_threshold=settings.merge_threshold,
        scale_down=settings.slice_scale_down,
    )


def find_regions(image_rgb: np.ndarray, registry: ModelRegistry) -> list[RegionProposal]:
    settings = registry.settings
    return segment_photo(
        registry.segmenter(),
        image_rgb,
        imgsz=settings.segmentation_imgsz,
        confidence=settings.segmentation_confidence,
        class_map=settings.segmentation_class_map,
    )


RegionMode = Literal["segment", "whole", "supplied"]


def choose_regions(image_rgb: np.ndarray, registry: ModelRegistry, mode: str,
                   supplied: list[list[int]] | None = None) -> tuple[list[RegionProposal], RegionMode]:
    """The regions to count and how they were found.

    Supplied boxes (x1, y1, x2, y2 in photo pixels; raises InvalidRegion when one does not fit) win over
    `mode`; "whole" is the photo as one region; "segment" asks the container segmenter. Another mode is a
    ValueError (a typo must not quietly count by container).
    """
    if mode not in ("segment", "whole"):
        raise ValueError(f"region mode must be 'segment' or 'whole', not {mode!r}")
    height, width = image_rgb.shape[:2]
    if supplied:
        return [RegionProposal("supplied", 1.0, validate_bbox(box, width, height), []) for box in supplied], "supplied"
    if mode == "whole":
        return [RegionProposal("whole", 1.0, (0, 0, width, height), [])], "whole"
    return find_regions(image_rgb, registry), "segment"


def padded_box(bbox: tuple[int, int, int, int], width: int, height: int, padding: float) -> tuple[int, int, int, int]:
    """Grow a region's box a little, so plants on its rim are seen whole."""
    x1, y1, x2, y2 = bbox
    pad_x, pad_y = round((x2 - x1) * padding), round((y2 - y1) * padding)
    return max(0, x1 - pad_x), max(0, y1 - pad_y), min(width, x2 + pad_x), min(height, y2 + pad_y)


def _counted_inside(found: Detections, bbox: tuple[int, int, int, int], counted: tuple[int, ...]) -> Detections:
    """The boxes of counted classes (DETECTION_COUNT_CLASSES) whose centre lies inside `bbox`."""
    x1, y1, x2, y2 = bbox
    centres_x = (found.boxes[:, 0] + found.boxes[:, 2]) / 2
    centres_y = (found.boxes[:, 1] + found.boxes[:, 3]) / 2
    inside = (centres_x >= x1) & (centres_x < x2) & (centres_y >= y1) & (centres_y < y2)
    return found.take(inside & np.isin(found.classes, counted))


def count_region(image_rgb: np.ndarray, bbox: tuple[int, int, int, int], registry: ModelRegistry) -> Detections:
    """Plants whose centre lies inside the region's box (detected on a slightly padded crop).

    Only boxes of the counted classes are kept (a detector may also find e.g. empty cells).
    """
    settings = registry.settings
    height, width = image_rgb.shape[:2]
    box = validate_bbox(bbox, width, height)
    search = padded_box(box, width, height, settings.region_padding)
    found = detect_in_region(registry.tile_detector(), image_rgb, search, slice_params(settings))
    return _counted_inside(found, box, registry.counted_classes())


def count_region_at(image_rgb: np.ndarray, bbox: tuple[int, int, int, int], registry: ModelRegistry,
                    thresholds: list[float]) -> list[Detections]:
    """`count_region` at several confidence thresholds with one pass of the network (threshold calibration)."""
    settings = registry.settings
    height, width = image_rgb.shape[:2]
    box = validate_bbox(bbox, width, height)
    search = padded_box(box, width, height, settings.region_padding)
    found = detect_in_region_at(registry.tile_detector(), image_rgb, search, slice_params(settings), thresholds)
    counted = registry.counted_classes()
    return [_counted_inside(f, box, counted) for f in found]


def region_result(region_index: int, detections: Detections, plant_like: int | None = None) -> dict[str, Any]:
    """The small JSON document a child task returns for one region.

    `plant_like` is how many of the plants look leaf-coloured (app.ml.plausibility.plant_like_count).
    """
    return {
        "region_index": region_index,
        "count": len(detections),
        "mean_confidence": round(float(detections.scores.mean()), 4) if len(detections) else None,
        "detections": encode_detections(detections.boxes, detections.scores),
        "plant_like": plant_like,
    }


@dataclass(frozen=True)
class RegionCount:
    region: RegionProposal
    detections: Detections
    plant_like: int | None = None  # plants whose centre looks leaf-coloured

    @property
    def count(self) -> int:
        return len(self.detections)


@dataclass(frozen=True)
class PhotoAnalysis:
    regions: list[RegionCount]

    @property
    def total(self) -> int:
        return sum(region.count for region in self.regions)


def analyse_photo(image_rgb: np.ndarray, registry: ModelRegistry, mode: str = "segment") -> PhotoAnalysis:
    """Find the regions (`choose_regions`: "segment" or "whole"), then count every one: the whole pipeline
    in this process."""
    counted = []
    regions, _ = choose_regions(image_rgb, registry, mode)
    for region in regions:
        detections = count_region(image_rgb, region.bbox, registry)
        counted.append(RegionCount(region, detections, plant_like_count(image_rgb, detections.boxes)))
    return PhotoAnalysis(counted)


def pipeline_counter(registry: ModelRegistry, whole_photo: bool = False) -> Callable[[np.ndarray, list[float]],
                                                                                      list[np.ndarray]]:
    """`(image, thresholds) -> (N, 4) plant boxes per threshold`, as the workers would count the photo.

    Regions come from the container segmenter, or the whole photo is one region (`whole_photo`: photos of
    one tray filling the frame, or containers the segmenter was never taught). For threshold calibration.
    """

    def count_at(image_rgb: np.ndarray, thresholds: list[float]) -> list[np.ndarray]:
        regions, _ = choose_regions(image_rgb, registry, "whole" if whole_photo else "segment")
        per_region = [count_region_at(image_rgb, r.bbox, registry, thresholds) for r in regions]
        return [np.concatenate([found[i].boxes for found in per_region]).reshape(-1, 4) if per_region
                else np.zeros((0, 4), np.float32) for i in range(len(thresholds))]

    return count_at
