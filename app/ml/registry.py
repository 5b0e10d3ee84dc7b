"""Load each model once per process, from a configurable weights path or S3 URI.

The GPU worker calls `preload()` at worker start (never in a parent that forks),
so the first photo does not pay for loading. Ultralytics is imported only here,
after its offline switches are set.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.config import Settings, get_settings
from app.errors import ModelUnavailable
from app.ml.offline import configure_offline


@dataclass(frozen=True)
class ModelKey:
    weights: str
    task: str  # "segment" | "detect"
    device: str


def select_device(requested: str) -> str:
    """'auto' means the first CUDA device when there is one, else the CPU."""
    if requested != "auto":
        return requested
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


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

    def segmenter(self) -> Any:
        return self.get(self.settings.segmentation_weights, "segment")

    def detector(self) -> Any:
        return self.get(self.settings.detection_weights, "detect")

    @property
    def device(self) -> str:
        return select_device(self.settings.device)

    def preload(self) -> None:
        """Load both models and run one tiny prediction each, so the first photo is warm."""
        import numpy as np

        blank = np.zeros((64, 64, 3), dtype=np.uint8)
        self.segmenter().predict(blank, imgsz=self.settings.segmentation_imgsz, verbose=False)
        self.detector().predict(blank, imgsz=self.settings.detection_imgsz, verbose=False)


_registry: ModelRegistry | None = None


def get_registry() -> ModelRegistry:
    global _registry
    if _registry is None:
        _registry = ModelRegistry(get_settings())
    return _registry
