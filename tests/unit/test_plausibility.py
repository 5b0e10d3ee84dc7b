"""The plausibility verdict: each check fires on detections built to trip it and stays quiet on a clean photo."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from app.ml.cards import ModelCard, Spread, default_card
from app.ml.plausibility import Limits, RegionDetections, judge, plant_like_count

CARD = ModelCard(
    id="plant_det@test", known=True, task="detect", classes=("plant",), reference_long_side=2048,
    confidence_threshold=0.35, plant_side=Spread(12.0, 15.0, 23.0, 35.0, 38.0),
    plant_density=Spread(230.0, 290.0, 540.0, 1270.0, 1520.0), max_plant_overlap=0.28, document={},
)
LIMITS = Limits(min_plants=5, size_outliers=0.2, density_factor=2.0, overlap=0.1, low_confidence=0.1,
                not_green=0.05)
PHOTO = (2048, 1536)


def grid(x0: int = 100, y0: int = 100, rows: int = 20, cols: int = 20, pitch: float = 40.0,
         side: float = 24.0) -> np.ndarray:
    """Plants on a grid, like a tray: (rows x cols, 4) boxes."""
    ys, xs = np.mgrid[0:rows, 0:cols]
    cx, cy = x0 + (xs.ravel() + 0.5) * pitch, y0 + (ys.ravel() + 0.5) * pitch
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], 1)


def region(boxes: np.ndarray, scores: float | np.ndarray = 0.9, plant_like: int | None = None,
           bbox: tuple[int, int, int, int] = (100, 100, 900, 900)) -> RegionDetections:
    scores_array = np.full(len(boxes), scores) if np.isscalar(scores) else np.asarray(scores)
    return RegionDetections(bbox, boxes, scores_array, len(boxes) if plant_like is None else plant_like)


def checks(regions: list[RegionDetections], card: ModelCard = CARD, segmented: bool = True) -> list[str]:
    return [reason.check for reason in judge(card, PHOTO, regions, LIMITS, segmented=segmented)]


def test_a_clean_photo_passes_every_check() -> None:
    # 400 plants of 24 px in 0.64 MP: 625 a megapixel, near the card's median.
    assert checks([region(grid()), region(grid(1000, 100), bbox=(1000, 100, 1800, 900))]) == []


def test_no_regions_is_a_warning_in_segment_mode_only() -> None:
    assert checks([]) == ["no_regions"]
    assert checks([], segmented=False) == []


def test_weights_without_a_card_are_never_trusted() -> None:
    assert checks([region(grid())], card=default_card("mine.pt", "detect")) == ["model_card"]


def test_plants_larger_than_any_in_training_trip_the_size_check() -> None:
    # A rosette of 300 px counted as plants of 100 px: leaves, not seedlings.
    boxes = grid(rows=7, cols=7, pitch=110, side=100)
    assert "plant_size" in checks([region(boxes)])


@pytest.mark.parametrize(("pitch", "word"), [(16.0, "more"), (160.0, "fewer")])
def test_a_region_far_denser_or_sparser_than_training_trips_the_density_check(pitch: float, word: str) -> None:
    boxes = grid(rows=50, cols=50, pitch=pitch, side=14) if pitch < 40 else grid(rows=5, cols=5, pitch=pitch)
    reasons = judge(CARD, PHOTO, [region(boxes)], LIMITS)

    assert [r.check for r in reasons] == ["density"]
    assert word in reasons[0].message


def test_an_empty_container_is_no_density_evidence() -> None:
    assert checks([region(grid()), region(np.zeros((0, 4)), bbox=(1000, 100, 1800, 900))]) == []


def test_containers_without_a_single_plant_are_a_warning() -> None:
    assert checks([region(np.zeros((0, 4))), region(np.zeros((0, 4)), bbox=(1000, 100, 1800, 900))]) == ["no_plants"]


def test_plants_split_into_overlapping_parts_trip_the_overlap_check() -> None:
    whole = grid()
    parts = whole + np.array([8.0, 0.0, 8.0, 0.0])  # every plant found twice, shifted by a third of its width
    assert checks([region(np.concatenate([whole[:200], parts[:200]]), bbox=(100, 100, 900, 900))]) == ["overlap"]


def test_many_low_confidence_plants_trip_the_confidence_check() -> None:
    scores = np.where(np.arange(400) % 2 == 0, 0.4, 0.9)  # half of them barely above 0.35
    assert checks([region(grid(), scores=scores)]) == ["low_confidence"]


def test_plants_that_are_not_green_trip_the_colour_check() -> None:
    assert checks([region(grid(), plant_like=100)]) == ["not_green"]


def test_unmeasured_colour_is_not_judged() -> None:
    assert checks([dataclasses.replace(region(grid()), plant_like=None)]) == []


def test_few_plants_keep_the_share_checks_silent() -> None:
    boxes = grid(rows=2, cols=2, pitch=110, side=100)  # 4 huge plants
    assert "plant_size" not in checks([region(boxes, plant_like=0, bbox=(100, 100, 450, 450))])


def test_leaf_coloured_boxes_are_told_from_perlite_and_soil() -> None:
    image = np.zeros((200, 300, 3), np.uint8)
    image[:] = (95, 75, 55)  # peat
    image[20:60, 20:60] = (60, 140, 50)  # a seedling
    image[20:60, 120:160] = (235, 235, 228)  # a perlite grain
    boxes = np.array([[20, 20, 60, 60], [120, 20, 160, 60], [220, 120, 260, 160]], float)

    assert plant_like_count(image, boxes) == 1
    assert plant_like_count(image, np.zeros((0, 4))) == 0


def test_a_48_megapixel_region_of_leaf_counts_as_plant_like() -> None:
    """A box whose central half holds 12 million leaf pixels: summed as 255s, its integral would overflow int32."""
    image = np.zeros((6000, 8000, 3), np.uint8)
    image[...] = (40, 160, 40)
    assert plant_like_count(image, np.array([[0.0, 0.0, 8000.0, 6000.0]])) == 1
