"""The segmenter's input is resized before the channel flip: the same pixels and regions as ultralytics' own."""

from __future__ import annotations

import numpy as np
import pytest
from ultralytics.data.augment import LetterBox

from app.ml.registry import get_registry
from app.ml.segmentation import letterbox_input
from app.ml.synthetic import render_photo


@pytest.mark.parametrize("size", [(4000, 3000), (3000, 4000), (2048, 1536), (1023, 767)])
def test_the_resized_photo_is_the_one_ultralytics_letterbox_would_make(size: tuple[int, int]) -> None:
    image = render_photo(9600, *size).image
    resized, scale_x, scale_y = letterbox_input(image, 512, 32)
    theirs = LetterBox(512, auto=True, stride=32)(image=np.ascontiguousarray(image[..., ::-1]))
    ours = LetterBox(512, auto=True, stride=32)(image=resized)  # only pads now: already at its size
    np.testing.assert_array_equal(ours, theirs)
    assert scale_x == pytest.approx(size[0] / resized.shape[1]) and scale_y == pytest.approx(size[1] / resized.shape[0])


def test_a_photo_smaller_than_the_input_is_left_for_ultralytics_to_enlarge() -> None:
    image = render_photo(9600, 400, 300).image
    resized, scale_x, scale_y = letterbox_input(image, 512, 32)
    np.testing.assert_array_equal(resized, image[..., ::-1])
    assert (scale_x, scale_y) == (1.0, 1.0)


def test_segment_photo_finds_the_regions_it_found_when_predict_resized_the_full_photo(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from app.ml import segmentation
    from app.ml.pipeline import find_regions

    registry = get_registry()
    for seed, size in ((9600, (4000, 3000)), (9611, (2048, 1536))):
        image = render_photo(seed, *size).image
        ours = find_regions(image, registry)
        with monkeypatch.context() as patched:  # the photo as it is: predict letterboxes it itself
            patched.setattr(segmentation, "letterbox_input", lambda photo, *_: (photo[..., ::-1], 1.0, 1.0))
            theirs = find_regions(image, registry)
        assert len(ours) == len(theirs) > 0
        for region, their in zip(ours, theirs, strict=True):
            assert (region.class_name, region.confidence) == (their.class_name, their.confidence)
            assert np.abs(np.subtract(region.bbox, their.bbox)).max() <= 1, (region.bbox, their.bbox)
            assert np.abs(np.subtract(region.polygon, their.polygon)).max() <= 1.0


class _Export:
    """Stands in for an ultralytics YOLO loaded from an export: `.model` is the file's path, not a network."""

    model = "container_seg_openvino_model"
    names = {0: "tray"}

    def __init__(self) -> None:
        self.inputs: list[tuple[int, ...]] = []

    def predict(self, image: np.ndarray, **_: object) -> list[object]:
        self.inputs.append(image.shape)
        return [type("Result", (), {"boxes": None})()]


def test_an_exported_segmenter_gets_the_whole_photo_to_letterbox_at_its_own_input_size() -> None:
    from app.ml.segmentation import segment_photo

    export = _Export()
    image = render_photo(9600, 2048, 1536).image
    assert segment_photo(export, image, imgsz=512, confidence=0.25, class_map={}) == []
    assert export.inputs == [(1536, 2048, 3)]
