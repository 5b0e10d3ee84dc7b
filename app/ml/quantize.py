"""int8 for OpenVINO on a CPU: post-training quantisation of the exported detector, with an accuracy guard.

Built once per weights file, beside the fp32 export (app.ml.export), by the first process
that loads the detector at DETECTION_PRECISION=int8:

    models/plant_det.pt -> models/plant_det_openvino_model/plant_det.xml        (fp32, app.ml.export)
                        -> models/plant_det_int8_openvino_model/plant_det.xml   (int8, here)

NNCF's `quantize` (MIXED preset, as ultralytics' own int8 export) is calibrated on
320 px slices cut at native resolution from the model's own training photos
(`render_photo(seed)` for seeds 1000-1179 of scripts/train_models.py's training
range); the detection head's box decoding and sigmoids stay in float, as ultralytics
keeps them. The guard then counts plants on whole hold-out photos (seeds 1180-1199,
also training photos, never used for calibration) with the fp32 and the int8 model
through the real sliced engine: a count that differs by more than `max_count_diff`
(1 %) refuses the int8 model. A refusal is cached too (the stamp records it and why,
with no model beside it), so the fallback is decided once per weights file, not at
every start.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.ml.export import _export_lock, _replace, sha256_file

RECIPE = 1  # bump when the quantisation below changes
STAMP_FILE = "demeter_stamp.json"
CALIBRATION_SEEDS = range(1000, 1030)  # training photos (scripts/train_models.py TRAIN_SEEDS)
SLICES_PER_PHOTO = 10  # 30 photos x 10 slices = 300 slices: NNCF's default subset size
HOLDOUT_SEEDS = range(1180, 1186)  # training photos too, but never calibrated on
MAX_COUNT_DIFF = 0.01  # the count target: int8 within 1 % of fp32


@dataclass(frozen=True)
class Int8Outcome:
    """What a build decided: the int8 model file when accepted, else None and the reason."""

    model: Path | None
    reason: str  # why refused, or a one-line summary of the guard when accepted
    count_fp32: int
    count_int8: int


def int8_target(weights: Path, cache_dir: Path | None = None) -> Path:
    """The int8 export's folder: beside the weights unless `cache_dir` is given."""
    return (cache_dir or weights.parent) / f"{weights.stem}_int8_openvino_model"


def count_guard(count_fp32: int, count_int8: int, max_count_diff: float) -> str | None:
    """Why the int8 model is refused (its hold-out count differs from fp32's by more than the limit), or None."""
    difference = abs(count_int8 - count_fp32) / max(count_fp32, 1)
    if difference > max_count_diff:
        return (f"int8 counted {count_int8} plants on the hold-out photos against {count_fp32} at fp32 "
                f"({difference:.2%} apart, more than {max_count_diff:.2%})")
    return None


def expected_stamp(weights: Path, imgsz: int, calibration: Sequence[int], slices_per_photo: int,
                   holdout: Sequence[int], max_count_diff: float) -> dict[str, object]:
    import nncf
    import openvino

    return {"sha256": sha256_file(weights), "imgsz": imgsz, "recipe": RECIPE, "nncf": nncf.__version__,
            "openvino": openvino.get_version(), "calibration_seeds": list(calibration),
            "slices_per_photo": slices_per_photo, "holdout_seeds": list(holdout), "max_count_diff": max_count_diff}


def calibration_slices(seeds: Sequence[int], slices_per_photo: int, size: int) -> list[np.ndarray]:
    """(1, 3, size, size) float32 RGB in [0, 1] per slice: what the exported fp32 graph takes as input.

    Slices are cut at random places (seeded) at native resolution, as the detector's training slices were.
    """
    from app.ml.synthetic import render_photo

    rng = np.random.default_rng(RECIPE)
    slices = []
    for seed in seeds:
        image = render_photo(seed).image
        height, width = image.shape[:2]
        for _ in range(slices_per_photo):
            y, x = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
            tile = image[y:y + size, x:x + size].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
            slices.append(np.ascontiguousarray(tile))
    return slices


def _head_scope(model: Any) -> Any:
    """The head's box decoding and sigmoids stay in float: ultralytics' own int8 export ignores the same ops."""
    import nncf

    operations = model.get_ordered_ops()
    sigmoids = [op.get_friendly_name() for op in operations if op.get_type_name() == "Sigmoid"]
    if not sigmoids:
        return None
    head = sigmoids[-1].split("/", 1)[0]
    names = [op.get_friendly_name() for op in operations
             if op.get_type_name() == "Sigmoid" or op.get_friendly_name().startswith((f"{head}/", f"{head}.dfl"))]
    return nncf.IgnoredScope(names=names)


