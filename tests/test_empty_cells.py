"""A detector trained on `plant` and `empty_cell` labels (the perlite style labels empty tray cells)
finds both, and with DETECTION_COUNT_CLASSES=plant only the plants are counted.

End to end on the code the workers run: `demeter train --quick --classes plant,empty_cell` writes the
model, `app.ml.catalog.resolve_detection` turns it into the workers' settings, and the sliced engine
(`detect_in_region`) and the counter (`count_region`) run it on a tray of a photo it was not trained on.
A smoke run (four small photos, eight epochs at imgsz 160): the accuracy is not the point
(models/README.md has the measured runs). So small a model gives its few `empty_cell` boxes scores
well under 0.01, so the photo is read at a very low threshold, whole: what is checked is which boxes
count, not how sure the model is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from app.config import Settings
from app.ml.cards import card_path, read_card
from app.ml.catalog import resolve_detection
from app.ml.pipeline import count_region, slice_params
from app.ml.registry import ModelRegistry
from app.ml.sliced import detect_in_region
from app.ml.synthetic import STYLES, render_photo, write_dataset

SMOKE_CONFIDENCE = 0.0003  # the smoke model's `empty_cell` scores reach ~0.004 (measured on these photos)


@pytest.mark.timeout(1200)
def test_learned_empty_cells_are_found_but_not_counted(tmp_path: Path) -> None:
    write_dataset(tmp_path / "perlite", n=4, seed=9600, width=800, height=600, style=STYLES["perlite"])
    code = main(["train", "--data", str(tmp_path / "perlite"), "--quick", "--epochs", "8", "--lr0", "0.01",
                 "--classes", "plant,empty_cell", "--out", str(tmp_path / "models"), "--name", "cells",
                 "--base", "shipped"])
    assert code == 0
    (model_dir,) = (tmp_path / "models").iterdir()
    weights = model_dir / "plant_det.pt"
    card = read_card(card_path(weights), weights, "detect")
    assert card.classes == ("plant", "empty_cell") and card.document["counted_classes"] == ["plant"]

    settings = resolve_detection(Settings(trained_models_dir=tmp_path / "models", detection_count_classes=["plant"],
                                          detection_runtime="torch", device="cpu",
                                          detection_confidence=SMOKE_CONFIDENCE), model_dir.name)
    assert settings.detection_weights == str(weights)
    registry = ModelRegistry(settings)
    photo = render_photo(9705, 800, 600, style=STYLES["perlite"])  # trays with 49, 21 empty cells
    height, width = photo.image.shape[:2]
    whole = (0, 0, width, height)

    found = detect_in_region(registry.tile_detector(), photo.image, whole, slice_params(settings))
    counted = count_region(photo.image, whole, registry)

    assert {0, 1} <= set(found.classes.tolist())  # the engine kept the empty cells it found
    assert len(counted) and set(counted.classes.tolist()) == {0}  # and counted only plants
    empty = found.boxes[found.classes == 1]
    assert not {tuple(b) for b in empty.tolist()} & {tuple(b) for b in np.asarray(counted.boxes).tolist()}
