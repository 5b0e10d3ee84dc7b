"""The closing summary of the measurement scripts: one line per `demeter eval --labels --json` result.

Used by scripts/second_style.py and scripts/real_photos.py (run as scripts, so this folder is on sys.path).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def summary_line(name: str, result: dict[str, Any]) -> str:
    """`name: ...` with the figures of `result["in_use"]` (the model's own threshold): count MAPE and the
    worst photo's error (%), precision, recall and the number of photos."""
    s = result["in_use"]
    return (f"{name}: threshold {s['threshold']} count MAPE {s['count_mape']:.2%} worst {s['worst_photo']} "
            f"{s['worst_error']:.2%} precision {s['precision']} recall {s['recall']} ({s['photos']} photos)")


def print_summary(report: dict[str, Any], names: Iterable[str]) -> None:
    """One `summary_line` for each of `names`, the keys of eval results in `report`, in that order."""
    for name in names:
        print(summary_line(name, report[name]))
