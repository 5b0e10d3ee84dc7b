"""The second-style measurement's smoke run: every step a grower would run, on a few small photos.

synth (perlite and default styles) -> train --quick (with rehearsal) -> models use -> eval --labels (both styles) ->
eval --labels --model shipped. The figures of the full run are in models/README.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import PROJECT_ROOT, Settings
from app.ml.catalog import use_model
from tests.utils.trained import trained_model


@pytest.mark.timeout(1200)
def test_second_style_smoke_run(tmp_path: Path) -> None:
    # An earlier run left its model in use; this run still trains from the shipped detector (--base shipped).
    trained_model(tmp_path / "models", "earlier-run", 0.3)
    use_model(Settings(trained_models_dir=tmp_path / "models"), "earlier-run")

    subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "second_style.py"), "--smoke", "--out",
                    str(tmp_path)], check=True, cwd=PROJECT_ROOT, timeout=1200)

    report = json.loads((tmp_path / "report.json").read_text())
    (model,) = (tmp_path / "models").glob("perlite-*")
    assert (tmp_path / "models" / "ACTIVE").read_text().strip() == model.name
    assert report["model"].startswith(f"{model.name}@")
    assert report["trained_on_perlite"]["model"] == report["model"]
    assert report["shipped_on_perlite"]["model"] != report["model"]
    # Trained from the shipped detector: default-style photos rehearsed, the original style counted afterwards.
    assert report["card"]["base_model"]["name"] == "shipped"
    assert report["card"]["rehearsal"]["photos"] == 10 and report["card"]["rehearsal"]["slices"] > 0
    assert report["card"]["evaluation"]["original_style_photos"]["photos"] == 1
    for key in ("trained_on_perlite", "trained_on_original", "shipped_on_perlite"):
        figures = report[key]["in_use"]
        assert figures["photos"] == 1 and figures["count_mape"] >= 0 and figures["recall"] is not None
