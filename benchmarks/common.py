"""What the benchmark scripts share: photo sizes on the command line (`--size 4000x3000`,
`--sizes 2048x1536,4000x3000`) and their output, one JSON document or a table of its keys."""

from __future__ import annotations

import argparse
import json
from typing import Any

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


def add_sizes_argument(parser: argparse.ArgumentParser, default: list[tuple[int, int]]) -> None:
    """`--sizes WIDTHxHEIGHT,...`, parsed into (width, height) pairs."""
    shown = ",".join(f"{w}x{h}" for w, h in default)
    parser.add_argument("--sizes", type=photo_sizes, default=default, help=f"comma-separated WIDTHxHEIGHT ({shown})")


def print_document(doc: dict[str, Any], as_json: bool) -> None:
    """The results on stdout: indented JSON, or one line per top-level key."""
    if as_json:
        print(json.dumps(doc, indent=1))
    else:
        for key, value in doc.items():
            print(f"{key:<12} {value}")
