"""A grower's labels: YOLO and COCO, boxes and points, read into one shape; counts files; class selection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.ml.labels import (
    LabelError,
    data_digest,
    read_counts,
    read_labels,
    select_classes,
    with_point_boxes,
)


def _photo(path: Path, width: int = 400, height: int = 300) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (90, 70, 50)).save(path)


def test_yolo_boxes_and_points_in_photo_pixels(tmp_path: Path) -> None:
    _photo(tmp_path / "images" / "a.jpg")
    _photo(tmp_path / "images" / "unlabelled.jpg")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.1 0.2\n1 0.25 0.75\n\n")
    (tmp_path / "classes.txt").write_text("plant\nempty_cell\n")

    labels = read_labels(tmp_path)

    assert labels.source == "yolo" and labels.classes == ("plant", "empty_cell")
    assert [p.name for p in labels.photos] == ["a.jpg"]  # no label file: unlabelled, skipped
    photo = labels.photos[0]
    np.testing.assert_allclose(photo.boxes, [[180, 120, 220, 180], [100, 225, 100, 225]])
    assert photo.classes.tolist() == [0, 1] and photo.points.tolist() == [False, True]


def test_coco_boxes_keypoints_and_zero_size_boxes_are_points(tmp_path: Path) -> None:
    _photo(tmp_path / "images" / "b.jpg", 2048, 1024)
    coco = {"images": [{"id": 7, "file_name": "b.jpg", "width": 2048, "height": 1024}],
            "categories": [{"id": 3, "name": "plant"}, {"id": 1, "name": "tray"}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [10, 20, 30, 40]},
                            {"id": 2, "image_id": 7, "category_id": 3, "bbox": [100, 100, 0, 0]},
                            {"id": 3, "image_id": 7, "category_id": 3, "keypoints": [0, 0, 0, 50, 60, 2]},
                            {"id": 4, "image_id": 7, "category_id": 1, "bbox": [0, 0, 500, 500]}]}
    (tmp_path / "labels.json").write_text(json.dumps(coco))

    labels = read_labels(tmp_path)

    assert labels.source == "coco" and labels.classes == ("tray", "plant")  # category id order
    photo = labels.photos[0]
    assert photo.points.tolist() == [False, True, True, False]
    np.testing.assert_allclose(photo.boxes[:3], [[10, 20, 40, 60], [100, 100, 100, 100], [50, 60, 50, 60]])

    plants = with_point_boxes(select_classes(labels, ["plant"]), plant_side=20.0)
    assert plants.classes == ("plant",) and plants.labels == 3
    # 20 px at a 2048 px long side is 20 px on this 2048 px photo, centred on the click, clipped to the photo.
    np.testing.assert_allclose(plants.photos[0].boxes, [[10, 20, 40, 60], [90, 90, 110, 110], [40, 50, 60, 70]])


def test_point_boxes_scale_with_the_photo(tmp_path: Path) -> None:
    _photo(tmp_path / "images" / "c.jpg", 4096, 3072)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "c.txt").write_text("0 0.0 0.5\n")

    photo = with_point_boxes(read_labels(tmp_path), plant_side=20.0).photos[0]

    np.testing.assert_allclose(photo.boxes, [[0, 1516, 20, 1556]])  # 40 px wide, clipped at the left edge


def test_unusable_labels_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LabelError, match="no labelled photos"):
        read_labels(tmp_path)
    _photo(tmp_path / "images" / "d.jpg")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "d.txt").write_text("0 0.5 0.5 0.1\n")
    with pytest.raises(LabelError, match=r"d\.txt:1"):
        read_labels(tmp_path)
    (tmp_path / "labels" / "d.txt").write_text("3 0.5 0.5 0.1 0.1\n")
    with pytest.raises(LabelError, match="class 3"):
        read_labels(tmp_path)
    (tmp_path / "labels" / "d.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(LabelError, match="no class weed"):
        select_classes(read_labels(tmp_path), ["weed"])


def test_counts_file_and_data_digest(tmp_path: Path) -> None:
    (tmp_path / "counts.csv").write_text("file_name,count\nimages/a.jpg,12\nb.jpg,0\n")
    assert read_counts(tmp_path / "counts.csv") == {"a.jpg": 12, "b.jpg": 0}

    _photo(tmp_path / "images" / "e.jpg")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "e.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    before = data_digest(read_labels(tmp_path))
    (tmp_path / "labels" / "e.txt").write_text("0 0.5 0.5 0.1 0.2\n")
    assert data_digest(read_labels(tmp_path)) != before
