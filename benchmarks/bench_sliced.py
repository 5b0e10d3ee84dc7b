"""Sliced plant detection: this project's engine against SAHI, on the same weights and photos.

    .venv/bin/python benchmarks/bench_sliced.py           # a table
    .venv/bin/python benchmarks/bench_sliced.py --json    # one JSON document on stdout
    .venv/bin/python benchmarks/bench_sliced.py --quick   # smoke run: 1 photo per size, SAHI at batch 1 and 16
    python benchmarks/bench_sliced.py --device cuda --runtimes torch   # on a GPU: every variant on cuda:0

Every variant detects over the whole photo (one region: the full frame) with the pipeline's
settings: slice size (scaled with the photo's long side), overlap, imgsz, confidence, and
SAHI's GREEDYNMM / IOS / 0.5 merge, class-agnostic, without SAHI's extra full-image pass:

* SAHI: `sahi.predict.get_sliced_prediction` with its UltralyticsDetectionModel, at batch 1
  (its default) and at the batch sizes in --sahi-batches (its best is reported);
* the engine (app.ml.sliced via ModelRegistry.tile_detector(), export included) for each
  runtime and precision; `network ms` is the part of that time spent in the network itself;
* model only: ultralytics' own batched predict over the same slices, with no merging.

Each variant is warmed up on the first photo, then every photo is timed once per round
(--rounds), the variants taking turns photo by photo; the median is reported, and the int8
engine's speed-up over the other OpenVINO precisions is the median of ratios taken side by side.
F1 and count difference compare each variant's boxes with SAHI's at batch 1,
matched one-to-one at IoU >= 0.5; the worst photo is reported. Torch uses every core in
every variant (torch.set_num_threads(os.cpu_count()), OMP_NUM_THREADS from configure_offline(),
and ultralytics' own reset to cores - 1 switched off).
Run it on an idle machine: the load average at the start is recorded.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.ml.offline import configure_offline  # noqa: E402

configure_offline(ROOT / "var" / "ultralytics")

import torch  # noqa: E402
import ultralytics.utils.torch_utils  # noqa: E402

# ultralytics' select_device() sets torch's threads to cores - 1 at every predictor setup (SAHI's first
# predict, the segmenter's...): on 2 cores that is 1 thread. Every variant here gets every core.
ultralytics.utils.torch_utils.NUM_THREADS = os.cpu_count() or 1

from app.config import Settings  # noqa: E402
from app.ml.pipeline import slice_params  # noqa: E402
from app.ml.registry import ModelRegistry  # noqa: E402
from app.ml.runtimes import (  # noqa: E402
    SUPPORTED_PRECISIONS,
    Precision,
    Runtime,
    TileNetwork,
    openvino_precisions,
    resolve_precision,
    resolve_runtime,
)
from app.ml.sliced import SliceParams, agreement, detect_in_region, slice_windows  # noqa: E402
from app.ml.synthetic import render_photo  # noqa: E402
from benchmarks.common import photo_sizes  # noqa: E402

DENSE_SEEDS = (9511, 9517, 9522)  # true_count >= 1000 at 2048x1536
SIZES = ((2048, 1536), (4000, 3000))
PLACEHOLDER = ROOT / "var" / "placeholder" / "det.pt"

Detector = Callable[[np.ndarray], np.ndarray | None]  # photo -> merged boxes (None: not comparable)


@dataclasses.dataclass
class TimedNetwork:
    """Wraps a network and adds up the seconds spent inside it."""

    inner: TileNetwork
    seconds: float = 0.0
    device: torch.device = dataclasses.field(init=False)
    input_dtype: torch.dtype = dataclasses.field(init=False)
    dynamic: bool = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.device, self.input_dtype, self.dynamic = self.inner.device, self.inner.input_dtype, self.inner.dynamic

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        output = self.inner(batch)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # CUDA returns before the kernels ran: time them, not their launch
        self.seconds += time.perf_counter() - start
        return output


@dataclasses.dataclass
class Variant:
    name: str
    run: Detector
    network: TimedNetwork | None = None
    ms: list[float] = dataclasses.field(default_factory=list)
    network_ms: list[float] = dataclasses.field(default_factory=list)
    boxes: list[np.ndarray | None] = dataclasses.field(default_factory=list)


def sahi_variant(weights: Path, params: SliceParams, slice_px: int, batch: int, device: torch.device) -> Variant:
    from sahi import AutoDetectionModel
    from sahi.predict import get_sliced_prediction

    model = AutoDetectionModel.from_pretrained(model_type="ultralytics", model_path=str(weights),
                                               confidence_threshold=params.confidence, device=str(device),
                                               image_size=params.imgsz)

    def run(image: np.ndarray) -> np.ndarray:
        result = get_sliced_prediction(
            image, model, slice_height=slice_px, slice_width=slice_px,
            overlap_height_ratio=params.overlap, overlap_width_ratio=params.overlap,
            perform_standard_pred=False, postprocess_type=params.merge_method,
            postprocess_match_metric=params.merge_metric, postprocess_match_threshold=params.merge_threshold,
            postprocess_class_agnostic=True, force_postprocess_type=True, batch_size=batch, verbose=0,
        )
        return np.array([p.bbox.to_xyxy() for p in result.object_prediction_list], np.float64).reshape(-1, 4)

    return Variant(f"sahi batch {batch}", run)


def engine_variant(weights: Path, params: SliceParams, runtime: Runtime, precision: Precision,
                   device: torch.device) -> Variant:
    update = {"detection_weights": str(weights), "detection_runtime": runtime, "detection_precision": precision,
              "device": str(device)}
    settings = Settings().model_copy(update=update)
    detector = ModelRegistry(settings).tile_detector()
    timed = TimedNetwork(detector.network)
    detector = dataclasses.replace(detector, network=timed)

    def run(image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        return detect_in_region(detector, image, (0, 0, width, height), params).boxes

    return Variant(f"engine {runtime} {precision}", run, network=timed)


def model_only_variant(weights: Path, params: SliceParams, slice_px: int, device: torch.device) -> Variant:
    from ultralytics import YOLO

    model = YOLO(str(weights), task="detect")

    def run(image: np.ndarray) -> None:
        height, width = image.shape[:2]
        windows = slice_windows(width, height, slice_px, params.overlap)
        tiles = [image[y1:y2, x1:x2, ::-1] for x1, y1, x2, y2 in windows]
        for start in range(0, len(tiles), params.batch_size):
            model.predict(tiles[start : start + params.batch_size], imgsz=params.imgsz, conf=params.confidence,
                          device=str(device), verbose=False)

    return Variant(f"model only (ultralytics predict, batch {params.batch_size})", run)


def time_once(variant: Variant, image: np.ndarray, keep_boxes: bool) -> None:
    if variant.network is not None:
        variant.network.seconds = 0.0
    start = time.perf_counter()
    boxes = variant.run(image)
    variant.ms.append((time.perf_counter() - start) * 1000)
    if variant.network is not None:
        variant.network_ms.append(variant.network.seconds * 1000)
    if keep_boxes:
        variant.boxes.append(boxes)


def measure(variants: list[Variant], photos: list[np.ndarray], rounds: int) -> None:
    """Warm every variant up on the first photo, then time each photo once per round, variant after variant.

    The variants take turns photo by photo, so a neighbour's load lands on all of them alike and the
    ratios between variants hold on a busy machine even when the absolute figures do not.
    """
    for variant in variants:
        variant.run(photos[0])
        if torch.get_num_threads() != (os.cpu_count() or 1):
            raise RuntimeError(f"{variant.name} left torch with {torch.get_num_threads()} threads")
    for round_index in range(rounds):
        for image in photos:
            for variant in variants:
                time_once(variant, image, keep_boxes=round_index == 0)
        medians = ", ".join(f"{v.name} {statistics.median(v.ms):.0f} ms" for v in variants)
        print(f"  round {round_index + 1}: {medians}", file=sys.stderr, flush=True)


def paired_ratio(slow: Variant, fast: Variant) -> float:
    """Median over the timings taken side by side (same photo, same round) of slow / fast."""
    return round(statistics.median(s / f for s, f in zip(slow.ms, fast.ms, strict=True)), 2)


def engine_pairs(runtimes: list[Runtime], device: torch.device) -> list[tuple[Runtime, Precision]]:
    """Every installed runtime at every precision it supports on the device (OpenVINO: those this CPU has natively)."""
    runtimes = [r for r in runtimes if importlib.util.find_spec("onnxruntime" if r == "onnx" else r) is not None]
    native = openvino_precisions() if "openvino" in runtimes else ()
    pairs = [(r, p) for r in runtimes for p in SUPPORTED_PRECISIONS.get((r, device.type), ())]
    # int8 runs on any CPU (app.ml.quantize builds and guards it); the float types only where they are native.
    return [(r, p) for r, p in pairs if r != "openvino" or p in native or p == "int8"]


def summarise(variant: Variant, reference: Variant | None) -> dict[str, Any]:
    row: dict[str, Any] = {"ms": round(statistics.median(variant.ms), 1),
                           "ms_per_photo": [round(m, 1) for m in variant.ms]}
    if variant.network_ms:
        row["ms_network"] = round(statistics.median(variant.network_ms), 1)
    if reference is not None and variant.boxes and variant.boxes[0] is not None:
        scores = [agreement(b, r) for b, r in zip(variant.boxes, reference.boxes, strict=True)
                  if b is not None and r is not None]
        row["f1_vs_sahi"] = round(min(f for f, _ in scores), 4)
        row["count_diff_vs_sahi"] = round(max(c for _, c in scores), 4)
        row["detections"] = [len(b) for b in variant.boxes if b is not None]
    return row


def bench_size(width: int, height: int, args: argparse.Namespace, params: SliceParams,
               weights: Path, engines_run: list[tuple[Runtime, Precision]], default_engine: str,
               device: torch.device) -> dict[str, Any]:
    slice_px = params.slice_pixels(width, height)
    print(f"{width}x{height}: rendering {len(args.seeds)} photos", file=sys.stderr, flush=True)
    rendered = [render_photo(seed, width, height) for seed in args.seeds]
    photos = [p.image for p in rendered]
    variants = [sahi_variant(weights, params, slice_px, b, device) for b in args.sahi_batches]
    variants += [engine_variant(weights, params, r, p, device) for r, p in engines_run]
    variants.append(model_only_variant(weights, params, slice_px, device))
    measure(variants, photos, args.rounds)
    reference = variants[0]
    rows = {v.name: summarise(v, reference) for v in variants}
    by_name = {v.name: v for v in variants}
    int8 = by_name.get("engine openvino int8")
    int8_ratios = {f"int8_speedup_vs_{name.removeprefix('engine openvino ')}": paired_ratio(other, int8)
                   for name, other in by_name.items() if int8 is not None and other is not int8
                   and name.startswith("engine openvino ")}
    sahi_rows = {b: rows[f"sahi batch {b}"] for b in args.sahi_batches}
    best_batch = min(sahi_rows, key=lambda b: sahi_rows[b]["ms"])
    ms_default, ms_best = sahi_rows[1]["ms"] if 1 in sahi_rows else None, sahi_rows[best_batch]["ms"]
    engines = {}
    for name, row in rows.items():
        if name.startswith("engine "):
            if ms_default:
                row["speedup_vs_sahi_default"] = round(ms_default / row["ms"], 2)
            row["speedup_vs_sahi_best"] = round(ms_best / row["ms"], 2)
            engines[name.removeprefix("engine ").replace(" ", "-")] = row
    chosen = engines[default_engine]
    return {
        "photos": list(args.seeds), "true_counts": [p.true_count for p in rendered],
        "slice_px": slice_px, "slices": len(slice_windows(width, height, slice_px, params.overlap)),
        "ms_sahi_default": ms_default, "ms_sahi_best": ms_best, "sahi_best_batch": best_batch,
        "ms_sahi_by_batch": {str(b): r["ms"] for b, r in sahi_rows.items()},
        "sahi_detections": rows[reference.name]["detections"],
        "ms_model_only": rows[variants[-1].name]["ms"],
        "default_engine": default_engine, "ms_engine": chosen["ms"],
        "f1_vs_sahi": chosen["f1_vs_sahi"], "count_diff_vs_sahi": chosen["count_diff_vs_sahi"],
        "speedup_vs_sahi_default": chosen.get("speedup_vs_sahi_default"),
        "speedup_vs_sahi_best": chosen["speedup_vs_sahi_best"],
        "engines": engines, "rounds": args.rounds, **int8_ratios,
    }


def machine(device: torch.device) -> dict[str, Any]:
    import sahi
    import ultralytics

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "torch": torch.__version__, "ultralytics": ultralytics.__version__,
            "sahi": sahi.__version__, "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "openvino": importlib.util.find_spec("openvino") and importlib.metadata.version("openvino"),
            "onnxruntime": importlib.util.find_spec("onnxruntime") and importlib.metadata.version("onnxruntime")}


def print_table(doc: dict[str, Any]) -> None:
    for size, result in doc["sizes"].items():
        print(f"\n{size}: {result['slices']} slices of {result['slice_px']} px, photos {result['photos']} "
              f"(true counts {result['true_counts']}), median ms per photo")
        print(f"{'variant':<28} {'ms':>8} {'network':>8} {'/SAHI b1':>9} {'/SAHI best':>10} {'F1':>7} {'count':>7}")
        print(f"{'sahi batch ' + ', '.join(result['ms_sahi_by_batch']):<28}",
              " ".join(f"{v:.0f}" for v in result["ms_sahi_by_batch"].values()),
              f"(best: batch {result['sahi_best_batch']})")
        print(f"{'model only':<28} {result['ms_model_only']:>8.0f}")
        for name, row in result["engines"].items():
            marker = " *" if name == result["default_engine"] else ""
            print(f"{name + marker:<28} {row['ms']:>8.0f} {row.get('ms_network', 0):>8.0f} "
                  f"{row.get('speedup_vs_sahi_default', float('nan')):>8.2f}x {row['speedup_vs_sahi_best']:>9.2f}x "
                  f"{row['f1_vs_sahi']:>7.4f} {row['count_diff_vs_sahi']:>7.2%}")
        for key, value in result.items():
            if key.startswith("int8_speedup_vs_"):
                print(f"openvino int8 / {key.removeprefix('int8_speedup_vs_')}: {value:.2f}x faster (paired median)")
    print("\n* the default runtime (DETECTION_RUNTIME=auto, DETECTION_PRECISION=auto); count = |engine - SAHI| / SAHI")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--quick", action="store_true", help="1 photo per size, SAHI at batch 1 and 16")
    parser.add_argument("--weights", type=Path, help="detector weights (default: DETECTION_WEIGHTS, else placeholder)")
    parser.add_argument("--confidence", type=float, help="override DETECTION_CONFIDENCE")
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=list(DENSE_SEEDS))
    parser.add_argument("--sizes", type=photo_sizes, default=list(SIZES), help="comma-separated WIDTHxHEIGHT")
    parser.add_argument("--sahi-batches", type=lambda s: [int(x) for x in s.split(",")],
                        help="SAHI batch sizes (default 1,4,8,16,32; 1,16 with --quick); batch 1 always runs")
    parser.add_argument("--runtimes", type=lambda s: s.split(","), default=["torch", "onnx", "openvino"],
                        help="engine runtimes, every precision each (default torch,onnx,openvino); the default "
                             "engine (DETECTION_RUNTIME/PRECISION) always runs, at its own precision only")
    parser.add_argument("--rounds", type=int, default=1, help="time every photo this many times, variants alternating")
    parser.add_argument("--device", type=torch.device, default=torch.device("cpu"),
                        help="where every variant runs: cpu (default) or cuda / cuda:N")
    args = parser.parse_args()
    if args.device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch sees no CUDA GPU here")
    if args.quick:
        args.seeds = args.seeds[:1]
    if args.sahi_batches is None:
        args.sahi_batches = [1, 16] if args.quick else [1, 4, 8, 16, 32]
    if 1 not in args.sahi_batches:
        args.sahi_batches.insert(0, 1)
    args.sahi_batches.sort()
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    settings = Settings()
    weights = args.weights or Path(settings.detection_weights)
    if not weights.exists():
        print(f"{weights} not found: using the untrained placeholder {PLACEHOLDER}", file=sys.stderr)
        weights = PLACEHOLDER
    params = slice_params(settings)
    if args.confidence is not None:
        params = dataclasses.replace(params, confidence=args.confidence)
    device = args.device
    runtime = resolve_runtime(settings.detection_runtime, device)
    precision = resolve_precision(settings.detection_precision, runtime, device)
    default_engine = f"{runtime}-{precision}"
    engines_run = engine_pairs(args.runtimes, device)
    if (runtime, precision) not in engines_run:  # the summary's engine, whatever --runtimes asked for
        engines_run.append((runtime, precision))
    doc: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": machine(device),
        "weights": str(weights), "confidence": params.confidence, "imgsz": params.imgsz,
        "batch_size": params.batch_size, "overlap": params.overlap,
        "merge": f"{params.merge_method}/{params.merge_metric}/{params.merge_threshold}",
        "sizes": {f"{w}x{h}": bench_size(w, h, args, params, weights, engines_run, default_engine, device)
                  for w, h in args.sizes},
    }
    first = doc["sizes"][next(iter(doc["sizes"]))]
    for key in ("ms_sahi_default", "ms_sahi_best", "ms_engine", "ms_model_only", "f1_vs_sahi", "count_diff_vs_sahi",
                "speedup_vs_sahi_default", "speedup_vs_sahi_best", "default_engine"):
        doc[key] = first[key]
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        print_table(doc)


if __name__ == "__main__":
    main()
