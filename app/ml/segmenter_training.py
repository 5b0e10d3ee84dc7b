"""`demeter train --segmenter`: fine-tune the container segmenter on a grower's labelled trays and beds.

Input: a COCO JSON file (or a folder holding `annotations.json` and `images/`), as CVAT and Label
Studio export it, whose categories include the segmenter's classes (`tray`, `segment` for the shipped
models/container_seg.pt). A container labelled as a polygon trains with its outline; one labelled as
a box trains with the box's four corners as its outline. Other categories (plants) are ignored.
Photos are split into training and held-out photos (whole photos), written as a YOLO segmentation
set (normalised polygons) and trained with ultralytics' trainer, offline, from the segmenter in use
(SEGMENTATION_WEIGHTS, or `--base`: printed first, its name and weights SHA-256 recorded in the card).

Output: `<out>/<name>-<UTC time>/container_seg.pt` and its card `container_seg.card.json` (classes,
photos, validation figures). The workers use it with SEGMENTATION_WEIGHTS=<that path>.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.ml.cards import weights_digest, write_card
from app.ml.offline import configure_offline

Progress = Callable[[str], None]
WEIGHTS_NAME = "container_seg.pt"


class SegmenterLabelError(ValueError):
    """The labels hold no container of the segmenter's classes, or name images that are not there."""


@dataclass(frozen=True)
class SegmenterPlan:
    data: Path  # COCO JSON file, or a folder with annotations.json and images/
    out: Path  # parent of the new model directory
    name: str
    base_weights: Path  # the segmenter to start from
    imgsz: int  # network input, px
    epochs: int
    batch: int
    device: str  # "cpu", "0", ...
    val_fraction: float  # share of photos held out for validation
    max_photos: int | None
    seed: int
    work: Path  # scratch folder for the YOLO set and the trainer's run
    base_name: str = ""  # how base_weights was named: `shipped` (SEGMENTATION_WEIGHTS) or its path; "": its file name


@dataclass(frozen=True)
class ContainerPhoto:
    image: Path
    width: int
    height: int
    outlines: list[tuple[int, list[float]]]  # (class index, [x1, y1, x2, y2, ...] in pixels)


def _coco_file(data: Path) -> Path:
    return data if data.is_file() else data / "annotations.json"


def read_containers(data: Path, classes: tuple[str, ...]) -> list[ContainerPhoto]:
    """The photos of a COCO set with their containers of `classes`, by file name. Raises SegmenterLabelError."""
    coco_file = _coco_file(data)
    coco = json.loads(coco_file.read_text())
    wanted = {int(c["id"]): classes.index(c["name"]) for c in coco["categories"] if c["name"] in classes}
    if not wanted:
        raise SegmenterLabelError(f"no category named {', '.join(classes)} in {coco_file}")
    outlines: dict[int, list[tuple[int, list[float]]]] = {}
    for annotation in coco["annotations"]:
        if int(annotation["category_id"]) not in wanted:
            continue
        polygons = annotation.get("segmentation")
        if isinstance(polygons, list) and polygons and len(polygons[0]) >= 6:
            outline = [float(v) for v in polygons[0]]
        else:  # a box: its corners
            x, y, w, h = (float(v) for v in annotation["bbox"])
            outline = [x, y, x + w, y, x + w, y + h, x, y + h]
        outlines.setdefault(int(annotation["image_id"]), []).append((wanted[int(annotation["category_id"])], outline))
    folder = coco_file.parent / "images"
    photos = []
    for image in sorted(coco["images"], key=lambda i: str(i["file_name"])):
        path = folder / Path(str(image["file_name"])).name
        if not path.is_file():
            raise SegmenterLabelError(f"{image['file_name']}: no such image in {folder}")
        found = outlines.get(int(image["id"]), [])
        photos.append(ContainerPhoto(path, int(image["width"]), int(image["height"]), found))
    if not any(p.outlines for p in photos):
        raise SegmenterLabelError(f"no container of {', '.join(classes)} labelled in {coco_file}")
    return photos


def split_photos(photos: list[ContainerPhoto], val_fraction: float,
                 seed: int) -> tuple[list[ContainerPhoto], list[ContainerPhoto]]:
    """Training and held-out photos (at least one each when there are two or more photos)."""
    shuffled = photos[:]
    random.Random(seed).shuffle(shuffled)
    held = min(len(shuffled) - 1, max(1, round(len(shuffled) * val_fraction))) if len(shuffled) > 1 else 0
    return shuffled[held:] or shuffled, shuffled[:held] or shuffled


