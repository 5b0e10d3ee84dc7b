"""Which plant detector the workers use: the shipped one or a model directory written by `demeter train`.

A trained model is a directory `TRAINED_MODELS_DIR/<name>/` holding `plant_det.pt` and its model card
`plant_det.card.json` (app.ml.cards). The model in use is, in order: `DETECTION_MODEL` (a setting, for
deployments that pin it), the name in `TRAINED_MODELS_DIR/ACTIVE` (written by `demeter models use`),
else the weights of `DETECTION_WEIGHTS` (the shipped detector).

`resolve_detection` turns that choice into settings: the model's weights, and from its card the
calibrated confidence threshold, the slicing it was trained with (plant scale) and the classes it
counts, each unless that setting was given explicitly in the environment. A worker resolves it once,
when it starts (`app.ml.registry.get_registry`), so a recycled or restarted worker picks up a new choice.
Reads only small files; imports no model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.config import Settings
from app.ml.cards import ModelCard, card_path, read_card

ACTIVE_FILE = "ACTIVE"
SHIPPED = "shipped"  # the name of DETECTION_WEIGHTS in `demeter models list` and `use`
WEIGHTS_NAME = "plant_det.pt"


class UnknownModel(LookupError):
    """No trained model directory of that name (or it holds no weights)."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    weights: Path
    card: ModelCard

    def summary(self) -> dict[str, Any]:
        held_out = self.card.document.get("evaluation", {}).get("held_out_photos")
        held_out = held_out if isinstance(held_out, dict) else {}  # the shipped cards point to models/README.md
        return {"name": self.name, "card_id": self.card.id, "weights": str(self.weights),
                "classes": list(self.card.classes), "confidence_threshold": self.card.confidence_threshold,
                "held_out_count_mape": held_out.get("count_mape"), "held_out_photos": held_out.get("photos")}


def _entry(name: str, weights: Path) -> ModelEntry:
    return ModelEntry(name, weights, read_card(card_path(weights), weights, "detect"))


def trained_models(settings: Settings) -> list[ModelEntry]:
    """Every model directory under TRAINED_MODELS_DIR that holds weights, newest name last."""
    root = settings.trained_models_dir
    if not root.is_dir():
        return []
    return [_entry(d.name, d / WEIGHTS_NAME) for d in sorted(root.iterdir()) if (d / WEIGHTS_NAME).is_file()]


def find_model(settings: Settings, name: str) -> ModelEntry:
    """The trained model `name`, or the shipped detector for `shipped`. Raises UnknownModel."""
    if name == SHIPPED:
        return _entry(SHIPPED, Path(settings.detection_weights))
    weights = settings.trained_models_dir / name / WEIGHTS_NAME
    if "/" in name or name.startswith(".") or not weights.is_file():
        known = ", ".join([SHIPPED] + [m.name for m in trained_models(settings)])
        raise UnknownModel(f"no model {name!r} in {settings.trained_models_dir} (known: {known})")
    return _entry(name, weights)


def active_name(settings: Settings) -> str:
    """DETECTION_MODEL, else the name `demeter models use` wrote, else `shipped`."""
    if settings.detection_model:
        return settings.detection_model
    active = settings.trained_models_dir / ACTIVE_FILE
    name = active.read_text().strip() if active.is_file() else ""
    return name or SHIPPED


def use_model(settings: Settings, name: str) -> ModelEntry:
    """Make `name` the model workers load at their next start (`shipped` goes back to DETECTION_WEIGHTS).

    Written atomically (rename), so a worker starting meanwhile reads the old or the new name, never half.
    Raises UnknownModel.
    """
    entry = find_model(settings, name)
    root = settings.trained_models_dir
    root.mkdir(parents=True, exist_ok=True)
    temporary = root / f".{ACTIVE_FILE}.{os.getpid()}"
    temporary.write_text(("" if name == SHIPPED else name) + "\n")
    temporary.replace(root / ACTIVE_FILE)
    return entry


def training_base(settings: Settings, name: str | None = None) -> tuple[ModelEntry, Settings]:
    """The detector `demeter train` starts from, and the settings to train it at (`resolve_detection`).

    `name`: a trained model's name or `shipped` (DETECTION_WEIGHTS); None: the model in use
    (`active_name`), so a second training after `demeter models use` continues the first unless a
    name is given. Raises UnknownModel.
    """
    if name is not None and not name.strip():
        raise UnknownModel("--base needs a model's name (demeter models list) or `shipped`, not an empty one")
    name = name or active_name(settings)
    return find_model(settings, name), resolve_detection(settings, name)


def resolve_detection(settings: Settings, name: str | None = None) -> Settings:
    """Settings with the detector `name` (default: the one in use), its threshold, slicing and counted classes.

    See the module doc for the order. Raises UnknownModel when the chosen name does not exist: a worker
    must not silently count with another model than the one asked for.
    """
    name = name or active_name(settings)
    if name == SHIPPED:
        return settings
    entry = find_model(settings, name)
    document, explicit = entry.card.document, settings.model_fields_set
    update: dict[str, Any] = {"detection_weights": str(entry.weights)}
    if entry.card.confidence_threshold is not None and "detection_confidence" not in explicit:
        update["detection_confidence"] = entry.card.confidence_threshold
    slicing = document.get("slicing", {})
    if slicing and "scale_down" not in slicing:  # trained when slices never shrank: it counts as it was measured
        slicing = {**slicing, "scale_down": False}
    for key, field in (("imgsz", "detection_imgsz"), ("slice_size", "slice_size"),
                       ("reference_side", "slice_reference_side"), ("overlap", "slice_overlap"),
                       ("scale_down", "slice_scale_down")):
        if key in slicing and field not in explicit:
            update[field] = slicing[key]
    if document.get("counted_classes") and "detection_count_classes" not in explicit:
        update["detection_count_classes"] = list(document["counted_classes"])
    return settings.model_copy(update=update)
