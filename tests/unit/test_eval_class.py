"""`demeter eval --labels --class NAME`: one class of the detector scored against the labels of that name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main
from app.config import Settings
from app.label_evaluation import evaluate_labels
from app.ml.synthetic import STYLES, write_dataset
from tests.unit.test_sliced import build_lively_detector


@pytest.fixture(scope="module")
def perlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small perlite photo: its COCO file labels plants and empty cells."""
    out = tmp_path_factory.mktemp("perlite")
    write_dataset(out, n=1, seed=9400, width=1024, height=768, style=STYLES["perlite"])
    return out


def _labelled(data: Path, name: str) -> int:
    coco = json.loads((data / "annotations.json").read_text())
    (category,) = [c["id"] for c in coco["categories"] if c["name"] == name]
    return sum(a["category_id"] == category for a in coco["annotations"])


def _settings(weights: Path) -> Settings:
    return Settings().model_copy(update={"detection_weights": str(weights), "detection_runtime": "torch",
                                         "device": "cpu", "detection_confidence": 0.2})


def test_class_scores_its_own_labels_and_boxes(perlite: Path, tmp_path: Path) -> None:
    settings = _settings(build_lively_detector(tmp_path / "two_class.pt", names=("plant", "empty_cell")))

    plants = evaluate_labels(perlite, settings, whole_photo=True, progress=False)
    cells = evaluate_labels(perlite, settings, whole_photo=True, progress=False, detector_class="empty_cell")

    empty, planted = _labelled(perlite, "empty_cell"), _labelled(perlite, "plant")
    assert empty > 0 and planted > 0 and empty != planted
    assert (plants.classes, plants.photos[0].true_count) == (("plant",), planted)
    assert (cells.classes, cells.photos[0].true_count) == (("empty_cell",), empty)
    index = cells.thresholds.index(0.2)
    assert cells.photos[0].counted[index] > 0  # the detector's empty_cell boxes, which a plant count drops
    assert cells.photos[0].counted != plants.photos[0].counted


def test_class_the_detector_lacks_is_refused(perlite: Path, tmp_path: Path) -> None:
    # A one-class detector counts its class under any name; scoring it as empty cells would be wrong.
    settings = _settings(build_lively_detector(tmp_path / "plant.pt"))

    with pytest.raises(ValueError, match="no class empty_cell"):
        evaluate_labels(perlite, settings, whole_photo=True, progress=False, detector_class="empty_cell")


def test_class_is_not_written_into_the_card(perlite: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--labels", "--data", str(perlite), "--class", "empty_cell", "--write-card"]) == 2
    assert "not with --class" in capsys.readouterr().err
    assert main(["eval", "--data", str(perlite), "--class", "empty_cell"]) == 2
    assert "--class needs --labels" in capsys.readouterr().err


def test_the_synthetic_evaluation_refuses_whole_photo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--data", str(tmp_path), "--whole-photo"]) == 2
    assert "--whole-photo needs --labels or --counts" in capsys.readouterr().err
