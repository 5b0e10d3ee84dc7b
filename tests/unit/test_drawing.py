"""The annotated image and the thumbnail as a person sees them (pure drawing, no service)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFont

from app.drawing import (
    LEGEND_BACKGROUND,
    THUMBNAIL_SIDE,
    Legend,
    RegionMark,
    Scale,
    draw_annotated,
    draw_thumbnail,
    font,
    legend_lines,
)

REGIONS = [
    RegionMark(0, "tray", (100, 100, 900, 700), (), 140),
    RegionMark(1, "segment", (1000, 100, 1900, 1400), [(1000, 100), (1900, 100), (1900, 1400), (1000, 1400)], 75),
    RegionMark(2, "tray", (100, 800, 900, 1400), (), None),
]
LEGEND = Legend(12, 215, "warning", "container_seg.pt + plant_det.pt",
                ({"region_index": 2, "error": "detection timed out"},))


def _photo(width: int = 2048, height: int = 1536) -> Image.Image:
    return Image.new("RGB", (width, height), (90, 70, 50))


def test_the_legend_says_total_status_classes_model_and_warnings() -> None:
    image, drawn = draw_annotated(_photo(), REGIONS, [(120, 120, 140, 140)], LEGEND)
    assert drawn == [
        "Photo 12: 215 plants",
        "status: warning",
        "segment: 1 region, 75 plants",
        "tray: 2 regions, 140 plants",
        "model: container_seg.pt + plant_det.pt",
        "warnings: region #2: detection timed out",
    ]
    # The legend is a strip below the photo: the photo keeps its size and coordinates.
    assert image.width == 2048 and image.height > 1536
    strip = np.asarray(image)[1536:]
    background = np.all(strip == LEGEND_BACKGROUND, axis=-1).mean()
    assert 0.6 < background < 1.0  # mostly background, and something written on it


def test_a_photo_without_regions_or_warnings_says_so() -> None:
    lines = [text for text, _ in legend_lines(Legend(3, 0, "completed", "m.pt + d.pt"), [])]
    assert lines == ["Photo 3: 0 plants", "status: completed", "no regions found", "model: m.pt + d.pt",
                     "warnings: none"]
    assert legend_lines(Legend(4, None, "failed", "m"), [])[0][0] == "Photo 4: not counted"


def test_text_and_lines_grow_with_the_photo() -> None:
    assert Scale.of((2048, 1536)) == Scale(font_size=34, region_width=4, plant_width=2, padding=11)
    assert Scale.of((640, 480)).font_size == 12  # never smaller than readable
    assert Scale.of((4096, 3072)).font_size == 68
    assert isinstance(font(34), ImageFont.FreeTypeFont)  # a real scalable font, not the 8-px bitmap


def test_labels_sit_on_a_solid_background_in_the_region_colour() -> None:
    image, _ = draw_annotated(_photo(), REGIONS[:1], [], LEGEND)
    label_area = np.asarray(image)[100 + 4 * 2:100 + 4 * 2 + 30, 100 + 20:100 + 60]
    assert np.all(label_area == (255, 170, 0), axis=-1).mean() > 0.5  # the tray colour behind the text


def test_the_thumbnail_is_the_photo_with_its_total_and_no_boxes() -> None:
    photo = _photo()
    small, text = draw_thumbnail(photo, LEGEND)
    assert text == "215 plants"
    assert max(small.size) <= THUMBNAIL_SIDE and small.size == (512, 384)
    pixels = np.asarray(small)
    assert np.all(pixels[:250] == (90, 70, 50))  # the upper part is the photo, untouched
    assert not np.all(pixels[-40:] == (90, 70, 50))  # the banner with the total at the bottom
    assert np.asarray(photo).max() == 90  # the photo itself was not drawn on
