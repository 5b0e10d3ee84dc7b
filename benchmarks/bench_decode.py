"""JPEG decode for the GPU worker: Pillow on the host against nvJPEG on the GPU, side by side.

    python benchmarks/bench_decode.py [--sizes 2048x1536,4000x3000] [--repeats 20] [--json]

For each size, one synthetic bench photo (quality 90, 4:2:0, as `encode_jpeg` writes it) is decoded
`--repeats` times by each path, taking turns: `decode_rgb` (Pillow, what a CPU worker runs) and
`decode_rgb_cuda` (`torchvision.io.decode_jpeg` on CUDA, the photo copied back to the host as the
pipeline uses it). Medians in ms and the median of the paired ratios (Pillow / nvJPEG) are printed.
Without CUDA only the Pillow row is printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from app.ml.images import decode_rgb, decode_rgb_cuda, encode_jpeg  # noqa: E402
from app.ml.synthetic import render_photo  # noqa: E402
from benchmarks.common import add_sizes_argument, print_document  # noqa: E402


def timed_ms(decode: Any, data: bytes) -> float:
    """Milliseconds of one `decode(data)`; RuntimeError when the path declines the photo."""
    started = time.perf_counter()
    if decode(data) is None:
        raise RuntimeError(f"{decode.__name__} declined the photo")
    return (time.perf_counter() - started) * 1000


def bench_size(width: int, height: int, repeats: int) -> dict[str, Any]:
    """Median ms of each decode path on one synthetic photo of this size, and nvJPEG's paired speed-up."""
    data = encode_jpeg(render_photo(9511, width, height).image)
    paths = [decode_rgb] + ([decode_rgb_cuda] if torch.cuda.is_available() else [])
    times: dict[str, list[float]] = {path.__name__: [] for path in paths}
    for path in paths:
        timed_ms(path, data)  # warm-up: nvJPEG's first call creates its CUDA context and handles
    for _ in range(repeats):
        for path in paths:
            times[path.__name__].append(timed_ms(path, data))
    result: dict[str, Any] = {"jpeg_bytes": len(data)}
    result.update({f"ms_{name}": round(statistics.median(ms), 2) for name, ms in times.items()})
    if "decode_rgb_cuda" in times:
        ratios = [p / c for p, c in zip(times["decode_rgb"], times["decode_rgb_cuda"], strict=True)]
        result["nvjpeg_speedup"] = round(statistics.median(ratios), 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_sizes_argument(parser, [(2048, 1536), (4000, 3000)])
    parser.add_argument("--repeats", type=int, default=20, help="timed decodes per path and size, at least 1")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    doc: dict[str, Any] = {"gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    for width, height in args.sizes:
        doc[f"{width}x{height}"] = bench_size(width, height, args.repeats)
    print_document(doc, args.json)


if __name__ == "__main__":
    main()
