"""The compact form in which a region's plants travel from its child task to aggregation."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from app.records import decode_detections, detection_rows, encode_detections


def test_detections_survive_the_trip_through_json() -> None:
    boxes = np.array([[10.04, 20.0, 30.5, 41.26], [1500.0, 999.9, 1520.3, 1019.7]], np.float32)
    scores = np.array([0.91234, 0.5], np.float32)

    carried = json.loads(json.dumps({"detections": encode_detections(boxes, scores)}))["detections"]

    assert detection_rows(carried) == [(10.0, 20.0, 30.5, 41.3, 0.912), (1500.0, 999.9, 1520.3, 1019.7, 0.5)]


@pytest.mark.parametrize("empty", ["", None])
def test_no_detections_is_no_rows(empty: str | None) -> None:
    assert detection_rows(empty) == []
    assert encode_detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32)) == ""


def test_a_damaged_payload_is_an_error_not_fewer_plants() -> None:
    with pytest.raises(ValueError, match="not whole rows"):
        decode_detections(base64.b64encode(b"\0" * 21).decode())
