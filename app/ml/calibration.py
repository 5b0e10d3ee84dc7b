"""Counts of a detector on labelled photos, at many confidence thresholds, and the threshold to use.

A detector trained on one growth stage can find almost nothing at 0.35 and nearly everything at 0.1,
so the threshold is measured per model: every held-out photo is counted once through the pipeline's
own functions (`app.ml.pipeline.count_region_at`: container segmentation, sliced detection, merging)
at every threshold of `THRESHOLDS`, and the threshold with the lowest mean absolute percentage count
error wins (`choose_threshold`). `demeter train` writes it into the model card; `demeter eval` reports it.

A found plant matches a labelled one when its centre lies within half the label's side of the label's
centre (one-to-one, nearest first), so points (one click per plant) and boxes score alike; precision
is matched / found, recall matched / labelled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.ml.labels import LabelledPhoto

# Thresholds tried, 0.05 apart; 0.05 is the floor because below it the detector's noise dominates.
THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 19))


@dataclass(frozen=True)
class PhotoCounts:
    """One photo counted at every threshold of `thresholds`."""

    name: str
    true_count: int
    counted: tuple[int, ...]  # per threshold
    matched: tuple[int, ...] | None  # per threshold; None when only a count is known (counts file)


@dataclass(frozen=True)
class Scores:
    """Figures of a set of photos at one threshold (fractions, not percent)."""

    threshold: float
    count_mape: float
    worst_photo: str
    worst_error: float
    precision: float | None
    recall: float | None
    photos: int

    def as_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "count_mape": round(self.count_mape, 4),
                "worst_photo": self.worst_photo, "worst_error": round(self.worst_error, 4),
                "precision": None if self.precision is None else round(self.precision, 4),
                "recall": None if self.recall is None else round(self.recall, 4), "photos": self.photos}


def count_error(counted: int, true: int) -> float:
    """|counted - true| / true; a photo with no plants scores 1 for any plant found."""
    return abs(counted - true) / true if true else float(counted != 0)


def match_count(found: np.ndarray, labels: np.ndarray) -> int:
    """How many `found` boxes (N, 4) match `labels` boxes (M, 4) one-to-one by centre distance.

    A pair matches when the centres are at most half the label's side sqrt(w x h) apart; the closest
    pairs are taken first.
    """
    if len(found) == 0 or len(labels) == 0:
        return 0
    fc = (found[:, :2] + found[:, 2:]) / 2
    lc = (labels[:, :2] + labels[:, 2:]) / 2
    reach = np.sqrt((labels[:, 2] - labels[:, 0]) * (labels[:, 3] - labels[:, 1])) / 2
    distance = np.linalg.norm(fc[:, None, :] - lc[None, :, :], axis=2)
    rows, cols = np.nonzero(distance <= reach[None, :])
    order = np.argsort(distance[rows, cols], kind="stable")
    used_found, used_labels = set(), set()
    for r, c in zip(rows[order].tolist(), cols[order].tolist(), strict=True):
        if r not in used_found and c not in used_labels:
            used_found.add(r)
            used_labels.add(c)
    return len(used_found)


def score(results: list[PhotoCounts], index: int, thresholds: tuple[float, ...]) -> Scores:
    """Figures at thresholds[index]."""
    errors = [count_error(r.counted[index], r.true_count) for r in results]
    worst = int(np.argmax(errors))
    boxed = [r for r in results if r.matched is not None]
    precision = recall = None
    if boxed:
        matched = sum(r.matched[index] for r in boxed if r.matched is not None)
        found, labelled = sum(r.counted[index] for r in boxed), sum(r.true_count for r in boxed)
        precision = matched / found if found else 0.0
        recall = matched / labelled if labelled else 0.0
    return Scores(thresholds[index], float(np.mean(errors)), results[worst].name, errors[worst], precision, recall,
                  len(results))


def choose_threshold(results: list[PhotoCounts], thresholds: tuple[float, ...] = THRESHOLDS) -> Scores:
    """The threshold with the lowest count MAPE.

    On a tie, the middle of the longest run of neighbouring thresholds that share it (the upper middle
    of an even run): a few held-out photos, each counted right over a wide range, would otherwise put
    the threshold at the range's edge, where the next photo's weaker plants are already lost.
    """
    if not results:
        raise ValueError("no photos to calibrate on")
    candidates = [score(results, i, thresholds) for i in range(len(thresholds))]
    best = min(round(c.count_mape, 6) for c in candidates)
    runs: list[list[int]] = []
    for index, candidate in enumerate(candidates):
        if round(candidate.count_mape, 6) != best:
            continue
        if runs and runs[-1][-1] == index - 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    longest = max(runs, key=len)  # the first of equally long runs
    return candidates[longest[len(longest) // 2]]


CountAt = Callable[[np.ndarray, list[float]], list[np.ndarray]]


def count_photo(name: str, image_rgb: np.ndarray, count_at: CountAt, thresholds: tuple[float, ...],
                labels: LabelledPhoto | None = None, true_count: int | None = None,
                counted_classes: tuple[int, ...] = (0,)) -> PhotoCounts:
    """Count one photo at every threshold. `count_at(image, thresholds)` returns (N, 4) boxes per threshold.

    With `labels`, the labelled plants of `counted_classes` are the truth and matches are counted;
    otherwise `true_count` (from a counts file) is.
    """
    found = count_at(image_rgb, list(thresholds))
    if labels is not None:
        truth = labels.boxes[np.isin(labels.classes, counted_classes)]
        return PhotoCounts(name, len(truth), tuple(len(f) for f in found),
                           tuple(match_count(f, truth) for f in found))
    if true_count is None:
        raise ValueError(f"{name}: neither labels nor a count")
    return PhotoCounts(name, true_count, tuple(len(f) for f in found), None)
