"""Where plants are counted: the container segmenter, the whole photo, or boxes supplied with the upload."""

from __future__ import annotations

import numpy as np
import pytest

from app.errors import InvalidRegion
from app.ml.pipeline import choose_regions
from app.ml.registry import get_registry

IMAGE = np.zeros((300, 400, 3), np.uint8)


def test_whole_mode_is_one_region_covering_the_photo() -> None:
    regions, mode = choose_regions(IMAGE, get_registry(), "whole")

    assert mode == "whole"
    assert [(r.class_name, r.bbox) for r in regions] == [("whole", (0, 0, 400, 300))]


def test_supplied_boxes_win_over_the_mode() -> None:
    regions, mode = choose_regions(IMAGE, get_registry(), "whole", [[0, 0, 200, 300], [200, 0, 400, 300]])

    assert mode == "supplied"
    assert [r.bbox for r in regions] == [(0, 0, 200, 300), (200, 0, 400, 300)]


def test_a_supplied_box_outside_the_photo_is_refused() -> None:
    with pytest.raises(InvalidRegion, match="does not fit a 400x300 photo"):
        choose_regions(IMAGE, get_registry(), "segment", [[0, 0, 500, 300]])


def test_segment_mode_asks_the_segmenter() -> None:
    regions, mode = choose_regions(IMAGE, get_registry(), "segment")

    assert mode == "segment"
    assert {r.class_name for r in regions} <= {"tray", "segment"}
