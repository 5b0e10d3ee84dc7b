"""The GPU worker's host steps per photo: the segmenter's input against predict's own resize, and the
plausibility check.

    python benchmarks/bench_host_steps.py [--sizes 2048x1536,4000x3000] [--rounds 5] [--json]

For each size, 3 synthetic bench photos (seeds 9600-9602), the variants taking turns photo by photo for
`--rounds` rounds, after one warm-up of each:

* **segmenter input**: ultralytics' `predict` handed the whole photo as BGR (it copies the flipped view to
  make it contiguous, then letterboxes it: what `segment_photo` did before) against `segment_photo`'s
  `segmenter_input` (resized first, then flipped) and the same `predict`. Both run the segmenter on the
  registry's device; the regions must come out the same (boxes within 1 px), or the run stops;
* **plausibility**: `plant_like_count` for every region's detections of the photo (the regions and
  detections are found once, before timing); timed alone, there is no older variant to compare with.

Medians in ms per photo and the median of the paired ratios (plain / ours) are printed; no other work
should run beside it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.ml.pipeline import count_region, find_regions  # noqa: E402
from app.ml.plausibility import plant_like_count  # noqa: E402
from app.ml.registry import ModelRegistry, get_registry  # noqa: E402
from app.ml.segmentation import segmenter_input  # noqa: E402
from app.ml.synthetic import render_photo  # noqa: E402
from benchmarks.common import add_sizes_argument, print_document  # noqa: E402

SEEDS = (9600, 9601, 9602)


def predict_boxes(registry: ModelRegistry, model_input: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """The segmenter's (N, 4) boxes in photo pixels, as segment_photo asks for them."""
    settings = registry.settings
    result = registry.segmenter().predict(model_input, imgsz=settings.segmentation_imgsz,
                                          conf=settings.segmentation_confidence, verbose=False,
                                          retina_masks=False, agnostic_nms=True)[0]
    boxes: np.ndarray = result.boxes.xyxy.cpu().numpy() * np.tile(np.asarray(scale), 2)
    return boxes


def segment_plain(registry: ModelRegistry, image: np.ndarray) -> np.ndarray:
    return predict_boxes(registry, image[..., ::-1], (1.0, 1.0))


def segment_resized_first(registry: ModelRegistry, image: np.ndarray) -> np.ndarray:
    model_input, scale_x, scale_y = segmenter_input(registry.segmenter(), image, registry.settings.segmentation_imgsz)
    return predict_boxes(registry, model_input, (scale_x, scale_y))


def timed_ms(step: Any, *args: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = step(*args)
    return (time.perf_counter() - started) * 1000, result


def bench_size(registry: ModelRegistry, width: int, height: int, rounds: int) -> dict[str, Any]:
    """Medians (ms per photo) of each variant at this size, and the paired speed-ups."""
    photos = [render_photo(seed, width, height).image for seed in SEEDS]
    detections = [[count_region(image, r.bbox, registry).boxes for r in find_regions(image, registry)]
                  for image in photos]
    times: dict[str, list[float]] = {"segment_plain": [], "segment_resized_first": [], "plausibility": []}
    segment_plain(registry, photos[0])
    segment_resized_first(registry, photos[0])
    for _ in range(rounds):
        for image, regions in zip(photos, detections, strict=True):
            plain_ms, plain = timed_ms(segment_plain, registry, image)
            ours_ms, ours = timed_ms(segment_resized_first, registry, image)
            if plain.shape != ours.shape or np.abs(np.sort(plain, 0) - np.sort(ours, 0)).max(initial=0) > 1:
                raise SystemExit(f"{width}x{height}: the two segmenter inputs found different regions")
            times["segment_plain"].append(plain_ms)
            times["segment_resized_first"].append(ours_ms)
            started = time.perf_counter()
            for boxes in regions:
                plant_like_count(image, boxes)
            times["plausibility"].append((time.perf_counter() - started) * 1000)
    ratios = [p / o for p, o in zip(times["segment_plain"], times["segment_resized_first"], strict=True)]
    result: dict[str, Any] = {f"ms_{name}": round(statistics.median(ms), 1) for name, ms in times.items()}
    result["segment_speedup"] = round(statistics.median(ratios), 2)
    result["regions_per_photo"] = round(statistics.mean(len(regions) for regions in detections), 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_sizes_argument(parser, [(2048, 1536), (4000, 3000)])
    parser.add_argument("--rounds", type=int, default=5, help="times every photo is timed per variant, at least 1")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    registry = get_registry()
    doc: dict[str, Any] = {"device": registry.device}
    for width, height in args.sizes:
        print(f"{width}x{height} ...", file=sys.stderr, flush=True)
        doc[f"{width}x{height}"] = bench_size(registry, width, height, args.rounds)
    print_document(doc, args.json)


if __name__ == "__main__":
    main()
