"""`demeter export-detections`: a counted photo's plants from the database as COCO JSON and YOLO txt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main
from app.db import repository
from app.db.session import db_session
from app.records import RegionProposal, encode_detections


def test_export_detections_of_a_stored_photo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    with db_session() as db:
        photo, _ = repository.create_photo(db, storage_key="review/bench.jpg", content_type="image/jpeg", width=400,
                                           height=300, size_bytes=1, original_filename="bench.jpg")
        photo_id, photo_uuid = photo.id, str(photo.uuid)
        repository.save_regions(db, photo_id=photo_id, proposals=[
            RegionProposal("tray", 0.9, (0, 0, 200, 150), [[0, 0], [200, 0], [200, 150], [0, 150]])])
        boxes = np.array([[10, 20, 40, 60], [50, 50, 70, 80]], np.float32)
        repository.write_counts(db, photo_id=photo_id, results=[
            {"region_index": 0, "count": 2, "mean_confidence": 0.7,
             "detections": encode_detections(boxes, np.array([0.9, 0.5], np.float32))}])

    assert main(["export-detections", photo_uuid, "--format", "coco", "--regions"]) == 0
    coco = json.loads(capsys.readouterr().out)
    assert coco["images"][0]["file_name"] == "bench.jpg"
    plants = [a for a in coco["annotations"] if a["category_id"] == 1]
    assert [a["bbox"] for a in plants] == [[10.0, 20.0, 30.0, 40.0], [50.0, 50.0, 20.0, 30.0]]
    assert [c["name"] for c in coco["categories"]] == ["plant", "tray"]

    assert main(["export-detections", str(photo_id), "--format", "yolo", "--out", str(tmp_path / "b.txt")]) == 0
    assert (tmp_path / "b.txt").read_text().splitlines() == ["0 0.062500 0.133333 0.075000 0.133333",
                                                             "0 0.150000 0.216667 0.050000 0.100000"]
    assert main(["export-detections", "999999"]) == 2
    assert main(["export-detections", "0b6f3c2e-5a1d-4c1e-9f00-2d8c1a7e4b11"]) == 2  # no such photo
    assert main(["export-detections", "bench-12"]) == 2  # neither a UUID nor an id
