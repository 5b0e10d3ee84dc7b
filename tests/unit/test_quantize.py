"""The int8 detector is built once per weights file, reused, and refused when its count drifts from fp32.

Calibration here is a handful of slices from two training photos and one hold-out photo, so a
build takes well under a minute; production builds use app.ml.quantize's defaults (300 slices,
6 hold-out photos).
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from app.config import PROJECT_ROOT, Settings
from app.ml import export, quantize, runtimes
from app.ml.registry import ModelRegistry

TRAINED = PROJECT_ROOT / "models" / "plant_det.pt"
SMALL: dict[str, Any] = {"calibration": range(1000, 1002), "slices_per_photo": 4, "holdout": range(1180, 1181)}


def test_count_guard_refuses_beyond_the_limit() -> None:
    assert quantize.count_guard(1000, 1010, 0.01) is None
    assert quantize.count_guard(1000, 990, 0.01) is None
    refusal = quantize.count_guard(1000, 1011, 0.01)
    assert refusal is not None and "1011" in refusal and "1000" in refusal
    assert quantize.count_guard(0, 1, 0.01) is not None


@pytest.mark.slow
@pytest.mark.skipif(not TRAINED.exists(), reason="the trained detector models/plant_det.pt is not built yet")
def test_int8_is_built_reused_and_guarded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = tmp_path / "det.pt"
    shutil.copyfile(TRAINED, weights)
    fp32_xml = export.ensure_export(weights, "openvino", 320)
    builds: list[Path] = []
    quantize_model = quantize.quantize_model

    def counting(fp32: Path, slices: list[Any], out: Path) -> None:
        builds.append(out)
        quantize_model(fp32, slices, out)

    monkeypatch.setattr(quantize, "quantize_model", counting)

    accepted = quantize.ensure_int8(weights, fp32_xml, 320, **SMALL)
    assert accepted.model is not None and accepted.model.exists()
    assert accepted.count_fp32 > 100  # the hold-out photo is dense: the guard compares real counts
    assert quantize.count_guard(accepted.count_fp32, accepted.count_int8, quantize.MAX_COUNT_DIFF) is None
    assert quantize.ensure_int8(weights, fp32_xml, 320, **SMALL) == accepted  # read from the stamp
    assert len(builds) == 1

    # A limit no model can meet: the build says why, keeps no int8 model, and the refusal is cached.
    refused = quantize.ensure_int8(weights, fp32_xml, 320, **SMALL, max_count_diff=-1.0)
    assert refused.model is None and "hold-out" in refused.reason
    target = quantize.int8_target(weights)
    assert sorted(p.name for p in target.iterdir()) == [quantize.STAMP_FILE]
    assert len(builds) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left

    # The registry falls back to the float model, from the cached refusal, without rebuilding.
    ensure = quantize.ensure_int8
    monkeypatch.setattr(quantize, "ensure_int8", functools.partial(ensure, **SMALL, max_count_diff=-1.0))
    loaded: list[dict[str, Any]] = []
    load_network = runtimes.load_network

    def spying_load(**kwargs: Any) -> Any:
        loaded.append(kwargs)
        return load_network(**kwargs)

    monkeypatch.setattr(runtimes, "load_network", spying_load)
    settings = Settings(detection_weights=str(weights), detection_runtime="openvino", detection_precision="int8",
                        device="cpu", data_dir=tmp_path / "data")
    ModelRegistry(settings).tile_detector()
    assert loaded[-1]["exported"] == fp32_xml
    assert loaded[-1]["precision"] == runtimes.auto_precision("openvino", torch.device("cpu"))
    assert len(builds) == 2

    # Other weights (the same network re-saved with one more key): the stamp no longer matches, so it is rebuilt.
    checkpoint = torch.load(weights, weights_only=False)
    checkpoint["note"] = "re-saved"
    torch.save(checkpoint, weights)
    rebuilt = ensure(weights, export.ensure_export(weights, "openvino", 320), 320, **SMALL)
    assert rebuilt.model is not None and len(builds) == 3
