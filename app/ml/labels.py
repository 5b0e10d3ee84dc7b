"""A grower's labelled photos: YOLO txt or COCO JSON, boxes or points, read into one shape.

Layouts `demeter train` and `demeter eval` accept in a directory DIR:

* COCO: a JSON file in DIR with `images`, `annotations` and `categories` (what CVAT, Label Studio and
  `demeter synth` write). An annotation is a box (`bbox` [x, y, width, height] in pixels) or a point:
  a `bbox` of zero width and height, or `keypoints` [x, y, visibility, ...] (the first visible point).
  Images are looked up by `file_name` under DIR, then under DIR/images.
* YOLO: photos in DIR/images (or DIR), one DIR/labels/<photo stem>.txt each. A line is a box
  `class cx cy w h` or a point `class x y`, all divided by the photo's width and height (YOLO's
  normalised format). Class names come from DIR/classes.txt or DIR/obj.names (one a line; what Label
  Studio and CVAT export), else class 0 is `plant`. A photo without a label file is unlabelled and
  skipped; an empty file means "no plants".

Points (one click per plant, the cheapest label) become boxes of the expected plant size with
`with_point_boxes`. Sizes are stated at a long side of `REFERENCE_LONG_SIDE` pixels, as in the model
cards, so one size fits photos of any resolution.

A per-photo counts file (`counts.csv`: `file_name,count` lines, a header allowed) carries only totals;
`demeter eval` scores counts with it, training cannot use it.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

REFERENCE_LONG_SIDE = 2048  # sizes are stated at this long side (app.ml.cards, app.ml.synthetic)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_CLASSES = ("plant",)


class LabelError(ValueError):
    """Labels that cannot be read (a missing photo, a malformed line or file)."""


@dataclass(frozen=True)
class LabelledPhoto:
    """One photo and its labels, in photo pixels."""

    image: Path
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) float64 x1, y1, x2, y2; a point is a box of zero size until `with_point_boxes`
    classes: np.ndarray  # (N,) int64, index into LabelSet.classes
    points: np.ndarray  # (N,) bool: True where the label was a point

    @property
    def name(self) -> str:
        return self.image.name

    @property
    def scale(self) -> float:
        """Photo pixels per pixel at the reference long side."""
        return max(self.width, self.height) / REFERENCE_LONG_SIDE


@dataclass(frozen=True)
class LabelSet:
    classes: tuple[str, ...]
    photos: tuple[LabelledPhoto, ...]
    source: str  # "coco" | "yolo"

    @property
    def labels(self) -> int:
        return sum(len(p.boxes) for p in self.photos)

    @property
    def point_labels(self) -> int:
        return sum(int(p.points.sum()) for p in self.photos)

    def box_sides(self) -> np.ndarray:
        """sqrt(width x height) of every box label (not points), at the reference long side."""
        sides = [np.sqrt((p.boxes[~p.points, 2] - p.boxes[~p.points, 0]) * (p.boxes[~p.points, 3]
                 - p.boxes[~p.points, 1])) / p.scale for p in self.photos]
        return np.concatenate(sides) if sides else np.zeros(0)


def _photo(image: Path, rows: list[tuple[int, float, float, float, float]], point: list[bool]) -> LabelledPhoto:
    with Image.open(image) as opened:
        width, height = opened.size
    boxes = np.array([r[1:] for r in rows], np.float64).reshape(-1, 4)
    return LabelledPhoto(image, width, height, boxes, np.array([r[0] for r in rows], np.int64),
                         np.array(point, bool))


def _find_image(directory: Path, file_name: str) -> Path:
    images = directory / "images"
    for candidate in (directory / file_name, images / file_name, images / Path(file_name).name):
        if candidate.is_file():
            return candidate
    raise LabelError(f"photo {file_name!r} of the COCO file is neither in {directory} nor in {directory / 'images'}")


def _coco_file(directory: Path) -> Path | None:
    for path in sorted(directory.glob("*.json")):
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(document, dict) and {"images", "annotations", "categories"} <= document.keys():
            return path
    return None


def read_coco(path: Path) -> LabelSet:
    """Boxes and points of a COCO file; categories keep their names, in id order."""
    document = json.loads(path.read_text())
    categories = sorted(document["categories"], key=lambda c: int(c["id"]))
    index = {int(c["id"]): i for i, c in enumerate(categories)}
    rows: dict[int, list[tuple[int, float, float, float, float]]] = {int(i["id"]): [] for i in document["images"]}
    points: dict[int, list[bool]] = {image_id: [] for image_id in rows}
    for annotation in document["annotations"]:
        image_id, cls = int(annotation["image_id"]), index[int(annotation["category_id"])]
        keypoints = annotation.get("keypoints") or []
        x, y, w, h = (float(v) for v in annotation.get("bbox") or (0, 0, 0, 0))
        if w <= 0 and h <= 0 and len(keypoints) >= 3:
            visible = [i for i in range(0, len(keypoints) - 2, 3) if keypoints[i + 2] > 0]
            if not visible:
                continue
            x, y = float(keypoints[visible[0]]), float(keypoints[visible[0] + 1])
        is_point = w <= 0 and h <= 0
        rows[image_id].append((cls, x, y, x + max(w, 0.0), y + max(h, 0.0)))
        points[image_id].append(is_point)
    photos = tuple(_photo(_find_image(path.parent, str(image["file_name"])), rows[int(image["id"])],
                          points[int(image["id"])]) for image in document["images"])
    return LabelSet(tuple(str(c["name"]) for c in categories), photos, "coco")


def _yolo_classes(directory: Path) -> tuple[str, ...]:
    for name in ("classes.txt", "obj.names"):
        path = directory / name
        if path.is_file():
            names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
            if names:
                return names
    return DEFAULT_CLASSES


def _yolo_rows(path: Path, width: int, height: int) -> tuple[list[tuple[int, float, float, float, float]], list[bool]]:
    rows, points = [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            cls, values = int(fields[0]), [float(v) for v in fields[1:]]
        except ValueError as exc:
            raise LabelError(f"{path}:{number}: not a YOLO line: {line!r}") from exc
        if len(values) == 2:
            x, y = values[0] * width, values[1] * height
            rows.append((cls, x, y, x, y))
            points.append(True)
        elif len(values) == 4:
            cx, cy, w, h = values[0] * width, values[1] * height, values[2] * width, values[3] * height
            rows.append((cls, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
            points.append(False)
        else:
            raise LabelError(f"{path}:{number}: a YOLO line is `class cx cy w h` or a point `class x y`: {line!r}")
    return rows, points


def read_yolo(directory: Path) -> LabelSet:
    images = directory / "images" if (directory / "images").is_dir() else directory
    labels = directory / "labels" if (directory / "labels").is_dir() else images
    photos = []
    for image in sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        label = labels / f"{image.stem}.txt"
        if not label.is_file():
            continue  # unlabelled
        with Image.open(image) as opened:
            width, height = opened.size
        rows, points = _yolo_rows(label, width, height)
        photos.append(_photo(image, rows, points))
    return LabelSet(_yolo_classes(directory), tuple(photos), "yolo")


def read_labels(directory: Path) -> LabelSet:
    """The labelled photos in `directory`: a COCO file when there is one, else YOLO txt files.

    Raises LabelError when there are no labelled photos or a label names a class that does not exist.
    """
    directory = Path(directory)
    coco = _coco_file(directory)
    labels = read_coco(coco) if coco is not None else read_yolo(directory)
    if not labels.photos:
        raise LabelError(f"no labelled photos in {directory} (a COCO JSON file, or images/ with labels/*.txt)")
    for photo in labels.photos:
        if len(photo.classes) and int(photo.classes.max()) >= len(labels.classes):
            raise LabelError(f"{photo.name}: class {int(photo.classes.max())} but only {len(labels.classes)} "
                             f"class names ({', '.join(labels.classes)})")
    return labels


def with_point_boxes(labels: LabelSet, plant_side: float) -> LabelSet:
    """Points become square boxes `plant_side` pixels wide at the reference long side, clipped to the photo."""
    photos = []
    for photo in labels.photos:
        half = plant_side * photo.scale / 2
        boxes = photo.boxes.copy()
        centres = boxes[photo.points, :2]
        boxes[photo.points] = np.concatenate([centres - half, centres + half], 1)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, photo.width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, photo.height)
        photos.append(replace(photo, boxes=boxes))
    return replace(labels, photos=tuple(photos))


def read_counts(path: Path) -> dict[str, int]:
    """`file_name,count` lines (a header line allowed) -> {file name: count}."""
    counts = {}
    with Path(path).open(newline="") as handle:
        for row in csv.reader(handle):
            if len(row) < 2 or not row[0].strip():
                continue
            try:
                counts[Path(row[0].strip()).name] = int(row[1])
            except ValueError:
                if counts:  # only the first line may be a header
                    raise LabelError(f"{path}: not a count: {row!r}") from None
    if not counts:
        raise LabelError(f"{path}: no `file_name,count` lines")
    return counts


def data_digest(labels: LabelSet) -> str:
    """SHA-256 over every photo's bytes and labels, in name order: which data a model was trained on."""
    digest = hashlib.sha256()
    for photo in sorted(labels.photos, key=lambda p: p.name):
        digest.update(photo.name.encode())
        digest.update(hashlib.sha256(photo.image.read_bytes()).digest())
        digest.update(np.ascontiguousarray(photo.boxes, np.float64).tobytes())
        digest.update(np.ascontiguousarray(photo.classes, np.int64).tobytes())
    digest.update("\n".join(labels.classes).encode())
    return digest.hexdigest()


def select_classes(labels: LabelSet, names: list[str]) -> LabelSet:
    """Keep only the labels of the named classes, renumbered in the order given.

    Raises LabelError for a name the labels do not have.
    """
    missing = [n for n in names if n not in labels.classes]
    if missing:
        raise LabelError(f"no class {', '.join(missing)} in the labels (they have {', '.join(labels.classes)})")
    remap = np.full(len(labels.classes), -1, np.int64)
    for new, name in enumerate(names):
        remap[labels.classes.index(name)] = new
    photos = []
    for photo in labels.photos:
        classes = remap[photo.classes] if len(photo.classes) else photo.classes
        keep = classes >= 0
        photos.append(replace(photo, boxes=photo.boxes[keep], classes=classes[keep], points=photo.points[keep]))
    return LabelSet(tuple(names), tuple(photos), labels.source)
