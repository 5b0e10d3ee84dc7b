"""Whole-photo mode of `analyse_photo`: the photo is one region covering the frame, counted by the shipped models.

For photos of one pot or one tray filling the frame, where the container segmenter has nothing to find.
"""

from __future__ import annotations

import numpy as np
import pytest

from app.ml.pipeline import analyse_photo, pipeline_counter, slice_params
from app.ml.registry import get_registry
from app.ml.sliced import detect_in_region
from tests.utils.photos import synthetic

WIDTH, HEIGHT = 1024, 768


def _photo() -> np.ndarray:
    return synthetic(9000, WIDTH, HEIGHT).image


def test_whole_mode_counts_every_plant_the_detector_finds_over_the_frame() -> None:
    registry = get_registry()
    image = _photo()

    analysis = analyse_photo(image, registry, "whole")

    assert [(r.region.class_name, r.region.bbox, r.region.confidence) for r in analysis.regions] == [
        ("whole", (0, 0, WIDTH, HEIGHT), 1.0)]
    over_frame = detect_in_region(registry.tile_detector(), image, (0, 0, WIDTH, HEIGHT),
                                  slice_params(registry.settings)).of_classes(registry.counted_classes())
    counted = analysis.regions[0].detections
    assert len(over_frame) > 100  # the photo has plants, so the comparison means something
    assert analysis.total == len(over_frame)
    np.testing.assert_array_equal(counted.boxes, over_frame.boxes)
    np.testing.assert_array_equal(counted.scores, over_frame.scores)


def test_whole_mode_is_chosen_by_the_argument_and_segmenting_is_the_default() -> None:
    registry = get_registry()
    image = _photo()

    default = analyse_photo(image, registry)

    # The synthetic bench holds several containers; the segmenter finds them, none of them the whole frame.
    assert len(default.regions) > 1
    assert all(r.region.class_name in ("tray", "segment") for r in default.regions)
    assert all(r.region.bbox != (0, 0, WIDTH, HEIGHT) for r in default.regions)


def test_a_photo_without_plants_is_still_one_region_counting_none() -> None:
    image = np.full((HEIGHT, WIDTH, 3), (120, 110, 95), np.uint8)  # a bare bench

    analysis = analyse_photo(image, get_registry(), "whole")

    assert [(r.region.bbox, r.count, r.plant_like) for r in analysis.regions] == [((0, 0, WIDTH, HEIGHT), 0, 0)]
    assert analysis.total == 0


def test_the_calibration_counter_counts_the_whole_photo_as_analyse_photo_does() -> None:
    registry = get_registry()
    image = _photo()
    threshold = registry.settings.detection_confidence

    [boxes] = pipeline_counter(registry, whole_photo=True)(image, [threshold])

    np.testing.assert_array_equal(boxes, analyse_photo(image, registry, "whole").regions[0].detections.boxes)


def test_an_unknown_region_mode_is_refused_rather_than_counted_by_container() -> None:
    with pytest.raises(ValueError, match="'Whole'"):
        analyse_photo(np.zeros((64, 64, 3), np.uint8), get_registry(), "Whole")
