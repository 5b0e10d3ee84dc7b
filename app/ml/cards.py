"""Model cards: what a model was trained on and what its detections looked like there.

A card is a small JSON file beside the weights (`plant_det.pt` -> `plant_det.card.json`), written by
`scripts/make_model_cards.py` from the model's own training data. The plausibility checks
(`app.ml.plausibility`) compare every photo's detections with it, and each session records the ids
of the cards that produced its counts (provenance).

Weights without a card, or with a card written for other weights (its `weights_sha256` differs),
get `default_card`: it knows nothing of the training data, so every photo it counts is flagged.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CARD_SUFFIX = ".card.json"


@dataclass(frozen=True)
class Spread:
    """Percentiles of one measured quantity over the training data."""

    p1: float
    p5: float
    p50: float
    p95: float
    p99: float

    @classmethod
    def of(cls, values: Any) -> Spread:
        import numpy as np

        p = np.percentile(np.asarray(values, dtype=np.float64), [1, 5, 50, 95, 99])
        return cls(*(round(float(v), 3) for v in p))

    def as_dict(self) -> dict[str, float]:
        return {"p1": self.p1, "p5": self.p5, "p50": self.p50, "p95": self.p95, "p99": self.p99}


@dataclass(frozen=True)
class ModelCard:
    """The parts of a card the service reads; `document` is the whole JSON (training data, evaluation)."""

    id: str  # "<model name>@<first 12 hex digits of the weights' SHA-256>"; "unknown:<file>" without a card
    known: bool  # False for the default card of weights without their own
    task: str  # "detect" | "segment"
    classes: tuple[str, ...]
    reference_long_side: int  # sizes below are in pixels of a photo scaled to this long side
    confidence_threshold: float | None  # the detection threshold the evaluation figures were measured at
    plant_side: Spread | None  # detector: sqrt(box width x height) of the plants it was trained on
    plant_density: Spread | None  # detector: plants per megapixel of container box (at the reference side)
    max_plant_overlap: float | None  # detector: largest IoU two training plants had
    document: dict[str, Any]


def card_path(weights: Path) -> Path:
    """Where the card of a weights file lives: beside it, `.card.json` instead of its suffix."""
    return weights.with_name(weights.stem + CARD_SUFFIX)


def card_uri(weights_uri: str) -> str:
    """The card's location for a weights path or s3:// URI."""
    head, _, name = weights_uri.rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return f"{head}/{stem}{CARD_SUFFIX}" if head else f"{stem}{CARD_SUFFIX}"


def weights_digest(weights: Path) -> str:
    return hashlib.sha256(weights.read_bytes()).hexdigest()


def default_card(weights_name: str, task: str) -> ModelCard:
    """The conservative card of weights that carry none: nothing is known, so nothing is trusted."""
    return ModelCard(id=f"unknown:{weights_name}", known=False, task=task, classes=(), reference_long_side=2048,
                     confidence_threshold=None, plant_side=None, plant_density=None, max_plant_overlap=None,
                     document={})


def _spread(document: dict[str, Any], key: str) -> Spread | None:
    value = document.get(key)
    return Spread(**{k: float(value[k]) for k in ("p1", "p5", "p50", "p95", "p99")}) if value else None


def parse_card(document: dict[str, Any]) -> ModelCard:
    """A card's JSON -> ModelCard. Raises KeyError/TypeError/ValueError on a malformed card."""
    stats = document.get("detections", {})
    return ModelCard(
        id=str(document["id"]),
        known=True,
        task=str(document["task"]),
        classes=tuple(str(c) for c in document["classes"]),
        reference_long_side=int(document.get("reference_long_side", 2048)),
        confidence_threshold=(float(document["confidence_threshold"])
                              if document.get("confidence_threshold") is not None else None),
        plant_side=_spread(stats, "plant_side"),
        plant_density=_spread(stats, "plant_density"),
        max_plant_overlap=float(stats["max_plant_overlap"]) if "max_plant_overlap" in stats else None,
        document=document,
    )


def read_card(card_file: Path | None, weights: Path, task: str) -> ModelCard:
    """The card in `card_file` when it exists, is well formed and was written for these weights; else the default."""
    if card_file is None or not card_file.exists():
        return default_card(weights.name, task)
    try:
        document = json.loads(card_file.read_text())
        card = parse_card(document)
    except (OSError, ValueError, KeyError, TypeError):
        return default_card(weights.name, task)
    if document.get("weights_sha256") != weights_digest(weights):
        return default_card(weights.name, task)  # a card of other weights says nothing about these
    return card


def write_card(document: dict[str, Any], weights: Path) -> Path:
    """Write a card beside its weights (pretty JSON, keys in a stable order)."""
    path = card_path(weights)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path
