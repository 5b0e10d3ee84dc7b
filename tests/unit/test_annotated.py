"""The annotated image says when its count is doubtful."""

from __future__ import annotations

import numpy as np
from PIL import Image

from app.tasks.io import DOUBT_BANNER, draw_annotations


def _banner_pixels(image: Image.Image) -> int:
    return int((np.asarray(image) == np.array(DOUBT_BANNER, np.uint8)).all(axis=-1).sum())


def test_doubts_are_written_across_the_top() -> None:
    drawn = draw_annotations(Image.new("RGB", (800, 600), (90, 140, 60)), [], [], ["no containers found"])

    assert _banner_pixels(drawn.crop((0, 0, 800, 30))) > 800 * 10
    assert _banner_pixels(drawn.crop((0, 300, 800, 600))) == 0


def test_a_trusted_count_has_no_banner() -> None:
    assert _banner_pixels(draw_annotations(Image.new("RGB", (800, 600), (90, 140, 60)), [], [])) == 0
