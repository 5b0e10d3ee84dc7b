"""Both COCO exports (the API's `?format=coco` and `demeter export-detections --format coco`) hold every
field CVAT's COCO 1.0 importer and Label Studio's COCO import require.

The requirements, as their code reads them (cited in app/review.py):
- CVAT (Datumaro's coco_instances): the five top-level sections (its page mapper refuses a file
  without `licenses`, cvat-ai/cvat#9406); images `id` int, `file_name` str; categories `id` int from 1
  (0 is "no label"), `name` str; annotations `id`, `image_id`, `category_id`, `iscrowd` ints,
  `segmentation` a list (or RLE dict), `bbox` a list of 4; `score` a number when present.
- Label Studio (label_studio_sdk.converter.imports.coco): images `id`, `file_name`, `width`, `height`;
  categories `id`, `name`; annotations `image_id`, `category_id`, `bbox`, and `score` (read for every box).
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from app.api.schemas import DetectionOut, PhotoDetections, RegionDetections
from app.api.views import coco_document
from app.review import ReviewRegion, coco_detections

SECTIONS = {"licenses", "info", "categories", "images", "annotations"}


def importer_problems(document: dict[str, Any]) -> list[str]:
    """What CVAT's or Label Studio's COCO importer would refuse or miss in `document` (empty: nothing)."""
    problems = [f"no top-level {key!r}" for key in sorted(SECTIONS - set(document))]
    for image in document.get("images", []):
        for key, kind in (("id", int), ("file_name", str), ("width", int), ("height", int)):
            if not isinstance(image.get(key), kind):
                problems.append(f"image {key} is not {kind.__name__}: {image.get(key)!r}")
    category_ids = set()
    for category in document.get("categories", []):
        if not isinstance(category.get("id"), int) or category["id"] < 1:
            problems.append(f"category id must be an int from 1: {category.get('id')!r}")
        if not isinstance(category.get("name"), str):
            problems.append(f"category without a name: {category!r}")
        category_ids.add(category.get("id"))
    image_ids = {image.get("id") for image in document.get("images", [])}
    for annotation in document.get("annotations", []):
        for key in ("id", "image_id", "category_id", "iscrowd"):
            if type(annotation.get(key)) is not int:
                problems.append(f"annotation {key} is not an int: {annotation.get(key)!r}")
        if annotation.get("image_id") not in image_ids or annotation.get("category_id") not in category_ids:
            problems.append(f"annotation {annotation.get('id')} names an unknown image or category")
        if not isinstance(annotation.get("segmentation"), list | dict):
            problems.append(f"annotation {annotation.get('id')} has no segmentation list")
        bbox = annotation.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and bbox[2] > 0 and bbox[3] > 0):
            problems.append(f"annotation {annotation.get('id')} bbox is not [x, y, width, height]: {bbox!r}")
        if not isinstance(annotation.get("score"), int | float):
            problems.append(f"annotation {annotation.get('id')} has no score (Label Studio reads it)")
    ids = [a.get("id") for a in document.get("annotations", [])]
    if len(ids) != len(set(ids)):
        problems.append("annotation ids repeat")
    return problems


def _api_document() -> dict[str, Any]:
    view = PhotoDetections(photo_id=uuid4(), status="completed", width=640, height=480, regions=[
        RegionDetections(index=0, class_name="tray", bbox=(0, 0, 100, 100), polygon=[], count=2, detections=[
            DetectionOut(bbox=(1.0, 2.0, 4.5, 6.0), score=0.9), DetectionOut(bbox=(5.0, 5.0, 6.0, 9.0), score=0.4)])])
    return coco_document(view, "bench.jpg")


def _cli_document() -> dict[str, Any]:
    region = ReviewRegion("tray", (0, 0, 100, 100), [[0, 0], [100, 0], [100, 100], [0, 100]], 0.97)
    return coco_detections(image_id=12, file_name="bench.jpg", width=640, height=480,
                           plants=[(1.0, 2.0, 4.5, 6.0, 0.9), (5.0, 5.0, 6.0, 9.0, 0.4)], regions=[region])


@pytest.mark.parametrize("build", [_api_document, _cli_document], ids=["api", "cli"])
def test_the_coco_export_holds_what_both_importers_require(build: Any) -> None:
    document = build()

    assert importer_problems(document) == []
    assert document["images"][0]["file_name"] == "bench.jpg"  # what the tool matches with its image
    plant = next(c["id"] for c in document["categories"] if c["name"] == "plant")
    boxes = [a["bbox"] for a in document["annotations"] if a["category_id"] == plant]
    assert boxes == [[1.0, 2.0, 3.5, 4.0], [5.0, 5.0, 1.0, 4.0]]  # x, y, width, height in pixels


def test_the_check_finds_what_an_importer_would_refuse() -> None:
    document = _cli_document()
    del document["licenses"]
    document["annotations"][0].pop("segmentation")
    document["annotations"][1]["score"] = None

    assert importer_problems(document) == ["no top-level 'licenses'", "annotation 1 has no segmentation list",
                                           "annotation 2 has no score (Label Studio reads it)"]
