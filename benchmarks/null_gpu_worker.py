"""The GPU worker with a stand-in network of zero cost, for `bench_pipeline.py --null-model`.

    python benchmarks/null_gpu_worker.py RECORDING.json STAGES.json

Runs `workers.gpu` unchanged except for two things: the regions and each region's detections
come from RECORDING.json (made by bench_pipeline.py from a real run on the same photos, keyed
by a fingerprint of the decoded pixels), so the network costs nothing; and the worker's host
work is timed by stage (decode, database sessions, the photo as the tasks wait for it, the
plausibility check, the stand-ins themselves, each task as a whole) and written to STAGES.json
when the worker shuts down.
Everything else, Celery, the photo cache, PostgreSQL, Redis and storage, is the real pipeline.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECONDS: dict[str, float] = defaultdict(float)
CALLS: dict[str, int] = defaultdict(int)


def fingerprint(image: np.ndarray) -> str:
    """A cheap key for a decoded photo: every 64th pixel of every 64th row, and the shape."""
    return hashlib.sha1(np.ascontiguousarray(image[::64, ::64]).tobytes() + str(image.shape).encode()).hexdigest()


def bbox_key(bbox: tuple[int, ...] | list[int]) -> str:
    return ",".join(str(int(v)) for v in bbox)


def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            SECONDS[name] += time.perf_counter() - started
            CALLS[name] += 1

    return wrapper


def install(recording_path: Path, stages_path: Path) -> None:
    from celery.signals import task_postrun, task_prerun, worker_shutdown

    import app.tasks.gpu as gpu
    from app.ml.registry import get_registry
    from app.ml.sliced import Detections
    from app.records import RegionProposal

    recording: dict[str, Any] = json.loads(recording_path.read_text())
    get_registry().preload = lambda: None  # type: ignore[method-assign]  # no model is ever loaded

    def null_regions(image: np.ndarray, registry: Any, mode: str, supplied: Any = None) -> tuple[list[Any], str]:
        photo = recording[fingerprint(image)]
        proposals = [RegionProposal(r["class_name"], r["confidence"], tuple(r["bbox"]), r["polygon"])
                     for r in photo["regions"]]
        return proposals, photo["mode"]

    def null_count(image: np.ndarray, bbox: tuple[int, int, int, int], registry: Any) -> Detections:
        rows = np.asarray(recording[fingerprint(image)]["detections"][bbox_key(bbox)], np.float32).reshape(-1, 5)
        # Only the counted boxes were recorded: their class is the counted one (0, plants).
        return Detections(np.ascontiguousarray(rows[:, :4]), np.ascontiguousarray(rows[:, 4]),
                          np.zeros(len(rows), np.int64))

    session = gpu.db_session

    @contextmanager
    def timed_session(*args: Any, **kwargs: Any) -> Iterator[Any]:
        started = time.perf_counter()
        try:
            with session(*args, **kwargs) as db:
                yield db
        finally:
            SECONDS["database session"] += time.perf_counter() - started
            CALLS["database session"] += 1

    gpu.choose_regions = timed("regions (stand-in)", null_regions)
    gpu.count_region = timed("detections (stand-in)", null_count)
    gpu.decode_rgb = timed("decode", gpu.decode_rgb)
    gpu.plant_like_count = timed("plausibility check", gpu.plant_like_count)
    gpu.db_session = timed_session  # type: ignore[assignment]
    load = timed("photo load (lookup, storage, decode)", gpu.photo_cache._load)
    gpu.photo_cache._load = load  # type: ignore[method-assign]
    # What the tasks wait for their photo: a cache hit, a prefetch still running, or a load of their own.
    gpu.photo_cache.get = timed("photo wait in the tasks", gpu.photo_cache.get)  # type: ignore[method-assign]
    started: dict[str, float] = {}

    @task_prerun.connect(weak=False)  # nested functions: a weak reference would die with install()
    def _start(task_id: str, task: Any, **_: Any) -> None:
        started[task_id] = time.perf_counter()

    @task_postrun.connect(weak=False)  # nested functions: a weak reference would die with install()
    def _stop(task_id: str, task: Any, **_: Any) -> None:
        if task_id in started:
            SECONDS[f"task {task.name}"] += time.perf_counter() - started.pop(task_id)
            CALLS[f"task {task.name}"] += 1

    @worker_shutdown.connect(weak=False)  # nested functions: a weak reference would die with install()
    def _dump(**_: Any) -> None:
        stages_path.write_text(json.dumps({"seconds": SECONDS, "calls": CALLS}, indent=1))


def main() -> None:
    recording, stages = Path(sys.argv[1]), Path(sys.argv[2])
    del sys.argv[1:3]
    install(recording, stages)
    from workers.gpu import main as gpu_main

    gpu_main()


if __name__ == "__main__":
    main()
