"""Run the shipped models and the plausibility verdict over labelled photos; print what each got.

Not a test: the real photos belong to others and are not committed (models/README.md lists the
sources and licences). Two kinds of input:

    # a folder of photos with labels.json: {"name.jpg": {"count": 12, "source": "owner/repo"}, ...}
    .venv/bin/python scripts/measure_real_photos.py --folder var/real/photos
    # held-out synthetic photos (seeds >= 9000), true counts from the generator
    .venv/bin/python scripts/measure_real_photos.py --synthetic 9000-9019 --size 2048x1536

`prepare` builds the folder from local clones of the public repositories (models/README.md says how
to get them):

    .venv/bin/python scripts/measure_real_photos.py prepare --clones var/real/sources --out var/real/photos

Each photo is decoded by the service's own decoder, counted by the in-process pipeline (the functions
the workers run) and judged with the PLAUSIBILITY_* settings. Prints one line a photo (true count,
counted, flagged, reasons) and the measured quantities the thresholds are chosen from; `--json FILE`
writes them all.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.config import get_settings
from app.errors import InvalidImage
from app.ml.images import decode_rgb, encode_jpeg, inspect_image
from app.ml.pipeline import analyse_photo
from app.ml.plausibility import RegionDetections, judge, limits_from, measure
from app.ml.registry import get_registry
from app.ml.synthetic import render_photo

# The public repositories the real photos come from: (repository, licence, how to read the labels).
SOURCES = {
    "danforthcenter/plantcv-tutorial-arabidopsis-tray": "CC BY 4.0",
    "danforthcenter/plantcv-tutorial_leaf_instance_segmentation": "MIT",
}


def _git_show(repo: Path, path: str) -> bytes:
    return subprocess.run(["git", "-C", str(repo), "show", f"HEAD:{path}"], check=True,
                          capture_output=True).stdout


def _git_files(repo: Path) -> list[str]:
    out = subprocess.run(["git", "-C", str(repo), "ls-tree", "-r", "--name-only", "HEAD"], check=True,
                         capture_output=True, text=True).stdout
    return out.splitlines()


def prepare(clones: Path, out: Path) -> int:
    """Copy the labelled photos out of the local clones into `out`, with labels.json."""
    out.mkdir(parents=True, exist_ok=True)
    labels: dict[str, dict[str, Any]] = {}
    tray = clones / "plantcv-tutorial-arabidopsis-tray"
    if tray.exists():
        # PlantCV's own per-plant results of this photo: one observation per plant.
        results = json.loads(_git_show(tray, "arabidopsis_results.json"))
        (out / "arabidopsis_tray.jpg").write_bytes(_git_show(tray, "img/arabidopsis_tray.jpg"))
        labels["arabidopsis_tray.jpg"] = {"count": len(results["observations"]),
                                          "source": "danforthcenter/plantcv-tutorial-arabidopsis-tray"}
    crops = clones / "plantcv-tutorial_leaf_instance_segmentation"
    if crops.exists():
        # One rosette a photo (the tutorial's cropped tray cells), photographed daily as it grows.
        for path in _git_files(crops):
            if path.startswith("test_img/") and path.endswith(".jpg"):
                name = "rosette_" + Path(path).name.split("_", 2)[-1]
                (out / name).write_bytes(_git_show(crops, path))
                labels[name] = {"count": 1, "source": "danforthcenter/plantcv-tutorial_leaf_instance_segmentation"}
    (out / "labels.json").write_text(json.dumps(labels, indent=2) + "\n")
    print(f"{len(labels)} photos in {out}")
    return 0


def _folder_photos(folder: Path) -> Iterator[tuple[str, bytes, int | None, str]]:
    labels = json.loads((folder / "labels.json").read_text())
    for name, label in sorted(labels.items()):
        yield name, (folder / name).read_bytes(), label.get("count"), label.get("source", "")


def _synthetic_photos(seeds: str, size: str) -> Iterator[tuple[str, bytes, int | None, str]]:
    first, _, last = seeds.partition("-")
    width, height = (int(v) for v in size.split("x"))
    for seed in range(int(first), int(last or first) + 1):
        photo = render_photo(seed, width=width, height=height)
        yield f"synthetic_{seed}_{size}.jpg", encode_jpeg(photo.image), photo.true_count, "app.ml.synthetic"


def measure_photo(name: str, data: bytes, true_count: int | None, source: str) -> dict[str, Any]:
    settings = get_settings()
    registry = get_registry()
    row: dict[str, Any] = {"photo": name, "source": source, "true": true_count}
    try:
        info = inspect_image(data, max_aspect_ratio=settings.max_aspect_ratio)
    except InvalidImage as exc:
        return {**row, "counted": None, "flagged": True, "reasons": [{"check": "refused", "message": str(exc)}]}
    image = decode_rgb(data)
    started = time.monotonic()
    analysis = analyse_photo(image, registry)
    regions = [RegionDetections(r.region.bbox, r.detections.boxes, r.detections.scores, r.plant_like)
               for r in analysis.regions]
    card = registry.detection_card()
    reasons = judge(card, (info.width, info.height), regions, limits_from(settings))
    measured = measure(card, (info.width, info.height), regions).as_dict()
    return {**row, "size": f"{info.width}x{info.height}", "counted": analysis.total, "flagged": bool(reasons),
            "reasons": [r.as_dict() for r in reasons], "measured": measured,
            "seconds": round(time.monotonic() - started, 2)}


def _line(row: dict[str, Any]) -> str:
    m = row.get("measured") or {}
    checks = ",".join(r["check"] for r in row["reasons"]) or "-"
    return (f"{row['photo'][:44]:<44} {row['true']!s:>6} {row['counted']!s:>7} "
            f"{'yes' if row['flagged'] else 'no':>7}  {checks:<34} "
            f"regions={m.get('regions')} side={m.get('median_side')} size_out={m.get('size_outliers')} "
            f"dens_hi={m.get('density_high')} dens_lo={m.get('density_low')} overlap={m.get('overlap')} "
            f"lowconf={m.get('low_confidence')} not_green={m.get('not_green')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", choices=["measure", "prepare"], default="measure")
    parser.add_argument("--folder", type=Path, help="photos + labels.json")
    parser.add_argument("--synthetic", help="seed range, e.g. 9000-9019")
    parser.add_argument("--size", default="2048x1536", help="synthetic photo size WxH")
    parser.add_argument("--clones", type=Path, default=Path("var/real/sources"))
    parser.add_argument("--out", type=Path, default=Path("var/real/photos"))
    parser.add_argument("--json", type=Path, help="write every row here")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        return prepare(args.clones, args.out)
    if bool(args.folder) == bool(args.synthetic):
        parser.error("give --folder or --synthetic")
    photos = _folder_photos(args.folder) if args.folder else _synthetic_photos(args.synthetic, args.size)
    print(f"{'photo':<44} {'true':>6} {'counted':>7} {'flagged':>7}  reasons")
    rows = []
    for name, data, true_count, source in photos:
        row = measure_photo(name, data, true_count, source)
        rows.append(row)
        print(_line(row), flush=True)
    flagged = sum(r["flagged"] for r in rows)
    counted = [r for r in rows if r["counted"] is not None and r["true"]]
    mape = np.mean([abs(r["counted"] - r["true"]) / r["true"] for r in counted]) if counted else float("nan")
    print(f"\n{flagged} of {len(rows)} photos flagged ({flagged / max(len(rows), 1):.0%}); "
          f"mean absolute count error {mape:.1%}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