def quantize_model(fp32_xml: Path, slices: list[np.ndarray], out_xml: Path) -> None:
    """NNCF post-training quantisation of the fp32 IR; writes the int8 IR to `out_xml`."""
    import nncf
    import openvino as ov

    # NNCF logs every ignored node at INFO on stdout, where a worker's or a benchmark's output goes.
    nncf.set_log_level(logging.WARNING)
    model = ov.Core().read_model(fp32_xml)
    quantized = nncf.quantize(model, nncf.Dataset(slices), preset=nncf.QuantizationPreset.MIXED,
                              subset_size=len(slices), ignored_scope=_head_scope(model))
    ov.save_model(quantized, out_xml, compress_to_fp16=False)


def holdout_counts(weights: Path, fp32_xml: Path, int8_xml: Path, seeds: Sequence[int], imgsz: int) -> tuple[int, int]:
    """Plants counted on the whole hold-out photos at fp32 and at int8, through the sliced engine."""
    from ultralytics import YOLO

    from app.ml.runtimes import OpenVinoNetwork, cpu_threads
    from app.ml.sliced import SliceParams, TileDetector, detect_in_region
    from app.ml.synthetic import render_photo

    yolo = YOLO(str(weights), task="detect")
    params = SliceParams(imgsz=imgsz)
    detectors = [TileDetector.from_yolo(yolo, OpenVinoNetwork.load(fp32_xml, "fp32", cpu_threads())),
                 TileDetector.from_yolo(yolo, OpenVinoNetwork.load(int8_xml, "int8", cpu_threads()))]
    counts = [0, 0]
    for seed in seeds:
        image = render_photo(seed).image
        whole = (0, 0, image.shape[1], image.shape[0])
        for index, detector in enumerate(detectors):
            counts[index] += len(detect_in_region(detector, image, whole, params))
    return counts[0], counts[1]


def _read(target: Path) -> dict[str, Any] | None:
    try:
        return json.loads((target / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return None


def _outcome(target: Path, record: dict[str, Any]) -> Int8Outcome:
    model = target / record["model"] if record.get("model") else None
    return Int8Outcome(model=model, reason=record["reason"], count_fp32=record["count_fp32"],
                       count_int8=record["count_int8"])


def ensure_int8(
    weights: Path,
    fp32_xml: Path,
    imgsz: int,
    cache_dir: Path | None = None,
    *,
    calibration: Sequence[int] = CALIBRATION_SEEDS,
    slices_per_photo: int = SLICES_PER_PHOTO,
    holdout: Sequence[int] = HOLDOUT_SEEDS,
    max_count_diff: float = MAX_COUNT_DIFF,
) -> Int8Outcome:
    """The int8 model for `weights` (quantised and guarded now if missing or stale), or why it was refused.

    `fp32_xml` is the fp32 OpenVINO export of the same weights (app.ml.export.ensure_export).
    The build takes about a minute on 2 cores (rendering and calibration); later calls read the stamp.
    """
    target = int8_target(weights, cache_dir)
    with _export_lock(target):
        stamp = expected_stamp(weights, imgsz, calibration, slices_per_photo, holdout, max_count_diff)
        existing = _read(target)
        if existing is not None and existing.get("stamp") == stamp:
            return _outcome(target, existing)
        target.parent.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=f".{weights.stem}-int8-", dir=target.parent))
        try:
            built = workdir / target.name
            built.mkdir()
            int8_xml = built / f"{weights.stem}.xml"
            quantize_model(fp32_xml, calibration_slices(calibration, slices_per_photo, imgsz), int8_xml)
            count_fp32, count_int8 = holdout_counts(weights, fp32_xml, int8_xml, holdout, imgsz)
            refusal = count_guard(count_fp32, count_int8, max_count_diff)
            if refusal is not None:  # keep only the stamp: the refusal is remembered, no model is left to load
                for path in list(built.iterdir()):
                    path.unlink()
            reason = refusal or f"int8 counted {count_int8} plants on the hold-out photos against {count_fp32} at fp32"
            record = {"stamp": stamp, "model": None if refusal else int8_xml.name, "reason": reason,
                      "count_fp32": count_fp32, "count_int8": count_int8}
            (built / STAMP_FILE).write_text(json.dumps(record, indent=1))
            _replace(built, target)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return _outcome(target, record)

