"""Export the detector weights for ONNX Runtime or OpenVINO, once per weights file.

The export is part of building the model, done lazily by the first process that
loads the detector (the GPU worker's preload, or the first region counted), never
at import. It lands beside the weights, where ultralytics puts it:

    models/plant_det.pt -> models/plant_det.onnx
                        -> models/plant_det_openvino_model/plant_det.xml

A stamp records what the export was built from (the weights' SHA-256, imgsz, the
ultralytics version and this recipe); a different stamp means rebuild. OpenVINO
keeps its stamp as `demeter_stamp.json` inside its folder; ONNX keeps it inside
the .onnx file's metadata, so no stray file sits in models/. Exports are built in
a temporary folder and moved into place, under a lock, so a crash or a second
process never leaves or reads a half-written model.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from app.ml.offline import configure_offline

ExportFormat = Literal["onnx", "openvino"]
RECIPE = 1  # bump when the export arguments below change
STAMP_FILE = "demeter_stamp.json"
STAMP_KEY = "demeter_stamp"

_process_lock = threading.Lock()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_target(weights: Path, fmt: ExportFormat, cache_dir: Path | None = None) -> Path:
    """Where the export of `weights` lives: beside the weights unless `cache_dir` is given."""
    directory = cache_dir or weights.parent
    if fmt == "onnx":
        return directory / f"{weights.stem}.onnx"
    return directory / f"{weights.stem}_openvino_model"


def model_file(target: Path, fmt: ExportFormat) -> Path:
    """The file a runtime opens: the .onnx itself, or the .xml inside the OpenVINO folder."""
    return target if fmt == "onnx" else target / f"{target.name.removesuffix('_openvino_model')}.xml"


def expected_stamp(weights: Path, fmt: ExportFormat, imgsz: int) -> dict[str, object]:
    import ultralytics

    return {"sha256": sha256_file(weights), "format": fmt, "imgsz": imgsz, "dynamic": True,
            "ultralytics": ultralytics.__version__, "recipe": RECIPE}


def read_stamp(target: Path, fmt: ExportFormat) -> dict[str, object] | None:
    """The stamp of an existing export, or None when there is none (or it is unreadable)."""
    try:
        if fmt == "openvino":
            if not model_file(target, fmt).exists():
                return None
            return json.loads((target / STAMP_FILE).read_text())
        import onnx

        proto = onnx.load(str(target), load_external_data=False)
        values = {prop.key: prop.value for prop in proto.metadata_props}
        return json.loads(values[STAMP_KEY]) if STAMP_KEY in values else None
    except Exception:  # a torn or foreign file is simply rebuilt
        return None


def _write_stamp(built: Path, fmt: ExportFormat, stamp: dict[str, object]) -> None:
    if fmt == "openvino":
        (built / STAMP_FILE).write_text(json.dumps(stamp, indent=1))
        return
    import onnx

    proto = onnx.load(str(built))
    entry = proto.metadata_props.add()
    entry.key, entry.value = STAMP_KEY, json.dumps(stamp)
    onnx.save(proto, str(built))


@contextmanager
def _export_lock(target: Path) -> Iterator[None]:
    """One exporter per target: a thread lock in this process, a file lock across processes."""
    name = hashlib.sha256(str(target.resolve()).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"demeter-export-{name}.lock"
    with _process_lock, lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(weights: Path, fmt: ExportFormat, imgsz: int, workdir: Path) -> Path:
    """Run ultralytics' exporter on a link to the weights inside `workdir`; return what it wrote."""
    configure_offline()
    from ultralytics import YOLO

    link = workdir / weights.name
    link.symlink_to(weights.resolve())
    # Dynamic batch and size: the engine letterboxes tiles to minimal rectangles, like ultralytics' predict.
    # simplify=False: onnxslim is not a dependency, and YOLO_AUTOINSTALL=false would refuse to fetch it.
    options: dict[str, object] = {"format": fmt, "imgsz": imgsz, "dynamic": True, "half": False, "verbose": False}
    if fmt == "onnx":
        options["simplify"] = False
    with warnings.catch_warnings():  # torch.jit.trace's deprecation notices, once per export: noise in worker logs
        warnings.simplefilter("ignore", FutureWarning)
        return Path(YOLO(str(link), task="detect").export(**options))


def _replace(built: Path, target: Path) -> None:
    """Move a finished export into place; the old one, if any, goes first."""
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    os.replace(built, target)


def ensure_export(weights: Path, fmt: ExportFormat, imgsz: int, cache_dir: Path | None = None) -> Path:
    """The runtime's model file for `weights`, exported now if missing or built from other weights."""
    target = export_target(weights, fmt, cache_dir)
    with _export_lock(target):
        stamp = expected_stamp(weights, fmt, imgsz)
        if read_stamp(target, fmt) == stamp:
            return model_file(target, fmt)
        target.parent.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=f".{weights.stem}-export-", dir=target.parent))
        try:
            built = _build(weights, fmt, imgsz, workdir)  # named after the weights, like the target
            _write_stamp(built, fmt, stamp)
            _replace(built, target)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return model_file(target, fmt)
