"""Choosing the detector: DETECTION_MODEL, `demeter models use`, and what a model's card sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.config import Settings
from app.ml import catalog
from app.ml.cards import card_path, weights_digest


def _model(root: Path, name: str, threshold: float = 0.15, scale_down: bool | None = None) -> Path:
    weights = root / name / "plant_det.pt"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(name.encode())
    slicing: dict[str, object] = {"slice_size": 400, "reference_side": 2048, "overlap": 0.25, "imgsz": 416}
    if scale_down is not None:
        slicing["scale_down"] = scale_down
    card = {"id": f"{name}@{weights_digest(weights)[:12]}", "model": name, "task": "detect",
            "weights_sha256": weights_digest(weights), "classes": ["plant", "empty_cell"],
            "counted_classes": ["plant"], "confidence_threshold": threshold, "slicing": slicing}
    card_path(weights).write_text(json.dumps(card))
    return weights


def test_shipped_detector_until_a_model_is_chosen(tmp_path: Path) -> None:
    settings = Settings(trained_models_dir=tmp_path)
    assert catalog.active_name(settings) == catalog.SHIPPED
    assert catalog.resolve_detection(settings) is settings


def test_use_writes_the_choice_and_the_card_sets_threshold_slicing_and_classes(tmp_path: Path) -> None:
    weights = _model(tmp_path, "bench-20260101-000000")
    _model(tmp_path, "other")
    settings = Settings(trained_models_dir=tmp_path)

    entry = catalog.use_model(settings, "bench-20260101-000000")

    assert entry.card.known and (tmp_path / "ACTIVE").read_text().strip() == "bench-20260101-000000"
    resolved = catalog.resolve_detection(settings)
    assert resolved.detection_weights == str(weights)
    assert resolved.detection_confidence == 0.15
    assert (resolved.slice_size, resolved.slice_overlap, resolved.detection_imgsz) == (400, 0.25, 416)
    assert resolved.detection_count_classes == ["plant"]
    assert [m.name for m in catalog.trained_models(settings)] == ["bench-20260101-000000", "other"]

    catalog.use_model(settings, catalog.SHIPPED)
    assert catalog.resolve_detection(settings).detection_weights == settings.detection_weights


def test_setting_wins_and_explicit_settings_beat_the_card(tmp_path: Path) -> None:
    _model(tmp_path, "a")
    _model(tmp_path, "b", threshold=0.4)
    catalog.use_model(Settings(trained_models_dir=tmp_path), "a")

    resolved = catalog.resolve_detection(Settings(trained_models_dir=tmp_path, detection_model="b",
                                                  detection_confidence=0.3))

    assert Path(resolved.detection_weights).parent.name == "b"
    assert resolved.detection_confidence == 0.3  # set explicitly: the card's 0.4 does not override it


def test_unknown_models_are_refused(tmp_path: Path) -> None:
    settings = Settings(trained_models_dir=tmp_path, detection_model="gone")
    with pytest.raises(catalog.UnknownModel, match="gone"):
        catalog.resolve_detection(settings)
    with pytest.raises(catalog.UnknownModel):
        catalog.use_model(settings, "../models")


def test_training_starts_from_the_named_base_else_the_model_in_use(tmp_path: Path) -> None:
    weights = _model(tmp_path, "bench-1")
    settings = Settings(trained_models_dir=tmp_path)

    base, trained_at = catalog.training_base(settings)
    assert (base.name, str(base.weights)) == (catalog.SHIPPED, settings.detection_weights)
    assert trained_at is settings

    catalog.use_model(settings, "bench-1")
    base, trained_at = catalog.training_base(settings)
    assert (base.name, base.weights) == ("bench-1", weights)
    assert (trained_at.detection_weights, trained_at.slice_size) == (str(weights), 400)  # at the base's slicing

    base, trained_at = catalog.training_base(settings, catalog.SHIPPED)  # named: not the model in use
    assert (base.name, str(base.weights)) == (catalog.SHIPPED, settings.detection_weights)
    assert (trained_at.detection_weights, trained_at.slice_size) == (settings.detection_weights, settings.slice_size)


def test_an_unknown_training_base_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    _model(tmp_path, "bench-1")
    settings = Settings(trained_models_dir=tmp_path)

    with pytest.raises(catalog.UnknownModel, match=r"no model 'bench-2' .*\(known: shipped, bench-1\)"):
        catalog.training_base(settings, "bench-2")
    with pytest.raises(catalog.UnknownModel):
        catalog.training_base(settings, str(tmp_path / "bench-1" / "plant_det.pt"))  # a name, not a path
    with pytest.raises(catalog.UnknownModel, match="not an empty one"):
        catalog.training_base(settings, "")  # not the model in use by accident


def test_a_card_from_before_shrinking_slices_keeps_slices_that_never_shrink(tmp_path: Path) -> None:
    """Its threshold was chosen on photos sliced the old way, so it keeps counting that way."""
    _model(tmp_path, "old")
    _model(tmp_path, "new", scale_down=True)
    _model(tmp_path, "crops", scale_down=False)

    def scale_down(name: str, **settings: object) -> bool:
        return catalog.resolve_detection(Settings(trained_models_dir=tmp_path, detection_model=name,
                                                  **settings)).slice_scale_down  # type: ignore[arg-type]

    assert Settings().slice_scale_down is True  # the shipped detector's slices shrink
    assert (scale_down("old"), scale_down("new"), scale_down("crops")) == (False, True, False)
    assert scale_down("old", slice_scale_down=True) is True  # set explicitly: the card does not override it
