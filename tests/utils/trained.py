"""A model directory as `demeter train` writes it, without training: the shipped weights and a card of its own."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from app.config import PROJECT_ROOT
from app.ml.cards import card_path, weights_digest


def trained_model(root: Path, name: str, threshold: float) -> Path:
    """Write `root/name/plant_det.pt` (a copy of the shipped detector) and its card with `threshold`; the weights."""
    weights = root / name / "plant_det.pt"
    weights.parent.mkdir(parents=True)
    shutil.copyfile(PROJECT_ROOT / "models" / "plant_det.pt", weights)
    digest = weights_digest(weights)
    card_path(weights).write_text(json.dumps({
        "id": f"{name}@{digest[:12]}", "model": name, "task": "detect", "weights_sha256": digest,
        "classes": ["plant"], "counted_classes": ["plant"], "confidence_threshold": threshold}))
    return weights
