"""Write the model cards of the shipped models from their synthetic training data.

Renders training photos exactly as scripts/train_models.py does (`render_photo(seed)` at 2048x1536,
seeds from 1000), measures the plants and containers in their ground truth, and writes
`models/plant_det.card.json` and `models/container_seg.card.json` beside the weights, each bound to
its weights by SHA-256. The evaluation figures are the ones in models/README.md.

Usage (from the repository root; ~1 s a photo):
    .venv/bin/python scripts/make_model_cards.py [--photos 40]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.geometry import box_overlap
from app.ml.cards import Spread, weights_digest, write_card
from app.ml.synthetic import CONTAINER_CLASSES, REFERENCE_LONG_SIDE, render_photo

ROOT = Path(__file__).resolve().parents[1]
FIRST_TRAINING_SEED = 1000  # scripts/train_models.py TRAIN_SEEDS
TRAINING_DATA = {
    "source": "app.ml.synthetic.render_photo(seed), 2048x1536, JPEG q90 (scripts/train_models.py)",
    "container_photos": {"train": 160, "train_seeds": "1000-1159", "val": 40, "val_seeds": "1800-1839"},
    "plant_slices": {"train": 2400, "train_seeds": "1000-1199", "train_boxes": 123159, "val": 360,
                     "val_seeds": "1800-1829", "val_boxes": 16780, "slice_px": 320},
    "held_out_seeds": ">= 9000, never used for training",
}


def _max_iou(boxes: np.ndarray) -> float:
    if len(boxes) < 2:
        return 0.0
    iou = box_overlap(boxes[:, None, :], boxes[None, :, :])
    np.fill_diagonal(iou, 0)
    return float(iou.max())


def measure_training_data(photos: int) -> dict[str, Any]:
    """Plant sizes, densities and overlaps, containers per photo, over `photos` training photos."""
    sides, densities, per_photo, max_overlap = [], [], [], 0.0
    digest = hashlib.sha256()
    for seed in range(FIRST_TRAINING_SEED, FIRST_TRAINING_SEED + photos):
        photo = render_photo(seed)
        digest.update(photo.image.tobytes())
        per_photo.append(len(photo.containers))
        for container in photo.containers:
            boxes = np.asarray(container.plants, dtype=np.float64).reshape(-1, 4)
            sides.extend(np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).tolist())
            x1, y1, x2, y2 = container.bbox
            densities.append(len(boxes) / ((x2 - x1) * (y2 - y1) / 1e6))
            max_overlap = max(max_overlap, _max_iou(boxes))
    return {"photos": photos, "seeds": f"{FIRST_TRAINING_SEED}-{FIRST_TRAINING_SEED + photos - 1}",
            "pixels_sha256": digest.hexdigest(), "plants": len(sides), "containers": sum(per_photo),
            "plant_side": Spread.of(sides).as_dict(), "plant_density": Spread.of(densities).as_dict(),
            "max_plant_overlap": round(max_overlap, 3),
            "containers_per_photo": {"min": min(per_photo), "max": max(per_photo)}}


def detector_card(weights: Path, measured: dict[str, Any]) -> dict[str, Any]:
    digest = weights_digest(weights)
    return {
        "id": f"{weights.stem}@{digest[:12]}",
        "model": weights.stem,
        "task": "detect",
        "weights": weights.name,
        "weights_sha256": digest,
        "classes": ["plant"],
        "reference_long_side": REFERENCE_LONG_SIDE,
        "confidence_threshold": 0.35,  # DETECTION_CONFIDENCE, where the held-out counts below were measured
        "training_data": {**TRAINING_DATA, "measured_on": measured["seeds"],
                          "measured_pixels_sha256": measured["pixels_sha256"]},
        "detections": {
            "what": "ground-truth plants of the measured training photos; sizes in px at a 2048 px long side",
            "plants": measured["plants"],
            "containers": measured["containers"],
            "plant_side": measured["plant_side"],
            "plant_density": measured["plant_density"],
            "plant_density_unit": "plants per megapixel of container bounding box",
            "max_plant_overlap": measured["max_plant_overlap"],
        },
        "evaluation": {
            "val_slices": {"slices": 360, "plants": 16780, "precision": 0.983, "recall": 0.983, "mAP50": 0.994,
                           "mAP50-95": 0.838},
            "held_out_photos": "see models/README.md (demeter eval, seeds >= 9000)",
        },
    }


def segmenter_card(weights: Path, measured: dict[str, Any]) -> dict[str, Any]:
    digest = weights_digest(weights)
    return {
        "id": f"{weights.stem}@{digest[:12]}",
        "model": weights.stem,
        "task": "segment",
        "weights": weights.name,
        "weights_sha256": digest,
        "classes": list(CONTAINER_CLASSES),
        "reference_long_side": REFERENCE_LONG_SIDE,
        "confidence_threshold": 0.25,  # SEGMENTATION_CONFIDENCE
        "training_data": {**TRAINING_DATA, "measured_on": measured["seeds"],
                          "measured_pixels_sha256": measured["pixels_sha256"]},
        "containers": {"per_photo": measured["containers_per_photo"]},
        "evaluation": {
            "val_photos": {"photos": 40, "containers": 166, "box_precision": 0.947, "box_recall": 0.936,
                           "box_mAP50": 0.986, "mask_mAP50-95": 0.905},
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=40, help="training photos to measure (from seed 1000)")
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    args = parser.parse_args(argv)
    measured = measure_training_data(args.photos)
    for weights, build in itertools.chain([(args.models / "plant_det.pt", detector_card),
                                           (args.models / "container_seg.pt", segmenter_card)]):
        path = write_card(build(weights, measured), weights)
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    print(f"plant side {measured['plant_side']}, density {measured['plant_density']}, "
          f"max overlap {measured['max_plant_overlap']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
