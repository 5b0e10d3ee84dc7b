"""`demeter models list | show | use`: what there is, what a card says, and which model workers load."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.cli import main
from app.config import get_settings
from tests.unit.test_catalog import _model


@pytest.fixture
def trained_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("TRAINED_MODELS_DIR", str(tmp_path))
    monkeypatch.delenv("DETECTION_MODEL", raising=False)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_list_show_use(trained_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _model(trained_dir, "bench-1")

    assert main(["models", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(m["name"], m["in_use"]) for m in listed] == [("shipped", True), ("bench-1", False)]

    assert main(["models", "use", "bench-1"]) == 0
    assert "bench-1" in capsys.readouterr().out
    assert main(["models", "list"]) == 0
    assert "* bench-1" in capsys.readouterr().out
    assert main(["models", "show"]) == 0
    assert json.loads(capsys.readouterr().out)["confidence_threshold"] == 0.15

    assert main(["models", "use", "missing"]) == 2
    assert "no model 'missing'" in capsys.readouterr().err
    assert (trained_dir / "ACTIVE").read_text().strip() == "bench-1"  # a refused choice changes nothing


@pytest.mark.parametrize("base", ["missing", "models/plant_det.pt"])
def test_train_refuses_an_unknown_base_in_one_line(trained_dir: Path, base: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _model(trained_dir, "bench-1")

    assert main(["train", "--data", str(trained_dir / "labelled"), "--base", base]) == 2

    captured = capsys.readouterr()
    assert captured.err == (f"demeter train: no model {base!r} in {trained_dir} (known: shipped, bench-1)\n")
    assert "Traceback" not in captured.out
    assert sorted(p.name for p in trained_dir.iterdir()) == ["bench-1"]  # nothing was trained or chosen


def test_train_refuses_missing_segmenter_weights(trained_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = trained_dir / "seg.pt"

    assert main(["train", "--segmenter", "--data", str(trained_dir), "--base", str(missing)]) == 2

    assert capsys.readouterr().err == (f"demeter train: no segmenter weights {missing} "
                                       "(--base: a weights file, or `shipped`)\n")
