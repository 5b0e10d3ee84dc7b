"""Run the models in use and the plausibility verdict over labelled photos; print what each got.

Not a test: the real photos belong to others and are not committed (models/README.md lists the
sources and licences). Two kinds of input:

    # a folder of photos with labels.json: {"name.jpg": {"count": 12, "source": "owner/repo"}, ...}
    .venv/bin/python scripts/measure_real_photos.py --folder var/real/photos/tray
    # photos of one pot each: the photo is the region, as `--whole-photo` is for eval and train
    .venv/bin/python scripts/measure_real_photos.py --folder var/real/photos/cells-heldout --whole-photo
    # held-out synthetic photos (seeds >= 9000), true counts from the generator
    .venv/bin/python scripts/measure_real_photos.py --synthetic 9000-9019 --size 2048x1536

`prepare` builds the folders from local clones of the public repositories (models/README.md says how
to get them): tray/ (the tray photo), cells-train/ and cells-heldout/ (its pots, one photo each, a
checkerboard half each) and rosettes/ (the cropped rosettes), each with a COCO file of plant boxes for
`demeter train` and `demeter eval --labels`, and labels.json:

    .venv/bin/python scripts/measure_real_photos.py prepare --clones var/real/sources --out var/real/photos

Each photo is decoded by the service's own decoder, counted by the in-process pipeline (the functions
the workers run) and judged with the PLAUSIBILITY_* settings. Prints one line a photo (true count,
counted, flagged, reasons) and the measured quantities the thresholds are chosen from; `--json FILE`
writes them all.
"""

from __future__ import annotations

import argparse
import itertools
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


# The tray photo is a 4 x 5 grid of pots; PlantCV's results list one observation per grid cell, row by row.
TRAY_ROWS, TRAY_COLS = 4, 5
# PlantCV's plant mask in the tutorial: Lab a* channel <= 100 (green), objects under 200 px dropped.
TRAY_A_MAX, TRAY_MIN_OBJECT = 100, 200
CROP_A_MAX, CROP_MIN_OBJECT = 115, 20  # the rosette crops: another camera, paler greens, a fifth of the side


def _cell_edges(centres: list[float], limit: int) -> list[float]:
    """Cell boundaries: midway between neighbouring centres, half a pitch beyond the outer ones."""
    half = (centres[-1] - centres[0]) / (len(centres) - 1) / 2
    middles = [(a + b) / 2 for a, b in itertools.pairwise(centres)]
    return [max(0.0, centres[0] - half), *middles, min(float(limit), centres[-1] + half)]


