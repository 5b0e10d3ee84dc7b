"""`demeter eval --labels` / `--counts`: plant counts against a grower's labels, at every threshold.

Each photo is counted once through the pipeline's functions (container segmentation, sliced
detection, merging; or the whole photo as one region) at every threshold of
`app.ml.calibration.THRESHOLDS` plus the one in use, and scored against:
- labels (`app.ml.labels`: YOLO or COCO, boxes or points): count MAPE, worst photo, precision and
  recall of matched plants;
- or a counts file (`file_name,count`): count MAPE and worst photo only.

The report gives the figures at the threshold in use and at the threshold that minimises the count
error; `--write-card` stores that threshold and its figures in the card of the model evaluated
(the photos must be held out from its training for the figures to mean anything).

`--class NAME` scores one class of the detector instead of the counted ones (DETECTION_COUNT_CLASSES):
its boxes against the labels of the same name, with the same matching (e.g. `empty_cell`, which a
detector may learn but the pipeline never counts).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.config import Settings
from app.ml.calibration import THRESHOLDS, PhotoCounts, Scores, choose_threshold, count_photo, score
from app.ml.cards import ModelCard, card_path
from app.ml.images import decode_rgb
from app.ml.labels import (
    IMAGE_SUFFIXES,
    LabelSet,
    read_counts,
    read_labels,
    select_classes,
    with_point_boxes,
)
from app.ml.training import FALLBACK_PLANT_SIDE


@dataclass(frozen=True)
class LabelEvaluation:
    model: str  # card id of the detector evaluated
    classes: tuple[str, ...]  # the label classes scored (the counted classes, or the one of --class)
    in_use: Scores  # at the threshold the model runs at
    best: Scores  # at the threshold with the lowest count error
    photos: list[PhotoCounts]
    thresholds: tuple[float, ...]

    def as_dict(self) -> dict[str, Any]:
        index = self.thresholds.index(self.in_use.threshold)
        return {"model": self.model, "classes": list(self.classes), "in_use": self.in_use.as_dict(),
                "best": self.best.as_dict(),
                "photos": [{"photo": p.name, "true": p.true_count, "counted": p.counted[index],
                            "matched": None if p.matched is None else p.matched[index]} for p in self.photos]}


def _counted_labels(data: Path, settings: Settings, card: ModelCard, plant_side: float | None) -> LabelSet:
    labels = read_labels(data)
    counted = [c for c in labels.classes if c in settings.detection_count_classes]
    if not counted:
        raise ValueError(f"none of the counted classes ({', '.join(settings.detection_count_classes)}) is "
                         f"labelled in {data} (labels: {', '.join(labels.classes)})")
    labels = select_classes(labels, counted)
    sides = labels.box_sides()
    side = plant_side or (float(np.median(sides)) if len(sides) else None) or (
        card.plant_side.p50 if card.plant_side is not None else FALLBACK_PLANT_SIDE)
    return with_point_boxes(labels, side)


def _photos_of(data: Path, names: list[str]) -> dict[str, Path]:
    folder = data / "images" if (data / "images").is_dir() else data
    found = {p.name: p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(f"photos of the counts file not in {folder}: {', '.join(missing[:5])}")
    return found


def scoring_one_class(settings: Settings, name: str) -> Settings:
    """`settings` counting the detector class `name` alone (`--class`).

    Raises ValueError when the detector has no class of that name: a one-class detector would
    otherwise count its own class under any name (`app.ml.registry.counted_class_ids`).
    """
    from app.ml.registry import ModelRegistry

    names = [str(n) for n in ModelRegistry(settings).detector().names.values()]
    if name not in names:
        raise ValueError(f"the detector has no class {name} (its classes: {', '.join(names)})")
    return settings.model_copy(update={"detection_count_classes": [name]})


def evaluate_labels(data: Path, settings: Settings, counts_file: Path | None = None, whole_photo: bool = False,
                    plant_side: float | None = None, progress: bool = True,
                    detector_class: str | None = None) -> LabelEvaluation:
    """Count every labelled photo of `data` with the detector of `settings` (see the module doc).

    `detector_class` scores that class of the detector against the labels of the same name instead of
    the counted classes; ValueError when the detector or the labels lack it.
    """
    from app.ml.pipeline import pipeline_counter
    from app.ml.registry import ModelRegistry

    if detector_class is not None:
        settings = scoring_one_class(settings, detector_class)
    registry = ModelRegistry(settings)
    card = registry_card(settings)
    thresholds = tuple(sorted({*THRESHOLDS, round(settings.detection_confidence, 4)}))
    count_at = pipeline_counter(registry, whole_photo=whole_photo)
    results = []
    if counts_file is not None:
        counts = read_counts(counts_file)
        paths = _photos_of(data, list(counts))
        items: list[tuple[str, Path, Any]] = [(name, paths[name], true) for name, true in counts.items()]
        classes = tuple(settings.detection_count_classes)
    else:
        labels = _counted_labels(data, settings, card, plant_side)
        classes = labels.classes
        items = [(p.name, p.image, p) for p in labels.photos]
    for number, (name, path, truth) in enumerate(items, 1):
        image = decode_rgb(path.read_bytes())
        if isinstance(truth, int):
            results.append(count_photo(name, image, count_at, thresholds, true_count=truth))
        else:
            results.append(count_photo(name, image, count_at, thresholds, labels=truth))
        if progress:
            print(f"counted {number}/{len(items)} {name}", file=sys.stderr, flush=True)
    in_use = score(results, thresholds.index(round(settings.detection_confidence, 4)), thresholds)
    return LabelEvaluation(card.id, classes, in_use, choose_threshold(results, thresholds), results, thresholds)


def registry_card(settings: Settings) -> ModelCard:
    """The card of the detector in `settings` (the default card when it has none)."""
    from app.ml.cards import read_card

    weights = Path(settings.detection_weights)
    return read_card(card_path(weights), weights, "detect")


def write_threshold(settings: Settings, evaluation: LabelEvaluation, data: Path) -> Path:
    """Store the best threshold and its figures in the evaluated model's card. Raises ValueError without one."""
    weights = Path(settings.detection_weights)
    card = registry_card(settings)
    if not card.known:
        raise ValueError(f"{weights} has no model card of its own to write the threshold into")
    document = dict(card.document)
    document["confidence_threshold"] = evaluation.best.threshold
    document.setdefault("evaluation", {})["calibration"] = {"data": str(data), **evaluation.best.as_dict()}
    path = card_path(weights)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def print_report(evaluation: LabelEvaluation) -> None:
    index = evaluation.thresholds.index(evaluation.in_use.threshold)
    print(f"{'photo':<32} {'true':>6} {'counted':>8} {'error':>7}")
    for p in evaluation.photos:
        counted = p.counted[index]
        error = abs(counted - p.true_count) / p.true_count if p.true_count else float(counted != 0)
        print(f"{p.name[:32]:<32} {p.true_count:>6} {counted:>8} {error:>7.1%}")
    print(f"\nmodel {evaluation.model}, classes {', '.join(evaluation.classes)}")
    for label, s in (("in use", evaluation.in_use), ("best", evaluation.best)):
        pr = "" if s.precision is None else f"  precision {s.precision:.3f}  recall {s.recall:.3f}"
        print(f"{label:>6}: threshold {s.threshold:.2f}  count MAPE {s.count_mape:.2%}  worst photo "
              f"{s.worst_photo} {s.worst_error:.2%}{pr}")
