"""Photo sizes on the benchmarks' command lines: `--size 4000x3000`, `--sizes 2048x1536,4000x3000`."""

from __future__ import annotations

import argparse

MIN_SIDE = 64  # smaller photos hold no container worth counting


def photo_size(text: str) -> tuple[int, int]:
    """'4000x3000' -> (4000, 3000), for argparse; a one-line error otherwise."""
    try:
        width, height = (int(v) for v in text.strip().lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 4000x3000") from None
    if width < MIN_SIDE or height < MIN_SIDE:
        raise argparse.ArgumentTypeError(f"{text!r}: both sides must be at least {MIN_SIDE} px")
    return width, height


def photo_sizes(text: str) -> list[tuple[int, int]]:
    """'2048x1536,4000x3000' -> [(2048, 1536), (4000, 3000)], for argparse."""
    return [photo_size(size) for size in text.split(",")]
