"""Is a photo's count believable? A verdict from the model card and the photo's own detections.

Pure functions (numpy; OpenCV for the colour measure, on the GPU worker): no Celery, no database.
Aggregation calls `judge` with the regions and detections of a photo; a non-empty list of reasons makes
the photo `warning` (the counts are still written: a person decides). Each check compares one measured
quantity with the detector's card (what it saw in training) under a threshold that is a setting. The
thresholds were chosen from measurements on held-out synthetic photos and on real public photos;
models/README.md has the numbers.

Checks, each with its reason in plain words:
- `no_regions`: segmentation found no container.
- `no_plants`: containers were found, and not one plant in any of them.
- `model_card`: the detector has no card of its own, so nothing tells what a plausible photo is.
- `plant_size`: too many plants are smaller or larger than any the model was trained on.
- `density`: a region holds far more (or fewer) plants per area than any training container.
- `overlap`: too many plants overlap each other more than training plants ever did (one plant in parts).
- `low_confidence`: too many plants were found with a confidence just above the threshold.
- `not_green`: too many "plants" are not plant-coloured (grains of perlite, cell walls, peat).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.config import Settings
from app.geometry import box_overlap
from app.ml.cards import ModelCard

Box = tuple[int, int, int, int]

# A pixel looks like leaf when its hue is yellow-green to cyan-green and it is neither grey nor dark
# (OpenCV HSV: hue 0-179 is degrees / 2). Synthetic leaves are drawn at hue 35-115 degrees, saturation and
# value >= 0.25; real rosettes and seedlings measured here fall in the same band (models/README.md).
GREEN_HUE = (18, 90)  # 36-180 degrees: brown peat and soil sit at 20-35
GREEN_MIN_SATURATION = 45  # of 255
GREEN_MIN_VALUE = 35  # of 255
PLANT_LIKE_SHARE = 0.25  # a box is plant-like when this share of its central half is leaf-coloured


@dataclass(frozen=True)
class Limits:
    """Thresholds of the checks (settings PLAUSIBILITY_*)."""

    min_plants: int  # below this many plants in a photo the distribution checks stay silent
    size_outliers: float  # largest share of plants outside the card's 1st-99th size percentiles
    density_factor: float  # a region's density may be this many times beyond the card's 1st/99th percentile
    overlap: float  # largest share of plants overlapping another one more than training plants did
    low_confidence: float  # largest share of plants scored below LOW_CONFIDENCE_MARGIN above the threshold
    not_green: float  # largest share of plants whose centre is not leaf-coloured


def limits_from(settings: Settings) -> Limits:
    return Limits(
        min_plants=settings.plausibility_min_plants,
        size_outliers=settings.plausibility_size_outliers,
        density_factor=settings.plausibility_density_factor,
        overlap=settings.plausibility_overlap,
        low_confidence=settings.plausibility_low_confidence,
        not_green=settings.plausibility_not_green,
    )


LOW_CONFIDENCE_MARGIN = 0.15  # "low" = within this of the card's confidence threshold


@dataclass(frozen=True)
class RegionDetections:
    """One counted region: its box and plants in photo pixels, and how many of the plants look green."""

    bbox: Box
    boxes: np.ndarray  # (N, 4) x1, y1, x2, y2
    scores: np.ndarray  # (N,)
    plant_like: int | None  # None when not measured (a region result from before this check existed)


@dataclass(frozen=True)
class Reason:
    check: str
    message: str  # plain language, for growers
    value: float
    limit: float

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "message": self.message, "value": round(self.value, 3),
                "limit": round(self.limit, 3)}


def plant_like_count(image_rgb: np.ndarray, boxes: np.ndarray) -> int:
    """How many boxes have at least PLANT_LIKE_SHARE of their central half leaf-coloured.

    One HSV conversion of the boxes' common crop and an integral image: ~10 ms for a 2048x1536 region.
    """
    import cv2  # here, not at the top: aggregation imports this module on the cpu worker, which loads no OpenCV

    if len(boxes) == 0:
        return 0
    height, width = image_rgb.shape[:2]
    b = np.asarray(boxes, dtype=np.float64)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    hw, hh = np.maximum((b[:, 2] - b[:, 0]) / 4, 1), np.maximum((b[:, 3] - b[:, 1]) / 4, 1)
    x1 = np.clip(np.floor(cx - hw), 0, width - 1).astype(int)
    x2 = np.clip(np.ceil(cx + hw), 1, width).astype(int)
    y1 = np.clip(np.floor(cy - hh), 0, height - 1).astype(int)
    y2 = np.clip(np.ceil(cy + hh), 1, height).astype(int)
    ox, oy, ex, ey = int(x1.min()), int(y1.min()), int(x2.max()), int(y2.max())
    hsv = cv2.cvtColor(np.ascontiguousarray(image_rgb[oy:ey, ox:ex]), cv2.COLOR_RGB2HSV)
    # One pass, bounds inclusive: 255 where leaf-coloured, else 0; then 1 or 0, so the int32 sums cannot overflow.
    green = cv2.inRange(hsv, (GREEN_HUE[0], GREEN_MIN_SATURATION, GREEN_MIN_VALUE), (GREEN_HUE[1], 255, 255))
    integral = cv2.integral(np.bitwise_and(green, 1, out=green))  # (h + 1, w + 1)
    x1, x2, y1, y2 = x1 - ox, np.maximum(x2 - ox, x1 - ox + 1), y1 - oy, np.maximum(y2 - oy, y1 - oy + 1)
    inside = integral[y2, x2] - integral[y1, x2] - integral[y2, x1] + integral[y1, x1]
    share = inside / ((x2 - x1) * (y2 - y1))
    return int((share >= PLANT_LIKE_SHARE).sum())


def _overlapping_share(boxes: np.ndarray, iou_limit: float) -> int:
    """How many boxes overlap some other box of the same region with IoU above `iou_limit`."""
    n = len(boxes)
    if n < 2:
        return 0
    b = boxes.astype(np.float64)
    hit = np.zeros(n, bool)
    for start in range(0, n, 512):  # rows in blocks: 512 x N floats at a time
        iou = box_overlap(b[start:start + 512, None, :], b[None, :, :])
        np.fill_diagonal(iou[:, start:start + 512], 0.0)
        hit[start:start + 512] = (iou > iou_limit).any(axis=1)
    return int(hit.sum())


@dataclass(frozen=True)
class Measurements:
    """What the checks compare, for one photo (also printed by scripts/measure_real_photos.py)."""

    regions: int
    plants: int
    size_outliers: float  # share of plants outside the card's p1-p99 size
    median_side: float  # plant side in pixels at the card's reference long side
    density_high: float  # densest region: its plants per megapixel / the card's 99th percentile
    density_low: float  # sparsest region with plants: the card's 1st percentile / its plants per megapixel
    overlap: float
    low_confidence: float
    not_green: float | None

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def measure(card: ModelCard, photo_size: tuple[int, int], regions: list[RegionDetections],
            segmented: bool = True) -> Measurements:
    """Measure a photo's detections against the detector's card. `photo_size` is (width, height).

    Sparse regions count only when `segmented`: a whole photo or a supplied box holds floor too.
    """
    scale = card.reference_long_side / max(photo_size)
    boxes = np.concatenate([r.boxes for r in regions]) if regions else np.zeros((0, 4))
    scores = np.concatenate([r.scores for r in regions]) if regions else np.zeros(0)
    plants = len(boxes)
    sides = np.sqrt(np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)) * scale
    size_outliers = density_high = density_low = overlap = low = 0.0
    if plants and card.plant_side is not None:
        size_outliers = float(((sides < card.plant_side.p1) | (sides > card.plant_side.p99)).mean())
    if card.plant_density is not None:
        for region in regions:
            x1, y1, x2, y2 = region.bbox
            megapixels = max((x2 - x1) * (y2 - y1) * scale * scale / 1e6, 1e-6)
            density = len(region.boxes) / megapixels
            density_high = max(density_high, density / max(card.plant_density.p99, 1e-9))
            if len(region.boxes) and segmented:  # an empty container, or a whole photo, is no evidence
                density_low = max(density_low, card.plant_density.p1 / density)
    if plants and card.max_plant_overlap is not None:
        overlap = sum(_overlapping_share(r.boxes, card.max_plant_overlap) for r in regions) / plants
    if plants and card.confidence_threshold is not None:
        low = float((scores < card.confidence_threshold + LOW_CONFIDENCE_MARGIN).mean())
    measured = [r.plant_like for r in regions]
    not_green = None
    if plants and all(m is not None for m in measured):
        not_green = 1.0 - sum(int(m or 0) for m in measured) / plants
    return Measurements(regions=len(regions), plants=plants, size_outliers=size_outliers,
                        median_side=float(np.median(sides)) if plants else 0.0, density_high=density_high,
                        density_low=density_low,
                        overlap=overlap, low_confidence=low, not_green=not_green)


def _pct(share: float) -> str:
    return f"{share * 100:.0f} %"


def judge(card: ModelCard, photo_size: tuple[int, int], regions: list[RegionDetections], limits: Limits,
          segmented: bool = True) -> list[Reason]:
    """The reasons not to trust this photo's count; empty when every check passes.

    `segmented` is False when the regions were not found by the segmenter (REGION_MODE whole or supplied):
    then having no region is not the segmenter's failure.
    """
    reasons: list[Reason] = []
    if not regions:
        if segmented:
            reasons.append(Reason("no_regions", "no containers found: nothing was counted, the photo may still "
                                  "hold plants", 0, 1))
        return reasons
    if sum(len(r.boxes) for r in regions) == 0:
        reasons.append(Reason("no_plants", f"not one plant found in {len(regions)} region(s): empty, or plants "
                              "the model does not recognise", 0, 1))
        return reasons
    if not card.known:
        reasons.append(Reason("model_card", f"the plant detector has no model card ({card.id}): its training "
                              "data is unknown, so its count cannot be checked", 0, 1))
        return reasons
    m = measure(card, photo_size, regions, segmented)
    if m.plants >= limits.min_plants and card.plant_side is not None and m.size_outliers > limits.size_outliers:
        reasons.append(Reason(
            "plant_size", f"{_pct(m.size_outliers)} of the plants are smaller or larger than any the model was "
            f"trained on (median {m.median_side:.0f} px against {card.plant_side.p1:.0f}-{card.plant_side.p99:.0f} "
            f"px with the photo's long side at {card.reference_long_side} px)", m.size_outliers, limits.size_outliers))
    if card.plant_density is not None and max(m.density_high, m.density_low) > limits.density_factor:
        ratio, word = (m.density_high, "more") if m.density_high >= m.density_low else (m.density_low, "fewer")
        reasons.append(Reason(
            "density", f"a container holds {ratio:.1f} times {word} plants per area than the extremes the model "
            "was trained on", ratio, limits.density_factor))
    if m.plants >= limits.min_plants and m.overlap > limits.overlap:
        reasons.append(Reason(
            "overlap", f"{_pct(m.overlap)} of the plants overlap another one more than plants ever did in "
            "training: one plant may be counted in parts", m.overlap, limits.overlap))
    if m.plants >= limits.min_plants and m.low_confidence > limits.low_confidence:
        reasons.append(Reason(
            "low_confidence", f"{_pct(m.low_confidence)} of the plants were found with low confidence",
            m.low_confidence, limits.low_confidence))
    if m.plants >= limits.min_plants and m.not_green is not None and m.not_green > limits.not_green:
        reasons.append(Reason(
            "not_green", f"{_pct(m.not_green)} of the plants are not plant-coloured at their centre (soil, "
            "perlite, tray walls?)", m.not_green, limits.not_green))
    return reasons
