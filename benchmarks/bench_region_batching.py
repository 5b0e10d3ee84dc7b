"""Batching a photo's slices across its regions, against one pass of the network per region.

    .venv/bin/python benchmarks/bench_region_batching.py [--photos 8] [--rounds 3]

A GPU worker counts each region in its own task, so each region's slices go through the network
in batches of DETECTION_BATCH_SIZE, the last one partly empty. Cutting every slice of every region
of a photo first and filling whole batches across regions saves those partial batches. Only the
network's calls differ between the two (letterboxing, NMS and the merge are per slice or per region
either way), so only they are timed: on the same tiles, cut once per photo with the pipeline's
own code, the two orders taking turns photo by photo for --rounds rounds; medians reported.
Photos: the dense 2048x1536 synthetic photos of bench_pipeline.py (seeds 9600-).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def photo_tiles(data: bytes, registry: Any) -> list[Any]:
    """Per region, its (B, 3, H, W) network input, as `predict_windows` makes it."""
    from app.ml.images import decode_rgb
    from app.ml.pipeline import choose_regions, padded_box, slice_params
    from app.ml.sliced import Letterbox, region_windows, tiles_on_cpu
    from app.records import validate_bbox

    image = decode_rgb(data)
    params = slice_params(registry.settings)
    detector = registry.tile_detector()
    proposals, _ = choose_regions(image, registry, registry.settings.region_mode)
    height, width = image.shape[:2]
    regions = []
    for proposal in proposals:
        box = validate_bbox(proposal.bbox, width, height)
        x1, y1, x2, y2 = padded_box(box, width, height, registry.settings.region_padding)
        windows = region_windows(image.shape[:2], (x1, y1, x2, y2), params)
        tile_shape = (int(windows[0, 3] - windows[0, 1]), int(windows[0, 2] - windows[0, 0]))
        plan = Letterbox.plan(tile_shape, params.imgsz, detector.stride, rect=detector.network.dynamic)
        regions.append(tiles_on_cpu(image[y1:y2, x1:x2], windows, plan).contiguous())
    return regions


def per_region(network: Any, regions: list[Any], batch_size: int) -> int:
    """One region after the other, each in batches of `batch_size`; the number of network calls."""
    calls = 0
    for tiles in regions:
        for start in range(0, len(tiles), batch_size):
            network(_input(network, tiles[start : start + batch_size]))
            calls += 1
    return calls


def across_regions(network: Any, regions: list[Any], batch_size: int) -> int:
    """Every region's tiles of one input shape together, in full batches; the number of network calls."""
    import torch

    calls = 0
    by_shape: dict[tuple[int, ...], list[Any]] = {}
    for tiles in regions:
        by_shape.setdefault(tuple(tiles.shape[1:]), []).append(tiles)
    for group in by_shape.values():
        tiles = torch.cat(group)
        for start in range(0, len(tiles), batch_size):
            network(_input(network, tiles[start : start + batch_size]))
            calls += 1
    return calls


def _input(network: Any, tiles: Any) -> Any:
    import torch

    from app.ml.sliced import _normalised

    return tiles if network.input_dtype == torch.uint8 else _normalised(tiles, network.input_dtype)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from app.config import get_settings
    from app.ml.registry import ModelRegistry
    from tests.utils.photos import synthetic_jpeg

    registry = ModelRegistry(get_settings())
    registry.preload()
    network = registry.tile_detector().network
    batch_size = registry.settings.detection_batch_size
    photos = [photo_tiles(synthetic_jpeg(9600 + i), registry) for i in range(args.photos)]
    per_region(network, photos[0], batch_size)  # warm both orders on every batch shape
    across_regions(network, photos[0], batch_size)
    timings: dict[str, list[float]] = {"per_region": [], "across_regions": []}
    calls: dict[str, list[int]] = {"per_region": [], "across_regions": []}
    ratios: list[float] = []
    for round_ in range(args.rounds):
        for regions in photos:
            seconds = {}
            order = [("per_region", per_region), ("across_regions", across_regions)]
            for name, run in order if round_ % 2 == 0 else order[::-1]:
                started = time.perf_counter()
                made = run(network, regions, batch_size)
                seconds[name] = time.perf_counter() - started
                timings[name].append(seconds[name])
                calls[name].append(made)
            ratios.append(seconds["per_region"] / seconds["across_regions"])
    result = {
        "photos": args.photos, "rounds": args.rounds, "batch_size": batch_size,
        "runtime": registry.settings.detection_runtime, "precision": registry.settings.detection_precision,
        "regions_per_photo": round(median(len(r) for r in photos), 2),
        "tiles_per_photo": round(median(sum(len(t) for t in r) for r in photos), 1),
        "network_calls_per_photo": {name: round(median(made), 1) for name, made in calls.items()},
        "network_ms_per_photo": {name: round(median(s) * 1000, 1) for name, s in timings.items()},
        "speedup_across_regions": round(median(ratios), 3),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
