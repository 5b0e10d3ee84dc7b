"""A detector may learn `plant` and `empty_cell`: the engine keeps every box's class, only the counted ones count."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.config import Settings
from app.errors import ModelUnavailable
from app.ml.pipeline import count_region, padded_box, slice_params
from app.ml.registry import ModelRegistry, counted_class_ids
from app.ml.sliced import SliceParams, detect_in_region, merge_detections
from tests.unit.test_sliced import SEED, build_lively_detector
from tests.utils.photos import synthetic


def test_counted_class_ids() -> None:
    assert counted_class_ids({0: "plant", 1: "empty_cell"}, ["plant"]) == (0,)
    assert counted_class_ids({0: "empty_cell", 1: "plant", 2: "weed"}, ["plant", "weed"]) == (1, 2)
    assert counted_class_ids({0: "seedling"}, ["plant"]) == (0,)  # a one-class detector counts its class
    with pytest.raises(ModelUnavailable, match="DETECTION_COUNT_CLASSES"):
        counted_class_ids({0: "empty_cell", 1: "weed"}, ["plant"])


def test_merging_keeps_the_class_of_the_best_box() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]], np.float64)
    scores = np.array([0.6, 0.9, 0.5], np.float32)

    merged = merge_detections(boxes, scores, SliceParams(), np.array([1, 0, 1]))

    assert merged.classes[np.argmax(merged.scores)] == 0 and merged.classes[np.argmin(merged.scores)] == 1
    assert len(merged) == 2


def test_only_counted_classes_are_counted(tmp_path: Path) -> None:
    weights = build_lively_detector(tmp_path / "two_class.pt", names=("plant", "empty_cell"))
    photo = synthetic(SEED)
    height, width = photo.image.shape[:2]
    bbox = max(photo.containers, key=lambda c: (c.bbox[2] - c.bbox[0]) * (c.bbox[3] - c.bbox[1])).bbox
    base = Settings().model_copy(update={"detection_weights": str(weights), "detection_runtime": "torch",
                                         "device": "cpu", "detection_confidence": 0.2})

    plants = count_region(photo.image, bbox, ModelRegistry(base))
    both = count_region(photo.image, bbox, ModelRegistry(base.model_copy(
        update={"detection_count_classes": ["plant", "empty_cell"]})))
    found = detect_in_region(ModelRegistry(base).tile_detector(), photo.image,
                             padded_box(bbox, width, height, base.region_padding),
                             SliceParams(**{**slice_params(base).__dict__}))

    assert set(found.classes.tolist()) == {0, 1}  # the engine kept both classes
    assert set(plants.classes.tolist()) == {0} and len(plants) > 20
    assert len(both) > len(plants)
    assert {tuple(b) for b in plants.boxes.tolist()} == {tuple(b) for b, c in zip(both.boxes.tolist(),
                                                                                   both.classes.tolist(),
                                                                                   strict=True) if c == 0}
