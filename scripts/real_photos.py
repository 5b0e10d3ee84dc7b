"""Real labelled photos: the shipped detector, and `demeter train` on 10 of them, counted on the others.

The photos are public (models/README.md, "Real photos": PlantCV's Arabidopsis tray, CC BY 4.0, and its
cropped rosettes, MIT) and are not committed: `--clones` holds local clones of the two repositories.
Runs the `demeter` commands a grower would run, in order, and collects their JSON output:

    scripts/measure_real_photos.py prepare --clones CLONES --out DIR/photos   # labelled folders
    demeter eval --labels --data DIR/photos/cells-heldout --model shipped --json
    demeter eval --labels --data DIR/photos/cells-heldout --model shipped --whole-photo --json
    SLICE_SIZE=512 demeter train --data DIR/photos/cells-train --base shipped --name tray-pots --epochs 80 \
        --whole-photo --rehearsal 0
    demeter models use tray-pots-<timestamp>
    demeter eval --labels --data DIR/photos/cells-heldout --whole-photo --json     # the 10 other pots
    demeter eval --labels --data DIR/photos/rosettes --whole-photo --json          # another camera
    demeter eval --labels --data DIR/photos/tray --whole-photo --json              # the whole tray photo
    scripts/measure_real_photos.py --folder DIR/photos/cells-heldout --whole-photo  # plausibility checks

with TRAINED_MODELS_DIR=DIR/models, so the repository's models/ is untouched. SLICE_SIZE=512 (px at a
2048 px long side) makes one slice of a photo of one pot (about 480 px): the plants are 26-302 px there,
10 times the shipped detector's 23 px median, so its default 320 px slices would cut most of them apart.
SLICE_SCALE_DOWN=false throughout: a pot's photo is a crop of the tray photo, not a smaller photo of a bench.
The trained model's card keeps that slicing. Figures go to DIR/report.json and models/README.md.

Usage (from the repository root):
    nice -n 10 .venv/bin/python scripts/real_photos.py                   # prepare, train, evaluate
    .venv/bin/python scripts/real_photos.py --model tray-pots-<stamp>    # evaluate a model trained already
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from eval_summary import print_summary

ROOT = Path(__file__).resolve().parents[1]
SLICE_SIZE = "512"  # one slice a pot photo; see the docstring


def run(args: list[str], env: dict[str, str], capture: bool = False) -> str:
    command = [sys.executable, *args]
    print("$ " + " ".join(args), flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, check=True, text=True,
                          stdout=subprocess.PIPE if capture else None)
    print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)
    return done.stdout or ""


def evaluate(data: Path, env: dict[str, str], *extra: str) -> dict[str, Any]:
    output = run(["-m", "app", "eval", "--labels", "--data", str(data), *extra, "--json"], env, capture=True)
    result: dict[str, Any] = json.loads(output)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clones", type=Path, default=ROOT / "var" / "real" / "sources")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "real")
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--model", help="a model trained already (under OUT/models): evaluate it, do not train")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    photos = out / "photos"
    env = {**os.environ, "TRAINED_MODELS_DIR": str(out / "models"), "LOG_LEVEL": "WARNING"}
    env.pop("DETECTION_MODEL", None)
    env.pop("SLICE_SIZE", None)  # the shipped card's slicing, then the trained card's
    # The pots are crops of one tray photo: their plants are no smaller than the tray's, so slices must not
    # shrink with the crop's size (the trained card records this too).
    env["SLICE_SCALE_DOWN"] = "false"

    if not (photos / "cells-train" / "annotations.json").exists():
        run(["scripts/measure_real_photos.py", "prepare", "--clones", str(args.clones), "--out", str(photos)], env)
    report: dict[str, Any] = {}
    report["shipped_segment"] = evaluate(photos / "cells-heldout", env, "--model", "shipped")
    report["shipped_whole"] = evaluate(photos / "cells-heldout", env, "--model", "shipped", "--whole-photo")
    model = args.model
    if model is None:
        before = set((out / "models").iterdir()) if (out / "models").is_dir() else set()
        # --base: from the shipped detector, whichever model an earlier run left in use.
        run(["-m", "app", "train", "--data", str(photos / "cells-train"), "--base", "shipped", "--name", "tray-pots",
             "--epochs", str(args.epochs), "--whole-photo", "--rehearsal", "0"], {**env, "SLICE_SIZE": SLICE_SIZE})
        (directory,) = set((out / "models").iterdir()) - before
        model = directory.name
    run(["-m", "app", "models", "use", model], env)
    report["model"] = json.loads((out / "models" / model / "plant_det.card.json").read_text())["id"]
    report["trained_heldout"] = evaluate(photos / "cells-heldout", env, "--whole-photo")
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    report["trained_rosettes"] = evaluate(photos / "rosettes", env, "--whole-photo")
    report["trained_tray"] = evaluate(photos / "tray", env, "--whole-photo")
    plausibility = out / "plausibility_heldout.json"
    run(["scripts/measure_real_photos.py", "--folder", str(photos / "cells-heldout"), "--whole-photo",
         "--json", str(plausibility)], env)
    report["trained_heldout_plausibility"] = json.loads(plausibility.read_text())
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print_summary(report, ("shipped_segment", "shipped_whole", "trained_heldout", "trained_rosettes", "trained_tray"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