def label_lines(photo: ContainerPhoto) -> list[str]:
    """YOLO segmentation lines: `class x1 y1 x2 y2 ...`, divided by the photo's width and height, clipped to 0..1."""
    lines = []
    for cls, outline in photo.outlines:
        xs = [min(max(v / photo.width, 0.0), 1.0) for v in outline[0::2]]
        ys = [min(max(v / photo.height, 0.0), 1.0) for v in outline[1::2]]
        lines.append(" ".join([str(cls), *(f"{x:.6f} {y:.6f}" for x, y in zip(xs, ys, strict=True))]))
    return lines


def write_yolo_set(root: Path, train: list[ContainerPhoto], val: list[ContainerPhoto],
                   classes: tuple[str, ...]) -> Path:
    """The photos and their outlines as a YOLO segmentation set under `root`; returns its data.yaml."""
    for split, photos in (("train", train), ("val", val)):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        for photo in photos:
            shutil.copyfile(photo.image, root / split / "images" / photo.image.name)
            (root / split / "labels" / f"{photo.image.stem}.txt").write_text("\n".join(label_lines(photo)) + "\n")
    lines = [f"path: {root.resolve()}", "train: train/images", "val: val/images", "names:"]
    lines += [f"  {i}: {json.dumps(name)}" for i, name in enumerate(classes)]
    data_yaml = root / "data.yaml"
    data_yaml.write_text("\n".join(lines) + "\n")
    return data_yaml


def base_classes(weights: Path) -> tuple[str, ...]:
    """The class names of the segmenter to start from, in its index order."""
    configure_offline()
    from ultralytics import YOLO

    names = YOLO(str(weights), task="segment").names
    return tuple(str(names[i]) for i in sorted(names))


def train_segmenter(plan: SegmenterPlan, progress: Progress = print) -> Path:
    """Fine-tune the segmenter as `plan` says; returns the new model directory. Raises SegmenterLabelError."""
    configure_offline()
    from ultralytics import YOLO

    base_digest = weights_digest(plan.base_weights)
    base_name = plan.base_name or plan.base_weights.name
    progress(f"starting from {base_name}: {plan.base_weights} (sha256 {base_digest[:12]})")
    classes = base_classes(plan.base_weights)
    photos = read_containers(plan.data, classes)[: plan.max_photos]
    train, val = split_photos(photos, plan.val_fraction, plan.seed)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    model_name = f"{plan.name}-{stamp}"
    work = plan.work / model_name
    data_yaml = write_yolo_set(work / "data", train, val, classes)
    progress(f"{len(photos)} photos ({len(train)} to train on, {len(val)} held out), "
             f"{sum(len(p.outlines) for p in photos)} containers of {', '.join(classes)}")
    model = YOLO(str(plan.base_weights), task="segment")
    # Whole photos at the segmenter's input size, as inference sees them; a short warm-up from trained weights.
    model.train(data=str(data_yaml), epochs=plan.epochs, imgsz=plan.imgsz, batch=plan.batch, device=plan.device,
                workers=0, project=str(work.resolve()), name="run", exist_ok=True, pretrained=True,
                optimizer="AdamW", lr0=0.001, warmup_epochs=0.5, mosaic=0.0, close_mosaic=0, amp=False,
                plots=False, seed=plan.seed, deterministic=True, val=True, verbose=False)
    trainer = model.trainer
    if trainer is None:
        raise RuntimeError("ultralytics returned no trainer")
    best = Path(trainer.best) if Path(trainer.best).exists() else Path(trainer.last)
    model_dir = plan.out / model_name
    model_dir.mkdir(parents=True)
    weights = model_dir / WEIGHTS_NAME
    shutil.copyfile(best, weights)
    digest = weights_digest(weights)
    metrics = {k: round(float(v), 4) for k, v in (trainer.metrics or {}).items() if k.startswith("metrics/")}
    document: dict[str, Any] = {
        "id": f"{model_name}@{digest[:12]}", "model": model_name, "task": "segment", "weights_sha256": digest,
        "classes": list(classes), "base_weights": plan.base_weights.name,
        "base_model": {"name": base_name, "weights": plan.base_weights.name, "weights_sha256": base_digest},
        "training_data": {"photos": {"train": len(train), "held_out": len(val),
                                     "held_out_names": [p.image.name for p in val]},
                          "containers": sum(len(p.outlines) for p in photos)},
        "training": {"epochs": plan.epochs, "imgsz": plan.imgsz, "batch": plan.batch, "device": plan.device},
        "validation": metrics,
    }
    write_card(document, weights)
    progress(f"segmenter {model_name} written to {model_dir}")
    return model_dir
