"""Keep ultralytics off the network.

Ultralytics probes DNS, downloads fonts, syncs settings and auto-installs
packages unless told not to. `configure_offline()` must run before the first
`import ultralytics`; every module of this project that imports ultralytics
calls it first.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

_configured = False


def _local_font() -> Path | None:
    """A TTF shipped with matplotlib, used in place of Arial for plot labels."""
    try:
        import matplotlib
    except ImportError:
        return None
    font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    return font if font.exists() else None


def configure_offline(config_dir: Path | None = None) -> Path:
    """Set ultralytics' offline switches; return its (writable) config dir: YOLO_CONFIG_DIR when set,
    else `config_dir`, else DATA_DIR/ultralytics."""
    global _configured
    if config_dir is None:
        from app.config import get_settings

        config_dir = get_settings().data_dir / "ultralytics"
    directory = Path(os.environ.get("YOLO_CONFIG_DIR") or config_dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_CONFIG_DIR"] = str(directory)
    os.environ["YOLO_OFFLINE"] = "1"  # is_online() returns False without a DNS probe
    os.environ["YOLO_AUTOINSTALL"] = "false"  # never pip-install a missing requirement
    os.environ.setdefault("YOLO_VERBOSE", "false")
    # Ultralytics forces OMP_NUM_THREADS=1 when unset, which halves CPU inference speed here.
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    _place_fonts(directory)
    _decline_openvino_telemetry()
    if not _configured:
        from ultralytics import settings

        settings.update({"sync": False})
        # Ultralytics leaves one core idle (torch threads = cores - 1, reset by every new predictor
        # in select_device); a worker wants them all.
        import torch
        from ultralytics.utils import torch_utils

        threads = int(os.environ["OMP_NUM_THREADS"])
        torch_utils.NUM_THREADS = threads
        torch.set_num_threads(threads)
        _configured = True
    return directory


def _place_fonts(directory: Path) -> None:
    """Ultralytics 8.4 looks for Arial in YOLO_CONFIG_DIR/Ultralytics, older releases in the dir itself."""
    font = _local_font()
    if font is None:
        return
    for folder in (directory, directory / "Ultralytics"):
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("Arial.ttf", "Arial.Unicode.ttf"):
            target = folder / name
            if not target.exists():
                shutil.copyfile(font, target)


def _decline_openvino_telemetry() -> None:
    """OpenVINO's model conversion (our export) sends usage telemetry unless the consent file says no."""
    try:
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    except ImportError:
        return
    checker = OptInChecker()
    if checker.consent_file_base_dir() is not None and checker.consent_file_subdirectory() is not None:
        checker.update_result(ConsentCheckResult.DECLINED)
