"""Box overlaps and greedy matching, against figures worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from app.geometry import box_overlap, greedy_match


def test_iou_and_ios_of_a_small_box_half_inside_a_large_one() -> None:
    large, small = (0, 0, 10, 10), (8, 0, 12, 2)  # intersection 2x2 = 4; areas 100 and 8
    assert box_overlap(large, small) == pytest.approx(4 / (100 + 8 - 4))
    assert box_overlap(large, small, "IOS") == pytest.approx(4 / 8)


def test_disjoint_and_empty_boxes_overlap_zero() -> None:
    assert box_overlap((0, 0, 1, 1), (2, 2, 3, 3)) == 0
    assert box_overlap((0, 0, 0, 0), (0, 0, 0, 0), "IOS") == 0


def test_overlaps_broadcast_row_wise_and_pairwise() -> None:
    boxes = np.array([[0, 0, 2, 2], [1, 1, 3, 3]], dtype=float)
    assert box_overlap(boxes, boxes).tolist() == [1.0, 1.0]
    pairwise = box_overlap(boxes[:, None], boxes[None])
    assert pairwise.shape == (2, 2) and pairwise[0, 1] == pytest.approx(1 / 7)


def test_greedy_match_pairs_best_first_and_one_to_one() -> None:
    truth = [(0, 0, 10, 10), (20, 0, 30, 10)]
    predicted = [(1, 0, 11, 10), (0, 0, 10, 10), (22, 0, 32, 10)]  # IoUs with their truth: 0.82, 1.0, 0.67
    assert greedy_match(predicted, truth) == [(1, 0), (2, 1)]  # the exact box takes truth 0 from the 0.82 one
    assert greedy_match(predicted, truth, min_iou=0.7) == [(1, 0)]
    assert greedy_match([], truth) == [] and greedy_match(predicted, []) == []
