"""Evaluate counts against ground truth on a held-out generated set.

    python scripts/eval_counts.py --data var/eval/2048 --generate 20 --seed 9000 [--json]
    python scripts/eval_counts.py --data var/eval/4000 --generate 20 --seed 9000 --width 4000 --height 3000

Seeds >= 9000 are never used in training (see models/README.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.evaluation import main as evaluate
from app.ml.synthetic import write_dataset


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--generate", type=int, default=0, help="first write N photos into --data")
    parser.add_argument("--seed", type=int, default=9000)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--height", type=int, default=1536)
    parser.add_argument("--no-full-image", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.generate and not (args.data / "annotations.json").exists():
        write_dataset(args.data, n=args.generate, seed=args.seed, width=args.width, height=args.height)
    return evaluate(args.data, args.json, compare_full_image=not args.no_full_image)


if __name__ == "__main__":
    sys.exit(run())
