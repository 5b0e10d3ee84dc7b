"""`demeter train --quick`: labelled photos (boxes and points) in, a versioned model directory out.

A smoke run (four small photos, one epoch at imgsz 160): it proves the machinery end to end, not
the accuracy (models/README.md has the measured runs).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from app.config import PROJECT_ROOT, get_settings
from app.ml.calibration import THRESHOLDS
from app.ml.cards import card_path, read_card, weights_digest
from app.ml.synthetic import write_dataset


def _yolo_with_points(coco_dir: Path, out: Path) -> None:
    """The synthetic COCO set as YOLO txt files, every second plant a point (one click) instead of a box."""
    coco = json.loads((coco_dir / "annotations.json").read_text())
    (out / "images").mkdir(parents=True)
    (out / "labels").mkdir()
    (out / "classes.txt").write_text("plant\n")
    plant = next(c["id"] for c in coco["categories"] if c["name"] == "plant")
    for image in coco["images"]:
        (out / "images" / image["file_name"]).write_bytes((coco_dir / "images" / image["file_name"]).read_bytes())
        w, h = image["width"], image["height"]
        lines = []
        for n, a in enumerate(x for x in coco["annotations"] if x["image_id"] == image["id"]
                              and x["category_id"] == plant):
            x, y, bw, bh = a["bbox"]
            cx, cy = (x + bw / 2) / w, (y + bh / 2) / h
            lines.append(f"0 {cx:.6f} {cy:.6f}" if n % 2 else f"0 {cx:.6f} {cy:.6f} {bw / w:.6f} {bh / h:.6f}")
        (out / "labels" / (Path(image["file_name"]).stem + ".txt")).write_text("\n".join(lines) + "\n")


@pytest.mark.timeout(600)
def test_quick_training_writes_a_model_with_its_card(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_dataset(tmp_path / "coco", n=4, seed=9300, width=800, height=600)
    _yolo_with_points(tmp_path / "coco", tmp_path / "labelled")

    code = main(["train", "--data", str(tmp_path / "labelled"), "--quick", "--out", str(tmp_path / "models"),
                 "--name", "bench", "--base", "shipped"])

    assert code == 0
    (model_dir,) = (tmp_path / "models").iterdir()
    assert model_dir.name.startswith("bench-")
    weights = model_dir / "plant_det.pt"
    card = read_card(card_path(weights), weights, "detect")
    shipped = PROJECT_ROOT / "models" / "plant_det.pt"
    shipped_card = read_card(card_path(shipped), shipped, "detect")
    assert card.document["base_model"] == {"name": "shipped", "weights": "plant_det.pt",
                                           "weights_sha256": weights_digest(shipped), "card_id": shipped_card.id}
    first_line = capsys.readouterr().out.splitlines()[0]
    assert first_line.startswith(f"starting from shipped: {shipped} (sha256 {weights_digest(shipped)[:12]}")
    assert card.known and card.id.startswith(f"{model_dir.name}@") and card.classes == ("plant",)
    assert card.confidence_threshold in THRESHOLDS
    document = card.document
    data = document["training_data"]
    assert data["photos"] == {"train": 3, "held_out": 1, "held_out_names": data["photos"]["held_out_names"]}
    assert data["point_labels"] > 0 and data["labels"] > data["point_labels"]
    # Points became boxes of the size the box labels have (both halves of the same plants).
    assert data["point_box_side"] == pytest.approx(document["detections"]["plant_side"]["p50"], rel=0.2)
    assert data["slices"]["train"] > 0 and data["epochs"] == 1
    # The shipped base learned from synthetic photos: some of them are rehearsed, in the training split only.
    rehearsal = data["rehearsal"]
    assert rehearsal["photos"] == 10 and rehearsal["seeds"] == "1000-1009"
    assert 0 < rehearsal["slices"] <= data["slices"]["train"]
    sliced = get_settings().data_dir / "train-own" / model_dir.name / "data"
    assert len(list((sliced / "train" / "images").glob("rehearsal_*.jpg"))) == rehearsal["slices"]
    assert len(list((sliced / "train" / "labels").glob("rehearsal_*.txt"))) == rehearsal["slices"]
    assert not list((sliced / "val").rglob("rehearsal_*"))
    original = document["evaluation"]["original_style_photos"]
    assert original["photos"] == 1 and original["threshold"] == card.confidence_threshold
    assert document["slicing"]["imgsz"] == 160
    held = document["evaluation"]["held_out_photos"]
    assert held["photos"] == 1 and held["count_mape"] >= 0
    assert np.isfinite(held["count_mape"])

    from ultralytics import YOLO

    assert YOLO(str(weights), task="detect").names == {0: "plant"}
