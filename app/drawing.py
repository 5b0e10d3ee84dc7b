"""Annotated image and thumbnail for people: pure drawing with Pillow, no database, no models.

The annotated image is the photo with a thin box per plant, each region outlined in its
class colour with a label on a solid background ("#2 tray: 143"), the plausibility doubts
(if any) on a red banner across its top, and below the photo a legend strip: the photo id
and total, the status, the doubts, plants and regions per class, the models and the
warnings. The thumbnail is the photo itself (no boxes: at 512 px they are a haze) with its
total on a banner ("(doubtful)" after it when there are doubts).

Sizes scale with the photo: text is 1/60 of the photo's long side (34 px at 2048 px,
never under 12 px), region outlines 1/500 (4 px at 2048), plant boxes 1/1000 (2 px).
The font is DejaVu Sans as shipped inside matplotlib (a dependency of ultralytics, and
of this project); without it, Pillow's own scalable default font.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from PIL import Image, ImageDraw, ImageFont

Colour = tuple[int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

REGION_COLOURS: dict[str, Colour] = {"tray": (255, 170, 0), "segment": (0, 160, 255)}
OTHER_REGION_COLOUR: Colour = (230, 230, 230)
PLANT_COLOUR: Colour = (255, 0, 60)
STATUS_COLOURS: dict[str, Colour] = {"completed": (80, 200, 120), "warning": (255, 190, 0), "failed": (255, 80, 80)}
LEGEND_BACKGROUND: Colour = (24, 24, 24)
LEGEND_TEXT: Colour = (240, 240, 240)
DOUBT_BANNER: Colour = (150, 0, 0)  # dark red behind white text, across the top of a doubtful photo
DOUBT_TEXT: Colour = (255, 110, 110)
THUMBNAIL_SIDE = 512  # at most, in pixels


@dataclass(frozen=True)
class RegionMark:
    """One region as drawn: its index, class, box (x1, y1, x2, y2 in pixels), outline and count (None: failed)."""

    index: int
    class_name: str
    bbox: tuple[float, float, float, float]
    polygon: Sequence[Sequence[float]] = ()
    count: int | None = None


@dataclass(frozen=True)
class Legend:
    """What the legend says about the photo."""

    photo_id: int
    total: int | None
    status: str
    model: str
    warnings: Sequence[dict[str, Any]] = field(default_factory=tuple)
    doubts: Sequence[str] = field(default_factory=tuple)  # plausibility reasons: the count needs a look by eye


@dataclass(frozen=True)
class Scale:
    font_size: int
    region_width: int
    plant_width: int
    padding: int

    @classmethod
    def of(cls, size: tuple[int, int]) -> Scale:
        side = max(size)
        font_size = max(12, round(side / 60))
        return cls(font_size, max(2, round(side / 500)), max(1, round(side / 1000)), max(4, font_size // 3))


@lru_cache(maxsize=16)
def font(size: int, bold: bool = False) -> Font:
    """DejaVu Sans (matplotlib's copy) at `size` pixels; Pillow's bundled default font if it is missing."""
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    try:
        path = resources.files("matplotlib").joinpath("mpl-data", "fonts", "ttf", name)
        with resources.as_file(path) as file:
            return ImageFont.truetype(str(file), size)
    except (ModuleNotFoundError, OSError):
        return ImageFont.load_default(size)


def warning_text(warning: dict[str, Any]) -> str:
    """'region #3: detection timed out' from a session warning (`region_index` and `error`, or `reason`)."""
    where = f"region #{warning['region_index']}" if "region_index" in warning else "photo"
    what = warning.get("error") or warning.get("reason") or warning.get("message") or warning.get("code") or "?"
    return f"{where}: {what}"


def legend_lines(legend: Legend, regions: Sequence[RegionMark]) -> list[tuple[str, Colour]]:
    """The legend's lines, top to bottom, each with its colour."""
    total = total_text(legend)
    lines = [(f"Photo {legend.photo_id}: {total}", LEGEND_TEXT),
             (f"status: {legend.status}", STATUS_COLOURS.get(legend.status, LEGEND_TEXT))]
    if legend.doubts:
        lines.append(("count doubtful: " + "; ".join(legend.doubts), DOUBT_TEXT))
    for class_name in sorted({r.class_name for r in regions}):
        of_class = [r for r in regions if r.class_name == class_name]
        counted = sum(r.count or 0 for r in of_class)
        lines.append((f"{class_name}: {_plural(len(of_class), 'region')}, {_plural(counted, 'plant')}",
                      REGION_COLOURS.get(class_name, OTHER_REGION_COLOUR)))
    if not regions:
        lines.append(("no regions found", LEGEND_TEXT))
    lines.append((f"model: {legend.model}", LEGEND_TEXT))
    warnings = [warning_text(w) for w in legend.warnings]
    lines.append(("warnings: " + ("; ".join(warnings) if warnings else "none"),
                  STATUS_COLOURS["warning"] if warnings else LEGEND_TEXT))
    return lines


def _label(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, colour: Colour, face: Font,
           padding: int) -> None:
    """Text on a solid box of `colour`, black or white, whichever reads better on it."""
    left, top, right, bottom = draw.textbbox(xy, text, font=face)
    draw.rectangle((left - padding, top - padding, right + padding, bottom + padding), fill=colour)
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    draw.text(xy, text, font=face, fill=(0, 0, 0) if luminance > 140 else (255, 255, 255))


def _draw_regions(draw: ImageDraw.ImageDraw, regions: Sequence[RegionMark], scale: Scale, size: tuple[int, int]
                  ) -> None:
    face = font(scale.font_size, bold=True)
    for region in regions:
        colour = REGION_COLOURS.get(region.class_name, OTHER_REGION_COLOUR)
        if len(region.polygon) >= 3:
            draw.polygon([(float(p[0]), float(p[1])) for p in region.polygon], outline=colour,
                         width=scale.region_width)
        else:
            draw.rectangle(region.bbox, outline=colour, width=scale.region_width)
        count = "failed" if region.count is None else str(region.count)
        text = f"#{region.index} {region.class_name}: {count}"
        # Inside the region's top-left corner and inside the photo, so a region at the edge keeps its label.
        text_width = draw.textlength(text, font=face)
        x = max(scale.padding, min(region.bbox[0] + 2 * scale.padding, size[0] - text_width - 2 * scale.padding))
        y = max(scale.padding, region.bbox[1] + 2 * scale.padding)
        _label(draw, (x, y), text, colour, face, scale.padding)


def _draw_legend(canvas: Image.Image, top: int, lines: list[tuple[str, Colour]], scale: Scale) -> list[str]:
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, top, canvas.width, canvas.height), fill=LEGEND_BACKGROUND)
    y = top + scale.padding * 2
    drawn = []
    for number, (text, colour) in enumerate(lines):
        face = font(scale.font_size, bold=number == 0)
        draw.text((scale.padding * 3, y), text, font=face, fill=colour)
        drawn.append(text)
        y += round(scale.font_size * 1.35)
    return drawn


