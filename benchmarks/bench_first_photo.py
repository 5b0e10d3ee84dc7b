"""The first photos after a GPU worker starts: warmed at the working batch size only, or at every shape.

    python benchmarks/bench_first_photo.py [--rounds 3] [--photos 6] [--json]

Each variant runs in a fresh process, as a worker starts: load the models, warm them, then count
`--photos` photos (seeds 9600-, 2048x1536) with `analyse_photo` one after another, twice. The first pass
is what the first photos after a (re)start cost; the second pass the same photos warm. Variants:

* `working_batch` (what `preload()` did before): the segmenter on a 64x64 blank, the detector at
  DETECTION_BATCH_SIZE only;
* `every_shape` (`ModelRegistry.preload()` now): the segmenter on a landscape and a portrait 4:3 photo,
  the detector at every batch size up to DETECTION_BATCH_SIZE (a region's last batch is smaller).

The variants take turns for `--rounds` rounds; medians per photo position are printed, with the warm-up's
own seconds and the first photo's time over the warm median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import print_document  # noqa: E402

VARIANTS = ("working_batch", "every_shape")


def child(variant: str, n_photos: int) -> dict[str, Any]:
    """One fresh process: warm as `variant` says, then time the photos twice (ms each)."""
    import numpy as np

    from app.ml.pipeline import analyse_photo
    from app.ml.registry import get_registry
    from app.ml.synthetic import render_photo

    photos = [render_photo(seed).image for seed in range(9600, 9600 + n_photos)]
    registry = get_registry()
    registry.segmenter(), registry.tile_detector()  # loading (and exporting) is the same for both variants
    started = time.perf_counter()
    if variant == "working_batch":
        blank = np.zeros((64, 64, 3), dtype=np.uint8)
        registry.segmenter().predict(blank, imgsz=registry.settings.segmentation_imgsz, verbose=False)
        registry.tile_detector().warmup(registry.settings.detection_imgsz, [registry.settings.detection_batch_size])
    else:
        registry.preload()
    warmup_s = time.perf_counter() - started
    passes = []
    for _ in range(2):
        times = []
        for image in photos:
            started = time.perf_counter()
            analyse_photo(image, registry)
            times.append((time.perf_counter() - started) * 1000)
        passes.append(times)
    return {"warmup_s": warmup_s, "first_pass_ms": passes[0], "warm_pass_ms": passes[1]}


def run_child(variant: str, n_photos: int) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", variant, "--photos", str(n_photos)], check=True,
                          capture_output=True, text=True, cwd=ROOT)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    first = [statistics.median(position) for position in zip(*(r["first_pass_ms"] for r in runs), strict=True)]
    warm = statistics.median(ms for r in runs for ms in r["warm_pass_ms"])
    return {"warmup_s": round(statistics.median(r["warmup_s"] for r in runs), 2),
            "first_pass_ms": [round(ms) for ms in first], "warm_ms": round(warm),
            "first_photo_vs_warm": round(first[0] / warm, 2),
            "first_pass_vs_warm": round(statistics.mean(first) / warm, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per variant, taking turns")
    parser.add_argument("--photos", type=int, default=6, help="photos counted in each pass, at least 1")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.photos < 1 or args.rounds < 1:
        parser.error("--photos and --rounds must be at least 1")
    if args.child:
        print(json.dumps(child(args.child, args.photos)))
        return
    runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
    for round_number in range(args.rounds):
        for variant in VARIANTS if round_number % 2 == 0 else VARIANTS[::-1]:
            print(f"round {round_number + 1}: {variant} ...", file=sys.stderr, flush=True)
            runs[variant].append(run_child(variant, args.photos))
    print_document({variant: summarise(results) for variant, results in runs.items()}, args.json)


if __name__ == "__main__":
    main()
