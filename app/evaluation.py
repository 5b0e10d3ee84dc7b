"""Counts against ground truth on a generated, held-out set (`demeter eval`).

Runs the same functions the workers run (`app.ml.pipeline.analyse_photo`) on every
photo of a COCO set written by `demeter synth`, and reports container recall and
precision (box IoU >= 0.5), per-container and per-photo count errors, and the same
photo totals with full-image (unsliced) detection for comparison.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.config import Settings, get_settings
from app.geometry import greedy_match
from app.ml.images import decode_rgb
from app.ml.pipeline import PhotoAnalysis, analyse_photo
from app.ml.registry import ModelRegistry
from app.ml.synthetic import SyntheticContainer, load_ground_truth
from app.progress import ProgressDisplay, Step

MATCH_IOU = 0.5


def match_containers(predicted: list[tuple[float, ...]], truth: list[tuple[float, ...]]) -> list[tuple[int, int]]:
    """Greedy one-to-one matching by IoU >= MATCH_IOU (best pairs first); returns (predicted, truth) index pairs."""
    return greedy_match(predicted, truth, MATCH_IOU)


@dataclass
class PhotoScore:
    file_name: str
    true_count: int
    counted: int
    pct_error: float
    full_image_count: int | None
    full_image_pct_error: float | None
    containers_true: int
    containers_found: int
    containers_matched: int
    container_counts: list[dict[str, int]]
    seconds: float


def full_image_count(image_rgb: np.ndarray, registry: ModelRegistry, imgsz: int) -> int:
    """Plants found by running the detector once over the whole photo, without slices."""
    settings = registry.settings
    result = registry.detector().predict(
        image_rgb[..., ::-1], imgsz=imgsz, conf=settings.detection_confidence, verbose=False, max_det=10000
    )[0]
    return 0 if result.boxes is None else len(result.boxes)


def score_photo(name: str, truth: list[SyntheticContainer], analysis: PhotoAnalysis,
                full_count: int | None, seconds: float) -> PhotoScore:
    true_total = sum(c.count for c in truth)
    matches = match_containers([r.region.bbox for r in analysis.regions], [c.bbox for c in truth])
    per_container = [
        {"true": truth[j].count, "counted": analysis.regions[i].count} for i, j in sorted(matches, key=lambda m: m[1])
    ]
    return PhotoScore(
        file_name=name,
        true_count=true_total,
        counted=analysis.total,
        pct_error=_pct(analysis.total, true_total),
        full_image_count=full_count,
        full_image_pct_error=None if full_count is None else _pct(full_count, true_total),
        containers_true=len(truth),
        containers_found=len(analysis.regions),
        containers_matched=len(matches),
        container_counts=per_container,
        seconds=round(seconds, 3),
    )


def _pct(counted: int, true: int) -> float:
    return abs(counted - true) / true if true else float(counted != 0)


def summarize(scores: list[PhotoScore]) -> dict[str, Any]:
    found = sum(s.containers_found for s in scores)
    matched = sum(s.containers_matched for s in scores)
    summary: dict[str, Any] = {
        "count_mape": round(float(np.mean([s.pct_error for s in scores])), 4),
        "max_abs_pct_error": round(max(s.pct_error for s in scores), 4),
        "container_recall": round(matched / sum(s.containers_true for s in scores), 4),
        "container_precision": round(matched / found, 4) if found else 0.0,
        "seconds_per_photo": round(float(np.mean([s.seconds for s in scores])), 3),
    }
    full = [s.full_image_pct_error for s in scores if s.full_image_pct_error is not None]
    if full:
        summary["full_image_count_mape"] = round(float(np.mean(full)), 4)
    summary["photos"] = [asdict(s) for s in scores]
    return summary


def evaluate(data: Path, compare_full_image: bool = True, full_imgsz: int = 1280,
             progress: ProgressDisplay | None = None, settings: Settings | None = None) -> dict[str, Any]:
    registry = ModelRegistry(settings or get_settings())
    truth_by_name = load_ground_truth(data / "annotations.json")
    scores: list[PhotoScore] = []
    for name, truth in truth_by_name.items():
        if progress is not None:
            progress.update(Step(len(scores), len(truth_by_name)))
        image = decode_rgb((data / "images" / name).read_bytes())
        started = time.perf_counter()
        analysis = analyse_photo(image, registry)  # segmented: the score includes the container finder's
        seconds = time.perf_counter() - started
        full = full_image_count(image, registry, full_imgsz) if compare_full_image else None
        scores.append(score_photo(name, truth, analysis, full, seconds))
    if progress is not None:
        progress.update(Step(len(scores), len(truth_by_name)))
    return summarize(scores)


def print_report(summary: dict[str, Any]) -> None:
    print(f"{'photo':<24} {'true':>6} {'counted':>8} {'error':>7} {'unsliced':>9} {'containers':>11}")
    for p in summary["photos"]:
        unsliced = "-" if p["full_image_count"] is None else f"{p['full_image_pct_error']:.1%}"
        containers = f"{p['containers_matched']}/{p['containers_true']} ({p['containers_found']})"
        print(f"{p['file_name'][:24]:<24} {p['true_count']:>6} {p['counted']:>8} {p['pct_error']:>7.1%} "
              f"{unsliced:>9} {containers:>11}")
    print(f"\ncount MAPE {summary['count_mape']:.2%}  worst photo {summary['max_abs_pct_error']:.2%}  "
          f"container recall {summary['container_recall']:.3f}  precision {summary['container_precision']:.3f}")
    if "full_image_count_mape" in summary:
        print(f"full-image (unsliced) detection: count MAPE {summary['full_image_count_mape']:.2%}")


def main(data: Path, as_json: bool, compare_full_image: bool = True, settings: Settings | None = None) -> int:
    """Progress on stderr (none with --json), then the report on stdout."""
    photos = len(load_ground_truth(data / "annotations.json"))
    with ProgressDisplay("evaluating", photos, "photos", enabled=not as_json) as progress:
        progress.note("loading the models")
        summary = evaluate(data, compare_full_image, progress=progress, settings=settings)
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print_report(summary)
    return 0
