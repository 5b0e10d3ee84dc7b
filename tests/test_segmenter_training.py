"""`demeter train --segmenter --quick`: labelled trays and beds in, a segmenter the pipeline loads out.

A smoke run (four small photos, one epoch at imgsz 160): it proves the machinery end to end, not the
accuracy. Half the containers are labelled as boxes only, as a grower short of time would.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main
from app.config import PROJECT_ROOT, Settings
from app.ml.cards import card_path, read_card, weights_digest
from app.ml.pipeline import find_regions
from app.ml.registry import ModelRegistry
from app.ml.segmenter_training import label_lines, read_containers
from app.ml.synthetic import render_photo, write_dataset

CLASSES = ("tray", "segment")


def _every_second_container_a_box(coco_file: Path) -> None:
    coco = json.loads(coco_file.read_text())
    containers = [a for a in coco["annotations"] if a["category_id"] in (1, 2)]
    for annotation in containers[::2]:
        annotation["segmentation"] = []
    coco_file.write_text(json.dumps(coco))


def test_labels_become_normalised_outlines(tmp_path: Path) -> None:
    write_dataset(tmp_path, n=1, seed=9800, width=400, height=300)
    _every_second_container_a_box(tmp_path / "annotations.json")

    (photo,) = read_containers(tmp_path, CLASSES)
    coco = json.loads((tmp_path / "annotations.json").read_text())
    boxed = next(a for a in coco["annotations"] if a["category_id"] in (1, 2))

    assert len(photo.outlines) == sum(a["category_id"] in (1, 2) for a in coco["annotations"])  # no plants
    x, y, w, h = boxed["bbox"]
    assert photo.outlines[0] == (boxed["category_id"] - 1, [x, y, x + w, y, x + w, y + h, x, y + h])
    values = [float(v) for line in label_lines(photo) for v in line.split()[1:]]
    assert values and all(0.0 <= v <= 1.0 for v in values)


@pytest.mark.timeout(900)
def test_quick_segmenter_training_writes_a_segmenter_the_pipeline_loads(tmp_path: Path) -> None:
    write_dataset(tmp_path / "coco", n=4, seed=9810, width=640, height=480)
    _every_second_container_a_box(tmp_path / "coco" / "annotations.json")

    code = main(["train", "--segmenter", "--data", str(tmp_path / "coco"), "--quick", "--out", str(tmp_path / "models"),
                 "--name", "beds", "--base", "shipped"])

    assert code == 0
    (model_dir,) = (tmp_path / "models").iterdir()
    weights = model_dir / "container_seg.pt"
    card = read_card(card_path(weights), weights, "segment")
    assert card.known and card.id.startswith(f"{model_dir.name}@") and card.classes == CLASSES
    assert card.document["training_data"]["photos"]["train"] == 3
    shipped = PROJECT_ROOT / "models" / "container_seg.pt"
    assert card.document["base_model"] == {"name": "shipped", "weights": "container_seg.pt",
                                           "weights_sha256": weights_digest(shipped)}
    registry = ModelRegistry(Settings(segmentation_weights=str(weights), device="cpu"))
    assert tuple(registry.segmenter().names.values()) == CLASSES
    regions = find_regions(render_photo(9820, 640, 480).image, registry)
    assert all(r.class_name in CLASSES for r in regions)
