"""Model cards: read beside their weights, bound to them, and conservative when missing."""

from __future__ import annotations

import json
from pathlib import Path

from app.config import PROJECT_ROOT, Settings
from app.ml.cards import card_path, card_uri, read_card, weights_digest
from app.ml.registry import ModelRegistry


def _weights(tmp_path: Path, content: bytes = b"weights") -> Path:
    weights = tmp_path / "plant_det.pt"
    weights.write_bytes(content)
    return weights


def _card(weights: Path, **overrides: object) -> dict[str, object]:
    return {"id": "plant_det@abc", "task": "detect", "classes": ["plant"], "confidence_threshold": 0.35,
            "weights_sha256": weights_digest(weights),
            "detections": {"plant_side": {"p1": 12, "p5": 15, "p50": 23, "p95": 35, "p99": 38},
                           "max_plant_overlap": 0.28}, **overrides}


def test_a_card_beside_its_weights_is_read(tmp_path: Path) -> None:
    weights = _weights(tmp_path)
    card_path(weights).write_text(json.dumps(_card(weights)))

    card = read_card(card_path(weights), weights, "detect")

    assert (card.known, card.id) == (True, "plant_det@abc")
    assert (card.confidence_threshold, card.max_plant_overlap) == (0.35, 0.28)
    assert card.plant_side is not None and card.plant_side.p99 == 38
    assert card.plant_density is None


def test_weights_without_a_card_get_the_conservative_default(tmp_path: Path) -> None:
    card = read_card(None, _weights(tmp_path), "detect")

    assert (card.known, card.id, card.plant_side) == (False, "unknown:plant_det.pt", None)


def test_a_card_of_other_weights_is_not_believed(tmp_path: Path) -> None:
    weights = _weights(tmp_path)
    card_path(weights).write_text(json.dumps(_card(weights, weights_sha256="0" * 64)))

    assert read_card(card_path(weights), weights, "detect").known is False


def test_a_malformed_card_is_not_believed(tmp_path: Path) -> None:
    weights = _weights(tmp_path)
    card_path(weights).write_text("{not json")

    assert read_card(card_path(weights), weights, "detect").known is False


def test_the_card_lives_beside_a_path_or_an_s3_object() -> None:
    assert card_path(Path("/m/plant_det.pt")) == Path("/m/plant_det.card.json")
    assert card_uri("s3://bucket/models/plant_det.pt") == "s3://bucket/models/plant_det.card.json"


def test_the_shipped_models_carry_their_cards() -> None:
    registry = ModelRegistry(Settings())

    for card, name in ((registry.detection_card(), "plant_det"), (registry.segmentation_card(), "container_seg")):
        assert card.known, card.id
        digest = weights_digest(PROJECT_ROOT / "models" / f"{name}.pt")
        assert card.id == f"{name}@{digest[:12]}"
    assert registry.detection_card().plant_density is not None
