"""Detections as COCO and YOLO, in the shapes CVAT's and Label Studio's importers read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from app.ml.labels import read_labels
from app.review import ReviewRegion, coco_detections, yolo_detections

PLANTS = [(10.0, 20.0, 40.0, 60.0, 0.91234), (100.5, 100.0, 120.5, 130.0, 0.5)]


def test_coco_has_what_cvat_and_label_studio_require() -> None:
    region = ReviewRegion("tray", (0, 0, 200, 150), [[0, 0], [200, 0], [200, 150], [0, 150]], 0.97)

    coco = coco_detections(image_id=7, file_name="bench.jpg", width=400, height=300, plants=PLANTS, regions=[region])

    assert coco["images"] == [{"id": 7, "file_name": "bench.jpg", "width": 400, "height": 300}]
    assert coco["categories"][0] == {"id": 1, "name": "plant", "supercategory": "plant"}
    assert {c["id"] for c in coco["categories"]} == {1, 2}  # ids from 1: Datumaro reads 0 as "no label"
    ids = [a["id"] for a in coco["annotations"]]
    assert ids == sorted(set(ids)) and all(isinstance(i, int) for i in ids)
    for annotation in coco["annotations"]:
        # Datumaro's coco_instances parser requires these fields and types.
        assert isinstance(annotation["iscrowd"], int) and isinstance(annotation["category_id"], int)
        assert isinstance(annotation["segmentation"], list) and len(annotation["bbox"]) == 4
        assert isinstance(annotation["score"], float)
    plant = coco["annotations"][0]
    assert plant["bbox"] == [10.0, 20.0, 30.0, 40.0] and plant["segmentation"] == [] and plant["score"] == 0.912
    tray = coco["annotations"][-1]
    assert tray["category_id"] == 2 and tray["segmentation"] == [[0.0, 0.0, 200.0, 0.0, 200.0, 150.0, 0.0, 150.0]]


def test_exports_read_back_as_training_labels(tmp_path: Path) -> None:
    """The review loop: exported detections are labels `demeter train` reads, box for box."""
    import json

    Image.new("RGB", (400, 300)).save(tmp_path / "bench.jpg")
    coco_dir, yolo_dir = tmp_path / "coco", tmp_path / "yolo"
    (coco_dir / "images").mkdir(parents=True)
    (yolo_dir / "images").mkdir(parents=True)
    (yolo_dir / "labels").mkdir()
    for folder in (coco_dir, yolo_dir):
        (folder / "images" / "bench.jpg").write_bytes((tmp_path / "bench.jpg").read_bytes())
    (coco_dir / "annotations.json").write_text(json.dumps(
        coco_detections(image_id=1, file_name="bench.jpg", width=400, height=300, plants=PLANTS)))
    (yolo_dir / "labels" / "bench.txt").write_text(yolo_detections(width=400, height=300, plants=PLANTS))
    (yolo_dir / "classes.txt").write_text("plant\n")

    for folder in (coco_dir, yolo_dir):
        labels = read_labels(folder)
        assert labels.classes == ("plant",)
        np.testing.assert_allclose(labels.photos[0].boxes, [p[:4] for p in PLANTS], atol=1e-3)
