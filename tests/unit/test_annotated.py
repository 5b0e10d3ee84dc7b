"""The annotated image says when its count is doubtful."""

from __future__ import annotations

import numpy as np
from PIL import Image

from app.drawing import DOUBT_BANNER, Legend, draw_annotated, draw_thumbnail


def _banner_pixels(image: Image.Image) -> int:
    return int((np.asarray(image) == np.array(DOUBT_BANNER, np.uint8)).all(axis=-1).sum())


def _legend(*doubts: str) -> Legend:
    return Legend(5, 40, "completed", "m.pt + d.pt", doubts=doubts)


def test_doubts_are_written_across_the_top_and_in_the_legend() -> None:
    drawn, lines = draw_annotated(Image.new("RGB", (800, 600), (90, 140, 60)), [], [], _legend("no containers found"))

    assert _banner_pixels(drawn.crop((0, 0, 800, 30))) > 800 * 10
    assert _banner_pixels(drawn.crop((0, 300, 800, 600))) == 0
    assert "count doubtful: no containers found" in lines
    assert draw_thumbnail(Image.new("RGB", (800, 600)), _legend("no containers found"))[1] == "40 plants (doubtful)"


def test_a_trusted_count_has_no_banner() -> None:
    drawn, lines = draw_annotated(Image.new("RGB", (800, 600), (90, 140, 60)), [], [], _legend())
    assert _banner_pixels(drawn) == 0
    assert not any(line.startswith("count doubtful") for line in lines)