def _draw_doubts(draw: ImageDraw.ImageDraw, width: int, doubts: Sequence[str], scale: Scale) -> None:
    """The plausibility reasons across the top of the photo, so the image never looks like a sure count."""
    if not doubts:
        return
    face = font(scale.font_size, bold=True)
    lines = ["COUNT DOUBTFUL - check it by eye:", *(f"- {doubt}" for doubt in doubts)]
    line_height = round(scale.font_size * 1.3)
    draw.rectangle((0, 0, width, line_height * len(lines) + 2 * scale.padding), fill=DOUBT_BANNER)
    for row, line in enumerate(lines):
        draw.text((2 * scale.padding, scale.padding + row * line_height), line, fill=(255, 255, 255), font=face)


def legend_height(lines: int, scale: Scale) -> int:
    return scale.padding * 4 + round(scale.font_size * 1.35) * lines


def draw_annotated(photo: Image.Image, regions: Sequence[RegionMark],
                   boxes: Sequence[tuple[float, float, float, float]], legend: Legend
                   ) -> tuple[Image.Image, list[str]]:
    """(The photo with plant boxes, region outlines and labels, and the legend strip below it; the legend's
    lines as drawn). Draws on `photo` itself when it is RGB; returns a new, taller image."""
    image = photo if photo.mode == "RGB" else photo.convert("RGB")
    scale = Scale.of(image.size)
    draw = ImageDraw.Draw(image)
    for box in boxes:
        draw.rectangle(box, outline=PLANT_COLOUR, width=scale.plant_width)
    _draw_regions(draw, regions, scale, image.size)
    _draw_doubts(draw, image.width, legend.doubts, scale)
    lines = legend_lines(legend, regions)
    canvas = Image.new("RGB", (image.width, image.height + legend_height(len(lines), scale)), LEGEND_BACKGROUND)
    canvas.paste(image, (0, 0))
    return canvas, _draw_legend(canvas, image.height, lines, scale)


def total_text(legend: Legend) -> str:
    return "not counted" if legend.total is None else _plural(legend.total, "plant")


def _plural(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def draw_thumbnail(photo: Image.Image, legend: Legend) -> tuple[Image.Image, str]:
    """(The photo at most THUMBNAIL_SIDE a side, by averaging whole blocks of pixels (2 ms for a 2048x1536
    photo, against 9 ms for Pillow's resampling), with its total on a banner at the bottom; the banner's text).
    Call it before drawing on the photo."""
    small = photo.reduce(max(1, math.ceil(max(photo.size) / THUMBNAIL_SIDE)))
    if small.mode != "RGB":
        small = small.convert("RGB")
    text = total_text(legend) + (" (doubtful)" if legend.doubts else "")
    face = font(max(14, round(max(small.size) / 14)), bold=True)
    draw = ImageDraw.Draw(small, "RGBA")
    left, top, right, bottom = draw.textbbox((0, 0), text, font=face)
    padding = max(4, (bottom - top) // 4)
    banner_top = small.height - (bottom - top) - 3 * padding
    draw.rectangle((0, banner_top, small.width, small.height), fill=(*LEGEND_BACKGROUND, 190))
    colour = DOUBT_TEXT if legend.doubts else STATUS_COLOURS.get(legend.status, LEGEND_TEXT)
    draw.text(((small.width - (right - left)) / 2, banner_top + padding - top), text, font=face, fill=colour)
    return small, text
