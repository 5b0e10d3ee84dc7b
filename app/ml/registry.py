"""Load each model once per process, from a configurable weights path or S3 URI.

The GPU worker calls `preload()` at worker start (never in a parent that forks),
so the first photo does not pay for loading. Ultralytics is imported only here,
after its offline switches are set. The sliced counter's `tile_detector()` runs on
the configured runtime; for ONNX/OpenVINO its first load exports the weights
(app.ml.export), so the export happens in preload, never at import.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from app.config import Settings, get_settings
from app.errors import ModelUnavailable
from app.ml.cards import ModelCard, card_uri, default_card, read_card
from app.ml.offline import configure_offline
from app.observability.logging import get_logger

if TYPE_CHECKING:
    from app.ml.runtimes import Precision
    from app.ml.sliced import TileDetector

log = get_logger(__name__)


@dataclass(frozen=True)
class ModelKey:
    weights: str
    task: str  # "segment" | "detect" | "tiles" (the sliced counter's detector)
    device: str
    runtime: str = "torch"
    precision: str = "fp32"


def select_device(requested: str) -> str:
    """'auto' means the first CUDA device when there is one, else the CPU."""
    if requested != "auto":
        return requested
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def counted_class_ids(names: dict[int, str], counted: list[str]) -> tuple[int, ...]:
    """The detector's class indices whose names are in DETECTION_COUNT_CLASSES.

    A one-class detector counts its class whatever its name (a grower's `seedling` model); a detector of
    several classes none of which is counted is refused (ModelUnavailable), rather than counting nothing.
    """
    ids = tuple(sorted(i for i, name in names.items() if name in counted))
    if ids:
        return ids
    if len(names) == 1:
        return tuple(names)
    raise ModelUnavailable(f"none of the detector's classes ({', '.join(names.values())}) is in "
                           f"DETECTION_COUNT_CLASSES ({', '.join(counted)})")


def fetch_weights(uri: str, cache_dir: Path) -> Path:
    """A local path for `uri`: a file path as is, an s3:// object downloaded once."""
    if not uri.startswith("s3://"):
        path = Path(uri)
        if not path.exists():
            raise ModelUnavailable(f"weights not found: {uri}")
        return path
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    target = cache_dir / hashlib.sha256(uri.encode()).hexdigest()[:16] / Path(key).name
    if not target.exists():
        import boto3

        settings = get_settings()
        target.parent.mkdir(parents=True, exist_ok=True)
        client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region)
        try:
            client.download_file(bucket, key, str(target))
        except Exception as exc:
            raise ModelUnavailable(f"cannot download weights {uri}: {exc}") from exc
    return target


