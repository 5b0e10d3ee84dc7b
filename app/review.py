"""A photo's detections as COCO JSON or YOLO txt, to load as pre-annotations in CVAT or Label Studio.

Corrected in either tool and exported again (COCO or YOLO), they go straight back into `demeter train`.
Plain functions of plain values: the API and the command line both call them; nothing here imports a
model or the database.

The COCO document is the "instances" shape both importers read:
- CVAT's COCO 1.0 importer is Datumaro's `coco_instances` (upload a .json or a zip holding
  annotations/instances_default.json). Its page mapper refuses a file without all five top-level
  sections `licenses`, `info`, `categories`, `images`, `annotations` ("Cannot find the licenses
  section", cvat-ai/cvat#9406; datumaro rust/src/coco_page_mapper.rs). Its parser
  (datumaro/plugins/data_formats/coco/base.py) requires each image's `id` (int) and `file_name`
  (matched, without its extension, with the task's image names), each category's `id` (int) and
  `name`, and each annotation's `id`, `image_id`, `category_id` (ints; 0 means "no label", so ids start
  at 1), `iscrowd` (int), `segmentation` (list or RLE dict: an empty list means "a box") and `bbox`
  [x, y, width, height] in pixels; a `score` becomes the shape's score attribute. `area` is not read.
- Label Studio's COCO import (`label-studio-converter import coco -i FILE --out-type predictions`, from
  label-studio-sdk, label_studio_sdk/converter/imports/coco.py) reads `images` (`id`, `file_name`,
  `width`, `height`: boxes become percentages of them), `categories` (`id`, `name`) and each
  annotation's `image_id`, `category_id`, `bbox` and `score` (read unconditionally), and makes
  polygons only of non-empty segmentations. The older standalone label-studio-converter fails on an
  empty segmentation list (IndexError, HumanSignal/label-studio-converter#289; fixed in the SDK's, #238).
Regions (trays, beds) are included as further categories when asked, with their outline as polygon.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PLANT_CATEGORY = "plant"


@dataclass(frozen=True)
class ReviewRegion:
    """One region of the photo: class name, box x1, y1, x2, y2 and outline [[x, y], ...] in pixels."""

    class_name: str
    bbox: tuple[int, int, int, int]
    polygon: list[list[float]]
    confidence: float


def coco_detections(*, image_id: int, file_name: str, width: int, height: int,
                    plants: list[tuple[float, float, float, float, float]],
                    regions: list[ReviewRegion] | None = None) -> dict[str, Any]:
    """COCO instances JSON of one photo: `plants` rows (x1, y1, x2, y2, score) as `plant` boxes (category 1).

    With `regions`, each region class is one more category (2, 3, ... in order of first appearance)
    and each region one annotation with its outline.
    """
    categories = [{"id": 1, "name": PLANT_CATEGORY, "supercategory": "plant"}]
    annotations: list[dict[str, Any]] = []
    for x1, y1, x2, y2, score in plants:
        w, h = x2 - x1, y2 - y1
        annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                            "bbox": [round(x1, 1), round(y1, 1), round(w, 1), round(h, 1)],
                            "area": round(w * h, 1), "iscrowd": 0, "segmentation": [], "score": round(score, 3)})
    region_ids: dict[str, int] = {}
    for region in regions or []:
        if region.class_name not in region_ids:
            region_ids[region.class_name] = len(categories) + 1
            categories.append({"id": region_ids[region.class_name], "name": region.class_name,
                               "supercategory": "container"})
        x1, y1, x2, y2 = region.bbox
        outline = [round(float(v), 1) for point in region.polygon for v in point]
        annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                            "category_id": region_ids[region.class_name],
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float((x2 - x1) * (y2 - y1)), "iscrowd": 0,
                            "segmentation": [outline] if len(outline) >= 6 else [],
                            "score": round(region.confidence, 3)})
    return {"info": {"description": "Demeter Pipeline detections", "version": "1.0"}, "licenses": [],
            "images": [{"id": image_id, "file_name": file_name, "width": width, "height": height}],
            "annotations": annotations, "categories": categories}


def yolo_detections(*, width: int, height: int, plants: list[tuple[float, float, float, float, float]]) -> str:
    """YOLO txt of one photo: `0 cx cy w h` per plant, divided by the photo's width and height.

    What CVAT's YOLO 1.1 and Ultralytics YOLO importers and Label Studio's `import yolo` read, with
    `classes.txt` / `obj.names` holding the single line `plant`.
    """
    lines = []
    for x1, y1, x2, y2, _score in plants:
        lines.append(f"0 {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} {(x2 - x1) / width:.6f} "
                     f"{(y2 - y1) / height:.6f}\n")
    return "".join(lines)