def tray_plants(image_bgr: np.ndarray, observations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry a pot of the tray: its cell (x1, y1, x2, y2) and its plant's box, or None when empty.

    The plants are PlantCV's (an observation with area 0 is an empty pot). Their boxes are the bounding
    rectangles of the tutorial's own plant mask in each cell, which `prepare` checks against PlantCV's
    reported width and height. Cells are cut midway between the plants' grid rows and columns.
    """
    import cv2

    height, width = image_bgr.shape[:2]
    centres = np.array([o["center_of_mass"]["value"] for o in observations], float).reshape(TRAY_ROWS, TRAY_COLS, 2)
    present = np.array([o["area"]["value"] > 0 for o in observations]).reshape(TRAY_ROWS, TRAY_COLS)
    xs = _cell_edges([float(np.median(centres[:, c, 0][present[:, c]])) for c in range(TRAY_COLS)], width)
    ys = _cell_edges([float(np.median(centres[r, :, 1][present[r, :]])) for r in range(TRAY_ROWS)], height)
    mask = (cv2.cvtColor(image_bgr, cv2.COLOR_BGR2LAB)[:, :, 1] <= TRAY_A_MAX).astype(np.uint8)
    _, _, stats, middles = cv2.connectedComponentsWithStats(mask, connectivity=8)
    objects = [(s, m) for s, m in zip(stats[1:], middles[1:], strict=True) if s[cv2.CC_STAT_AREA] >= TRAY_MIN_OBJECT]
    pots = []
    for index, observation in enumerate(observations):
        row, col = divmod(index, TRAY_COLS)
        cell = (xs[col], ys[row], xs[col + 1], ys[row + 1])
        parts = [s for s, m in objects if cell[0] <= m[0] < cell[2] and cell[1] <= m[1] < cell[3]]
        box = None
        if present[row, col] and parts:
            box = (min(float(s[0]) for s in parts), min(float(s[1]) for s in parts),
                   max(float(s[0] + s[2]) for s in parts), max(float(s[1] + s[3]) for s in parts))
        if present[row, col] != (box is not None):
            raise ValueError(f"pot {index + 1}: PlantCV and the mask disagree on whether it holds a plant")
        pots.append({"pot": index + 1, "row": row + 1, "col": col + 1, "cell": cell, "box": box,
                     "plantcv_size": (observation["width"]["value"], observation["height"]["value"])})
    return pots


def _crop_box(image_bgr: np.ndarray) -> tuple[float, float, float, float]:
    """The rosette of a cropped tray cell: the box around its green pixels.

    This camera's greens are paler than the tray photo's (a* 98-115, not below 100); the crops are
    black outside a window around the rosette, so the only green is the rosette.
    """
    import cv2

    mask = (cv2.cvtColor(image_bgr, cv2.COLOR_BGR2LAB)[:, :, 1] <= CROP_A_MAX).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    parts = [s for s in stats[1:] if s[cv2.CC_STAT_AREA] >= CROP_MIN_OBJECT]
    return (min(float(s[0]) for s in parts), min(float(s[1]) for s in parts),
            max(float(s[0] + s[2]) for s in parts), max(float(s[1] + s[3]) for s in parts))


Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in photo pixels


class _Coco:
    """One folder of photos: a COCO file of their plant boxes (what `demeter train` and `eval --labels`
    read) and labels.json of their counts (what `--folder` reads)."""

    def __init__(self, folder: Path, source: str) -> None:
        self.folder = folder
        self.source = source
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self.counts: dict[str, dict[str, Any]] = {}
        folder.mkdir(parents=True, exist_ok=True)

    def add(self, name: str, data: bytes, size: tuple[int, int], boxes: list[Box]) -> None:
        (self.folder / name).write_bytes(data)
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": name, "width": size[0], "height": size[1]})
        self.counts[name] = {"count": len(boxes), "source": self.source}
        for x1, y1, x2, y2 in boxes:
            self.annotations.append({"id": len(self.annotations) + 1, "image_id": image_id, "category_id": 1,
                                     "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                     "iscrowd": 0})

    def write(self) -> None:
        document = {"images": self.images, "annotations": self.annotations,
                    "categories": [{"id": 1, "name": "plant"}]}
        (self.folder / "annotations.json").write_text(json.dumps(document, indent=1) + "\n")
        (self.folder / "labels.json").write_text(json.dumps(self.counts, indent=2) + "\n")


def _prepare_tray(tray: Path, out: Path) -> list[_Coco]:
    import cv2

    source = "danforthcenter/plantcv-tutorial-arabidopsis-tray"
    data = _git_show(tray, "img/arabidopsis_tray.jpg")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    # PlantCV's per-plant results of this photo: one observation per pot of its 4 x 5 grid, in order.
    results = json.loads(_git_show(tray, "arabidopsis_results.json"))["observations"]
    pots = tray_plants(image, [results[f"default_{i}"] for i in range(1, len(results) + 1)])
    whole = _Coco(out / "tray", source)
    whole.add("arabidopsis_tray.jpg", data, (image.shape[1], image.shape[0]), [p["box"] for p in pots if p["box"]])
    # One photo a pot, cut from the tray photo along the grid: a checkerboard half to train on, the other
    # half held out, so both halves hold every row (plant size) and column (light across the tray).
    sets = {"train": _Coco(out / "cells-train", source), "heldout": _Coco(out / "cells-heldout", source)}
    for pot in pots:
        x1, y1, x2, y2 = (round(v) for v in pot["cell"])
        box = pot["box"]
        if box is not None and not (x1 <= box[0] and y1 <= box[1] and box[2] <= x2 and box[3] <= y2):
            raise ValueError(f"pot {pot['pot']}: the plant crosses its cell's edge")
        _, jpeg = cv2.imencode(".jpg", image[y1:y2, x1:x2], [cv2.IMWRITE_JPEG_QUALITY, 95])
        name = f"pot_r{pot['row']}c{pot['col']}.jpg"
        shifted = [(box[0] - x1, box[1] - y1, box[2] - x1, box[3] - y1)] if box is not None else []
        split = "train" if (pot["row"] + pot["col"]) % 2 == 0 else "heldout"
        sets[split].add(name, jpeg.tobytes(), (x2 - x1, y2 - y1), shifted)
        if box is not None and (round(box[2] - box[0]), round(box[3] - box[1])) != tuple(pot["plantcv_size"]):
            print(f"pot {pot['pot']}: box {box[2] - box[0]:.0f}x{box[3] - box[1]:.0f} px, PlantCV's "
                  f"{pot['plantcv_size'][0]}x{pot['plantcv_size'][1]} "
                  "(the mask in its cell holds a leaf PlantCV did not assign to it)")
    return [whole, *sets.values()]


def _prepare_rosettes(crops: Path, out: Path) -> _Coco:
    import cv2

    rosettes = _Coco(out / "rosettes", "danforthcenter/plantcv-tutorial_leaf_instance_segmentation")
    for path in _git_files(crops):
        if path.startswith("test_img/") and path.endswith(".jpg"):
            # One rosette a photo (the tutorial's cropped tray cells), photographed daily as it grows.
            name = "rosette_" + Path(path).name.split("_", 2)[-1]
            data = _git_show(crops, path)
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            rosettes.add(name, data, (image.shape[1], image.shape[0]), [_crop_box(image)])
    return rosettes


def prepare(clones: Path, out: Path) -> int:
    """Write the labelled photos of the local clones under `out`, one folder a set, each with a COCO file.

    out/tray (the whole tray photo), out/cells-train and out/cells-heldout (its pots, one photo each),
    out/rosettes (the cropped rosettes). Every folder has a labels.json of counts for `--folder`;
    out/labels.json lists them all.
    """
    out.mkdir(parents=True, exist_ok=True)
    sets: list[_Coco] = []
    tray = clones / "plantcv-tutorial-arabidopsis-tray"
    if tray.exists():
        sets += _prepare_tray(tray, out)
    crops = clones / "plantcv-tutorial_leaf_instance_segmentation"
    if crops.exists():
        sets.append(_prepare_rosettes(crops, out))
    labels: dict[str, dict[str, Any]] = {}
    for photos in sets:
        photos.write()
        labels.update({f"{photos.folder.name}/{name}": count for name, count in photos.counts.items()})
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


def measure_photo(name: str, data: bytes, true_count: int | None, source: str,
                  whole_photo: bool = False) -> dict[str, Any]:
    settings = get_settings()
    registry = get_registry()
    row: dict[str, Any] = {"photo": name, "source": source, "true": true_count}
    try:
        info = inspect_image(data, max_aspect_ratio=settings.max_aspect_ratio)
    except InvalidImage as exc:
        return {**row, "counted": None, "flagged": True, "reasons": [{"check": "refused", "message": str(exc)}]}
    image = decode_rgb(data)
    started = time.monotonic()
    analysis = analyse_photo(image, registry, "whole" if whole_photo else "segment")
    regions = [RegionDetections(r.region.bbox, r.detections.boxes, r.detections.scores, r.plant_like)
               for r in analysis.regions]
    card = registry.detection_card()
    # As the workers judge: a whole photo holds floor too, so it is no evidence of a sparse container.
    reasons = judge(card, (info.width, info.height), regions, limits_from(settings), segmented=not whole_photo)
    measured = measure(card, (info.width, info.height), regions, segmented=not whole_photo).as_dict()
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
    parser.add_argument("--whole-photo", action="store_true",
                        help="count each photo as one region (a photo of one pot), not segmented containers")
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
        row = measure_photo(name, data, true_count, source, args.whole_photo)
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