class ModelRegistry:
    """A per-process cache of loaded models, safe to call from several threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._models: dict[ModelKey, Any] = {}
        self._cards: dict[str, ModelCard] = {}
        self._lock = threading.Lock()

    def _load(self, key: ModelKey) -> Any:
        configure_offline(self.settings.data_dir / "ultralytics")
        from ultralytics import YOLO

        path = fetch_weights(key.weights, self.settings.data_dir / "weights")
        try:
            model = YOLO(str(path), task=key.task)
            model.to(key.device)
        except Exception as exc:
            raise ModelUnavailable(f"cannot load {key.task} weights {key.weights}: {exc}") from exc
        return model

    def get(self, weights: str, task: str) -> Any:
        key = ModelKey(weights=weights, task=task, device=select_device(self.settings.device))
        with self._lock:
            if key not in self._models:
                self._models[key] = self._load(key)
            return self._models[key]

    def _load_tiles(self, key: ModelKey, yolo: Any) -> TileDetector:
        import torch

        from app.ml.export import ExportFormat, ensure_export
        from app.ml.runtimes import Precision, Runtime, load_network
        from app.ml.sliced import TileDetector

        runtime, precision = cast(Runtime, key.runtime), cast(Precision, key.precision)
        exported = None
        try:
            if runtime != "torch":
                weights = fetch_weights(key.weights, self.settings.data_dir / "weights")
                # Beside the weights when that folder is writable (models/ in a read-only image is not).
                cache_dir = None if os.access(weights.parent, os.W_OK) else self.settings.data_dir / "exports"
                fmt = cast(ExportFormat, runtime)
                exported = ensure_export(weights, fmt, self.settings.detection_imgsz, cache_dir)
                if precision == "int8":
                    exported, precision = self._int8_or_fallback(weights, exported, cache_dir, torch.device(key.device))
            network = load_network(runtime=runtime, precision=precision, device=torch.device(key.device),
                                   module=yolo.model, exported=exported)
        except ModelUnavailable:
            raise
        except Exception as exc:
            raise ModelUnavailable(f"cannot load the {key.runtime} detector for {key.weights}: {exc}") from exc
        return TileDetector.from_yolo(yolo, network)

    def _int8_or_fallback(self, weights: Path, fp32_xml: Path, cache_dir: Path | None,
                          device: Any) -> tuple[Path, Precision]:
        """The guarded int8 model (app.ml.quantize); when the guard refused it, the float model, with a warning."""
        from app.ml.quantize import ensure_int8
        from app.ml.runtimes import auto_precision

        outcome = ensure_int8(weights, fp32_xml, self.settings.detection_imgsz, cache_dir)
        if outcome.model is not None:
            return outcome.model, "int8"
        fallback = auto_precision("openvino", device)
        log.warning("int8 detector refused", running=fallback, reason=outcome.reason)
        return fp32_xml, fallback

    def tile_detector(self) -> TileDetector:
        """The detector of the sliced counter, on DETECTION_RUNTIME at DETECTION_PRECISION."""
        import torch

        from app.ml.runtimes import resolve_precision, resolve_runtime

        device = torch.device(self.device)
        try:
            runtime = resolve_runtime(self.settings.detection_runtime, device)
            precision = resolve_precision(self.settings.detection_precision, runtime, device)
        except ValueError as exc:  # a runtime/precision/device combination that cannot work
            raise ModelUnavailable(str(exc)) from exc
        key = ModelKey(self.settings.detection_weights, "tiles", self.device, runtime, precision)
        yolo = self.detector()
        with self._lock:
            if key not in self._models:
                self._models[key] = self._load_tiles(key, yolo)
            return self._models[key]

    def counted_classes(self) -> tuple[int, ...]:
        """Class indices of the detector that count as plants (DETECTION_COUNT_CLASSES)."""
        names = {int(k): str(v) for k, v in self.detector().names.items()}
        return counted_class_ids(names, self.settings.detection_count_classes)

    def card(self, weights: str, task: str) -> ModelCard:
        """The model card beside `weights` (a path or s3:// URI), read once; the default card when there is none.

        Reads no model: the aggregating CPU worker calls this to judge a photo and to record provenance.
        """
        with self._lock:
            if weights not in self._cards:
                self._cards[weights] = self._read_card(weights, task)
            return self._cards[weights]

    def _read_card(self, weights: str, task: str) -> ModelCard:
        cache = self.settings.data_dir / "weights"
        try:
            path = fetch_weights(weights, cache)
        except ModelUnavailable:
            return default_card(Path(weights).name, task)
        try:
            card_file: Path | None = fetch_weights(card_uri(weights), cache)
        except ModelUnavailable:
            card_file = None
        return read_card(card_file, path, task)

    def detection_card(self) -> ModelCard:
        return self.card(self.settings.detection_weights, "detect")

    def segmentation_card(self) -> ModelCard:
        return self.card(self.settings.segmentation_weights, "segment")

    def segmenter(self) -> Any:
        return self.get(self.settings.segmentation_weights, "segment")

    def detector(self) -> Any:
        return self.get(self.settings.detection_weights, "detect")

    @property
    def device(self) -> str:
        return select_device(self.settings.device)

    def preload(self) -> None:
        """Load (and export) both models and run each at the input shapes photos bring, so the first photos
        are as fast as later ones: the segmenter on a landscape and a portrait 4:3 photo, the detector at
        every batch size up to DETECTION_BATCH_SIZE (a region's last batch is a smaller one).

        Warmed at its working batch size only, the first photo after a start took 1.7-2.1x a warm one on a
        CPU, and the first six 1.2-1.5x; now about 1.0x, for 1.3-2.3 s more at the start
        (benchmarks/bench_first_photo.py, benchmarks/README.md).
        """
        import numpy as np

        for width, height in ((2048, 1536), (1536, 2048)):
            blank = np.zeros((height, width, 3), dtype=np.uint8)
            self.segmenter().predict(blank, imgsz=self.settings.segmentation_imgsz, verbose=False)
        self.tile_detector().warmup(self.settings.detection_imgsz, range(self.settings.detection_batch_size, 0, -1))


_registry: ModelRegistry | None = None
_recount_registries: dict[str, ModelRegistry] = {}
_recount_lock = threading.Lock()


def get_registry() -> ModelRegistry:
    """This process's registry, with the detector chosen by DETECTION_MODEL or `demeter models use`.

    The choice is read once, at the first call (a worker's start), so a running worker never switches
    models between the regions of one photo; a restarted or recycled worker reads it again.
    """
    global _registry
    if _registry is None:
        from app.ml.catalog import resolve_detection

        _registry = ModelRegistry(resolve_detection(get_settings()))
    return _registry


def registry_for(recount_model: str) -> ModelRegistry:
    """The registry of this process's detector for '' (a photo's count), else of the model named
    `recount_model` (a recount, `demeter recount`): a second registry per name, built at its first recount
    and kept, so its detector is loaded once per worker process beside the one in use.

    Raises UnknownModel (app.ml.catalog) when no such model exists on this worker.
    """
    if not recount_model:
        return get_registry()
    with _recount_lock:
        if recount_model not in _recount_registries:
            from app.ml.catalog import resolve_detection

            _recount_registries[recount_model] = ModelRegistry(resolve_detection(get_settings(), recount_model))
        return _recount_registries[recount_model]
