"""Synthetic greenhouse-bench photos with exact ground truth.

`render_photo(seed)` draws a top-down photo of a nursery bench: a gravel/soil
floor, bench rails, and 2-6 non-overlapping containers of two kinds:

* ``segment`` - an open soil bed (rounded, slightly irregular outline) holding
  many small leafy plants on a jittered grid, partly touching;
* ``tray`` - a dark plastic plug tray with a grid of cells, one plant per
  occupied cell and 10-40 % of the cells empty.

Every plant box lies inside its container and no two plant boxes overlap by
more than IoU 0.3, so each plant stays countable. Sizes scale with the long
side of the image (reference: 2048 px, where a plant is ~12-48 px across).
Lighting gradients, blur, sensor noise and a JPEG round-trip make the photo
look like a camera picture. The same seed always gives identical pixels.

`write_dataset` saves photos plus a COCO file (categories 1 tray, 2 segment,
3 plant; plants carry ``container_id``, images carry ``true_count``) and
`load_ground_truth` reads it back. `write_dataset(out, n, seed)` renders
photo ``i`` from seed ``seed + i`` so it equals `render_photo(seed + i)`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from app.geometry import box_overlap

CONTAINER_CLASSES: tuple[str, ...] = ("tray", "segment")  # class id = index
PLANT_CATEGORY_ID = 3
EMPTY_CELL_CATEGORY_ID = 4  # written only for styles other than the default
REFERENCE_LONG_SIDE = 2048
MAX_PLANT_IOU = 0.3
_SHIFT = 2  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT

Box = tuple[float, float, float, float]
Rect = tuple[float, float, float, float]


@dataclass(frozen=True)
class SyntheticStyle:
    """How a bench looks. The default draws exactly what this generator always drew (same seeds, same pixels).

    Every option away from its default changes only what it names; new random draws come from their own
    stream, so the layout of a seed stays comparable across styles.
    """

    name: str = "default"
    plant_scale: float = 1.0  # plant size and spacing (tray cells, bed grid) times this
    leaves: tuple[int, int] | None = None  # leaves per plant (min, max); None: 3-6 in beds, 2-5 in trays
    leaf_width: float = 1.0  # leaf width / length times this (0.4: narrow, strap-like leaves)
    soil_grains: float = 0.0  # bright perlite grains per 1000 px^2 of soil (at the reference side)
    cell_walls: float = 1.0  # brightness of tray cell walls relative to the tray plastic's default shade
    empty_cells: float | None = None  # share of empty tray cells; None: 10-40 % per tray
    segment_share: float = 0.55  # chance that a container is an open bed rather than a tray


DEFAULT_STYLE = SyntheticStyle()
# A bench the shipped detector was never shown: large strap-leaved plants, white perlite on the soil,
# light cell walls and many empty cells (see models/README.md, "A second style").
STYLES: dict[str, SyntheticStyle] = {
    "default": DEFAULT_STYLE,
    "perlite": SyntheticStyle(name="perlite", plant_scale=2.0, leaves=(6, 9), leaf_width=0.45, soil_grains=12.0,
                              cell_walls=3.0, empty_cells=0.35, segment_share=0.4),
}


@dataclass(frozen=True)
class SyntheticContainer:
    """One container and the boxes of the plants inside it."""

    kind: str  # "tray" | "segment"
    polygon: list[tuple[float, float]]  # image pixel coords, closed implicitly
    bbox: tuple[int, int, int, int]  # x1, y1, x2, y2
    plants: list[Box]  # plant boxes x1, y1, x2, y2 in image coords
    empty_cells: list[Box] = field(default_factory=list)  # trays: the soil of cells without a plant

    @property
    def count(self) -> int:
        return len(self.plants)


@dataclass(frozen=True)
class SyntheticPhoto:
    """An RGB uint8 photo and its containers."""

    image: np.ndarray  # H x W x 3, RGB, uint8
    containers: list[SyntheticContainer]

    @property
    def true_count(self) -> int:
        return sum(c.count for c in self.containers)


@dataclass
class _Plants:
    """Plant geometry for a batch: centres, leaf ellipses and exact boxes."""

    boxes: np.ndarray  # (N, 4) float
    leaf_cx: np.ndarray  # (N, K)
    leaf_cy: np.ndarray
    leaf_a: np.ndarray  # semi-axis along the leaf
    leaf_b: np.ndarray  # semi-axis across the leaf
    leaf_angle: np.ndarray  # radians
    leaf_valid: np.ndarray  # (N, K) bool
    centers: np.ndarray  # (N, 2)
    radius: np.ndarray  # (N,)

    def take(self, keep: np.ndarray) -> _Plants:
        return _Plants(*(getattr(self, f)[keep] for f in _PLANT_FIELDS))


_PLANT_FIELDS = ("boxes", "leaf_cx", "leaf_cy", "leaf_a", "leaf_b", "leaf_angle", "leaf_valid",
                 "centers", "radius")


# --------------------------------------------------------------------------- textures


def _noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth value noise (float32, ~N(0,1) amplitude) with feature size `cell` px."""
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _textured(rng: np.random.Generator, h: int, w: int, color: tuple[float, float, float],
              s: float, octaves: tuple[tuple[float, float], ...]) -> np.ndarray:
    """An RGB float32 texture: base colour modulated by several noise octaves."""
    lum = np.zeros((h, w), np.float32)
    for cell, amp in octaves:
        lum += amp * _noise(rng, h, w, max(1.5, cell * s))
    tint = _noise(rng, h, w, 90 * s) * 0.04
    img = np.empty((h, w, 3), np.float32)
    for ch in range(3):
        img[..., ch] = color[ch] * (1.0 + lum + tint * (ch - 1))
    return img


def _gravel(rng: np.random.Generator, h: int, w: int, s: float) -> np.ndarray:
    """Bench surface: grey-brown gravel with lighter pebbles."""
    base = rng.uniform(95, 150)
    color = (base * rng.uniform(1.0, 1.12), base * rng.uniform(0.92, 1.02), base * rng.uniform(0.78, 0.92))
    img = _textured(rng, h, w, color, s, ((160, 0.10), (30, 0.08), (7, 0.10), (2.5, 0.07)))
    pebbles = _noise(rng, h, w, 5 * s)
    spots = np.clip((pebbles - 1.0) * 0.35, 0, 0.35)
    img *= (1.0 + spots)[..., None]
    return img


# --------------------------------------------------------------------------- layout


def _split_cells(rng: np.random.Generator, area: Rect, n: int) -> list[Rect]:
    """Guillotine-split `area` into n cells, always cutting the largest cell."""
    cells = [area]
    while len(cells) < n:
        idx = max(range(len(cells)), key=lambda i: (cells[i][2] - cells[i][0]) * (cells[i][3] - cells[i][1]))
        x1, y1, x2, y2 = cells.pop(idx)
        t = rng.uniform(0.38, 0.62)
        if x2 - x1 >= y2 - y1:
            xm = x1 + t * (x2 - x1)
            cells += [(x1, y1, xm, y2), (xm, y1, x2, y2)]
        else:
            ym = y1 + t * (y2 - y1)
            cells += [(x1, y1, x2, ym), (x1, ym, x2, y2)]
    return cells


def _container_rect(rng: np.random.Generator, cell: Rect, s: float) -> Rect:
    """A container rectangle inside `cell`, leaving a clear gap to its neighbours."""
    x1, y1, x2, y2 = cell
    gap = 22 * s
    w, h = (x2 - x1 - 2 * gap), (y2 - y1 - 2 * gap)
    cw, ch = w * rng.uniform(0.6, 1.0), h * rng.uniform(0.6, 1.0)
    ox = x1 + gap + rng.uniform(0, w - cw)
    oy = y1 + gap + rng.uniform(0, h - ch)
    return (ox, oy, ox + cw, oy + ch)


# --------------------------------------------------------------------------- plants


def _plant_geometry(rng: np.random.Generator, centers: np.ndarray, sizes: np.ndarray,
                    leaves: tuple[int, int], leaf_width: float = 1.0) -> _Plants:
    """Leaf ellipses radiating from each centre; boxes are their exact union."""
    n, k = len(centers), leaves[1]
    count = rng.integers(leaves[0], leaves[1] + 1, n)
    valid = np.arange(k)[None, :] < count[:, None]
    angle = (rng.uniform(0, 2 * np.pi, (n, 1)) + np.arange(k)[None, :] * 2 * np.pi / count[:, None]
             + rng.uniform(-0.4, 0.4, (n, k)))
    radius = sizes / 2.0
    length = radius[:, None] * rng.uniform(0.62, 1.0, (n, k))
    length[:, 0] = radius * rng.uniform(0.92, 1.0, n)  # one leaf reaches the nominal size
    a = length / 2.0
    b = a * rng.uniform(0.35, 0.62, (n, k)) * leaf_width
    cos, sin = np.cos(angle), np.sin(angle)
    cx, cy = centers[:, :1] + cos * a, centers[:, 1:] + sin * a
    hw, hh = np.sqrt((a * cos) ** 2 + (b * sin) ** 2), np.sqrt((a * sin) ** 2 + (b * cos) ** 2)
    inf = np.inf
    boxes = np.stack([np.where(valid, cx - hw, inf).min(1), np.where(valid, cy - hh, inf).min(1),
                      np.where(valid, cx + hw, -inf).max(1), np.where(valid, cy + hh, -inf).max(1)], 1)
    return _Plants(boxes, cx, cy, a, b, angle, valid, centers, radius)


def _drop_overlaps(boxes: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """Thin a (R, C) grid of plants so that no neighbouring boxes exceed MAX_PLANT_IOU.

    Plants are spaced so that only the 8-neighbourhood can overlap; each
    neighbouring pair is checked once, dropping the later plant on a conflict.
    """
    alive = alive.copy()
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        rows, cols = alive.shape
        r0, r1 = 0, rows - dr
        c0, c1 = max(0, -dc), cols - max(0, dc)
        if r1 <= r0 or c1 <= c0:
            continue
        a = boxes[r0:r1, c0:c1]
        b = boxes[r0 + dr:r1 + dr, c0 + dc:c1 + dc]
        clash = alive[r0:r1, c0:c1] & alive[r0 + dr:r1 + dr, c0 + dc:c1 + dc] & (box_overlap(a, b) > MAX_PLANT_IOU)
        alive[r0 + dr:r1 + dr, c0 + dc:c1 + dc] &= ~clash
    return alive


def _grid_plants(rng: np.random.Generator, origin: tuple[float, float], pitch: float, shape: tuple[int, int],
                 size: tuple[float, float], jitter: float, keep: float,
                 leaves: tuple[int, int], leaf_width: float = 1.0) -> tuple[_Plants, np.ndarray]:
    """Plants on a jittered grid; returns the geometry and the (R*C,) alive mask."""
    rows, cols = shape
    gy, gx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    cx = origin[0] + (gx + 0.5) * pitch + rng.uniform(-jitter, jitter, (rows, cols)) * pitch
    cy = origin[1] + (gy + 0.5) * pitch + rng.uniform(-jitter, jitter, (rows, cols)) * pitch
    sizes = rng.uniform(size[0], size[1], rows * cols)
    plants = _plant_geometry(rng, np.stack([cx.ravel(), cy.ravel()], 1), sizes, leaves, leaf_width)
    alive = rng.random((rows, cols)) < keep
    alive = _drop_overlaps(plants.boxes.reshape(rows, cols, 4), alive)
    return plants, alive.ravel()


def _plant_palette(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """(n, k, 3) RGB leaf colours: a per-container hue family with per-plant/leaf variation."""
    hue = rng.uniform(55, 100) + rng.normal(0, 5, (n, 1)) + rng.normal(0, 2, (n, k))
    sat = rng.uniform(0.45, 0.85) + rng.normal(0, 0.08, (n, 1)) + np.zeros((n, k))
    val = rng.uniform(0.45, 0.8) + rng.normal(0, 0.07, (n, 1)) + rng.normal(0, 0.05, (n, k))
    hsv = np.stack([np.clip(hue, 35, 115) / 2, np.clip(sat, 0.25, 1) * 255,
                    np.clip(val, 0.25, 0.95) * 255], -1)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.int32)


def _draw_shadows(img: np.ndarray, plants: _Plants, s: float) -> None:
    """Darken the ground under each plant (soft, offset shadow)."""
    if len(plants.radius) == 0:
        return
    x1, y1 = np.floor(plants.boxes[:, :2].min(0) - 6 * s).astype(int)
    x2, y2 = np.ceil(plants.boxes[:, 2:].max(0) + 6 * s).astype(int)
    x1, y1 = max(x1, 0), max(y1, 0)
    x2, y2 = min(x2, img.shape[1]), min(y2, img.shape[0])
    if x2 <= x1 or y2 <= y1:
        return
    mask = np.zeros((y2 - y1, x2 - x1), np.uint8)
    off = np.array([2.0 * s - x1, 3.0 * s - y1])
    for (cx, cy), r in zip(plants.centers + off, plants.radius * 0.85, strict=True):
        cv2.circle(mask, (int(cx * _ONE), int(cy * _ONE)), int(r * _ONE), 255, -1, cv2.LINE_AA, _SHIFT)
    mask = cv2.GaussianBlur(mask, (0, 0), 2.0 * s)
    roi = img[y1:y2, x1:x2]
    roi[:] = (roi.astype(np.float32) * (1.0 - 0.45 / 255.0 * mask[..., None])).astype(np.uint8)


def _draw_plants(rng: np.random.Generator, img: np.ndarray, plants: _Plants) -> None:
    """Filled leaf ellipses with a lighter midrib."""
    n, k = plants.leaf_valid.shape
    if n == 0:
        return
    colors = _plant_palette(rng, n, k)
    rib = np.clip(colors * 1.25 + 12, 0, 255).astype(np.int32)
    deg = np.degrees(plants.leaf_angle)
    cx, cy = (plants.leaf_cx * _ONE).astype(int), (plants.leaf_cy * _ONE).astype(int)
    ax, bx = (plants.leaf_a * _ONE).astype(int), (plants.leaf_b * _ONE).astype(int)
    px, py = (plants.centers[:, 0] * _ONE).astype(int), (plants.centers[:, 1] * _ONE).astype(int)
    tip_x = (plants.centers[:, :1] + np.cos(plants.leaf_angle) * plants.leaf_a * 1.6) * _ONE
    tip_y = (plants.centers[:, 1:] + np.sin(plants.leaf_angle) * plants.leaf_a * 1.6) * _ONE
    for i in range(n):
        for j in np.flatnonzero(plants.leaf_valid[i]):
            cv2.ellipse(img, (int(cx[i, j]), int(cy[i, j])), (max(int(ax[i, j]), 1), max(int(bx[i, j]), 1)),
                        float(deg[i, j]), 0, 360, colors[i, j].tolist(), -1, cv2.LINE_AA, _SHIFT)
        for j in np.flatnonzero(plants.leaf_valid[i]):
            cv2.line(img, (int(px[i]), int(py[i])), (int(tip_x[i, j]), int(tip_y[i, j])),
                     rib[i, j].tolist(), 1, cv2.LINE_AA, _SHIFT)


# --------------------------------------------------------------------------- containers


def _rounded_polygon(rng: np.random.Generator, rect: Rect, s: float) -> np.ndarray:
    """A rectangle with rounded, jittered corners and slightly wavy edges."""
    x1, y1, x2, y2 = rect
    r = rng.uniform(0.04, 0.12) * min(x2 - x1, y2 - y1)
    arcs = []
    for cx, cy, start in ((x2 - r, y2 - r, 0.0), (x1 + r, y2 - r, 90.0), (x1 + r, y1 + r, 180.0),
                          (x2 - r, y1 + r, 270.0)):
        t = np.radians(start + np.linspace(0, 90, 7))
        rr = r * rng.uniform(0.7, 1.3)
        arcs.append(np.stack([cx + rr * np.cos(t), cy + rr * np.sin(t)], 1))
    pts = []
    for i, arc in enumerate(arcs):
        nxt = arcs[(i + 1) % 4][0]
        f = np.array([0.25, 0.5, 0.75])[:, None]
        pts += [arc, arc[-1] + f * (nxt - arc[-1])]
    poly = np.concatenate(pts) + rng.normal(0, 2.0 * s, (len(arcs) * 10, 2))
    poly[:, 0] = np.clip(poly[:, 0], x1, x2)
    poly[:, 1] = np.clip(poly[:, 1], y1, y2)
    return poly


def _bed_soil(rng: np.random.Generator, h: int, w: int, s: float) -> np.ndarray:
    """Dark moist potting soil."""
    base = rng.uniform(45, 80)
    color = (base * 1.25, base * 0.95, base * 0.7)
    return np.clip(_textured(rng, h, w, color, s, ((60, 0.12), (12, 0.12), (3, 0.14), (1.5, 0.08))), 0, 255)


def _render_segment(rng: np.random.Generator, tex: np.random.Generator, img: np.ndarray, rect: Rect,
                    s: float, style: SyntheticStyle = DEFAULT_STYLE,
                    grains: np.random.Generator | None = None) -> SyntheticContainer:
    """An open soil bed crowded with plants (`tex` drives only the soil texture)."""
    poly = _rounded_polygon(rng, rect, s)
    bx1, by1 = math.floor(poly[:, 0].min()), math.floor(poly[:, 1].min())
    bx2, by2 = math.ceil(poly[:, 0].max()), math.ceil(poly[:, 1].max())
    h, w = by2 - by1, bx2 - bx1
    local = np.round((poly - [bx1, by1]) * _ONE).astype(np.int32)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [local], 255, cv2.LINE_AA, _SHIFT)
    roi = img[by1:by2, bx1:bx2]
    alpha = (mask.astype(np.float32) / 255.0)[..., None]
    roi[:] = (roi * (1 - alpha) + _bed_soil(tex, h, w, s) * alpha).astype(np.uint8)
    border = max(2, round(rng.uniform(5, 11) * s))
    edge = tuple(float(v) for v in rng.uniform(60, 170) * np.array([1.0, 0.92, 0.8]))
    cv2.polylines(roi, [local], True, edge, border, cv2.LINE_AA, _SHIFT)

    if grains is not None:
        _sprinkle(grains, roi, mask > 0, style.soil_grains, s)
    pitch = rng.uniform(22, 42) * s * style.plant_scale
    margin = 2 * (border + int(3 * s)) + 1
    kernel = np.ones((margin, margin), np.uint8)
    inner = cv2.erode(mask, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    ox, oy = bx1 + border, by1 + border
    shape = (max(1, int((h - 2 * border) / pitch)), max(1, int((w - 2 * border) / pitch)))
    big = style.plant_scale
    lo, hi = max(14 * s * big, 0.8 * pitch), min(48 * s * big, 1.4 * pitch)
    plants, alive = _grid_plants(rng, (ox, oy), pitch, shape, (lo, max(lo, hi)), 0.15,
                                 rng.uniform(0.72, 0.97), style.leaves or (3, 6), style.leaf_width)
    alive &= _boxes_inside(plants.boxes, inner, bx1, by1)
    plants = plants.take(alive)
    _draw_shadows(img, plants, s)
    _draw_plants(rng, img, plants)
    return _container("segment", [(float(x), float(y)) for x, y in poly], plants.boxes)


def _boxes_inside(boxes: np.ndarray, mask: np.ndarray, ox: int, oy: int) -> np.ndarray:
    """True where all four corners of a box fall inside `mask` (offset ox, oy)."""
    h, w = mask.shape
    ok = np.ones(len(boxes), bool)
    for xi, yi in ((0, 1), (2, 1), (0, 3), (2, 3)):
        x = np.floor(boxes[:, xi] - ox).astype(int)
        y = np.floor(boxes[:, yi] - oy).astype(int)
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        ok &= inside
        ok[inside] &= mask[y[inside], x[inside]] > 0
    return ok


def _render_tray(rng: np.random.Generator, img: np.ndarray, rect: Rect, s: float, style: SyntheticStyle = DEFAULT_STYLE,
                 grains: np.random.Generator | None = None) -> SyntheticContainer:
    """A dark plastic plug tray: a grid of cells, one plant per occupied cell."""
    pitch = rng.uniform(30, 50) * s * style.plant_scale
    rim = rng.uniform(6, 12) * s
    cols = max(2, int((rect[2] - rect[0] - 2 * rim) / pitch))
    rows = max(2, int((rect[3] - rect[1] - 2 * rim) / pitch))
    x1, y1 = rect[0], rect[1]
    x2, y2 = x1 + cols * pitch + 2 * rim, y1 + rows * pitch + 2 * rim
    plastic = rng.uniform(22, 60) * np.array([1.0, 1.0, 1.05]) + rng.normal(0, 3, 3)
    p1, p2 = (int(x1 * _ONE), int(y1 * _ONE)), (int(x2 * _ONE), int(y2 * _ONE))
    cv2.rectangle(img, p1, p2, plastic.tolist(), -1, cv2.LINE_AA, _SHIFT)
    cv2.rectangle(img, p1, p2, (plastic * 1.6).tolist(), max(1, int(2 * s)), cv2.LINE_AA, _SHIFT)
    cells = _draw_cells(rng, img, (x1 + rim, y1 + rim), pitch, (rows, cols), plastic, s, style.cell_walls)
    if grains is not None:
        inside = np.zeros(img.shape[:2], bool)
        for cx0, cy0, cx1, cy1 in cells.round().astype(int):
            inside[cy0:cy1, cx0:cx1] = True
        _sprinkle(grains, img, inside, style.soil_grains, s)
    big = style.plant_scale
    lo, hi = max(14 * s * big, 0.55 * pitch), min(48 * s * big, 1.05 * pitch)
    keep = 1.0 - rng.uniform(0.10, 0.40)
    if style.empty_cells is not None:
        keep = 1.0 - style.empty_cells
    plants, alive = _grid_plants(rng, (x1 + rim, y1 + rim), pitch, (rows, cols), (lo, hi), 0.07, keep,
                                 style.leaves or (2, 5), style.leaf_width)
    empty = cells[~alive]
    plants = plants.take(alive)
    _draw_shadows(img, plants, s)
    _draw_plants(rng, img, plants)
    poly = [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
    return _container("tray", poly, plants.boxes, empty)


def _draw_cells(rng: np.random.Generator, img: np.ndarray, origin: tuple[float, float], pitch: float,
                shape: tuple[int, int], plastic: np.ndarray, s: float, walls: float = 1.0) -> np.ndarray:
    """Cell walls as the tray colour, cell interiors as soil with a dark inner edge; (R*C, 4) soil boxes."""
    wall = pitch * rng.uniform(0.08, 0.16)
    soil = rng.uniform(40, 75) * np.array([1.25, 0.95, 0.7])
    rows, cols = shape
    shade = rng.normal(0, 6, (rows, cols))
    soil_boxes = []
    for r in range(rows):
        for c in range(cols):
            cx0, cy0 = origin[0] + c * pitch + wall, origin[1] + r * pitch + wall
            cx1, cy1 = cx0 + pitch - 2 * wall, cy0 + pitch - 2 * wall
            a, b = (int(cx0 * _ONE), int(cy0 * _ONE)), (int(cx1 * _ONE), int(cy1 * _ONE))
            cv2.rectangle(img, a, b, np.minimum(plastic * 0.6 * walls, 255).tolist(), -1, cv2.LINE_AA, _SHIFT)
            inset = int(max(1.0, 2.5 * s) * _ONE)
            cv2.rectangle(img, (a[0] + inset, a[1] + inset), (b[0] - inset, b[1] - inset),
                          (soil + shade[r, c]).tolist(), -1, cv2.LINE_AA, _SHIFT)
            soil_boxes.append(((a[0] + inset) / _ONE, (a[1] + inset) / _ONE, (b[0] - inset) / _ONE,
                               (b[1] - inset) / _ONE))
    return np.array(soil_boxes, np.float64).reshape(-1, 4)


def _sprinkle(rng: np.random.Generator, img: np.ndarray, where: np.ndarray, per_1000px: float, s: float) -> None:
    """Bright perlite grains (1-3 px across at the reference side) on the soil pixels in `where`."""
    ys, xs = np.nonzero(where)
    n = rng.poisson(per_1000px * len(ys) / (1000 * s * s)) if len(ys) else 0  # area at the reference side
    if n == 0:
        return
    pick = rng.integers(0, len(ys), n)
    radius = rng.uniform(0.6, 1.6, n) * s
    shade = rng.uniform(190, 250, n)
    for y, x, r, v in zip(ys[pick], xs[pick], radius, shade, strict=True):
        colour = (float(v), float(v) * 0.98, float(v) * 0.93)
        cv2.circle(img, (int(x * _ONE), int(y * _ONE)), max(int(r * _ONE), 2), colour, -1, cv2.LINE_AA, _SHIFT)


def _container(kind: str, poly: list[tuple[float, float]], boxes: np.ndarray,
               empty: np.ndarray | None = None) -> SyntheticContainer:
    xs, ys = [p[0] for p in poly], [p[1] for p in poly]
    bbox = (math.floor(min(xs)), math.floor(min(ys)), math.ceil(max(xs)), math.ceil(max(ys)))
    plants = [(float(a), float(b), float(c), float(d)) for a, b, c, d in boxes]
    cells = [] if empty is None else [(float(a), float(b), float(c), float(d)) for a, b, c, d in empty]
    return SyntheticContainer(kind, poly, bbox, plants, cells)


# --------------------------------------------------------------------------- photo


def _bench(rng: np.random.Generator, tex: np.random.Generator, h: int, w: int,
           s: float) -> tuple[np.ndarray, Rect]:
    """Floor + bench surface + rails; returns the image and the usable bench area."""
    top, bottom = rng.uniform(0.0, 0.09) * h, h - rng.uniform(0.0, 0.09) * h
    img = _gravel(tex, h, w, s)
    floor = _textured(tex, h, w, tuple(tex.uniform(60, 110) * np.array([1.0, 1.0, 0.97])), s,
                      ((200, 0.10), (20, 0.05), (2, 0.05)))
    img[: int(top)] = floor[: int(top)] * 0.8
    img[int(bottom):] = floor[int(bottom):] * 0.8
    rail = rng.uniform(12, 24) * s
    metal = tex.uniform(120, 190)
    for y in (top, bottom - rail):
        y0, y1 = max(0, int(y)), min(h, int(y + rail))
        if y1 > y0:
            prof = np.linspace(0.75, 1.15, y1 - y0, dtype=np.float32)[:, None, None]
            img[y0:y1] = metal * prof * np.array([0.97, 1.0, 1.03], np.float32)
    pad = 18 * s
    return img, (pad, top + rail + pad, w - pad, bottom - rail - pad)


def _lighting(rng: np.random.Generator, img: np.ndarray, s: float) -> np.ndarray:
    """Uneven illumination, white balance, slight blur, sensor noise."""
    h, w = img.shape[:2]
    coarse = rng.uniform(0.8, 1.12, (3, 4)).astype(np.float32)
    gain: np.ndarray = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    gx, gy = rng.uniform(-0.12, 0.12, 2)
    vignette = np.float32(rng.uniform(0.05, 0.2))
    gain = gain * (1.0 + np.float32(gx) * xx + np.float32(gy) * yy - vignette * (xx**2 + yy**2) / 2)
    gain = gain * np.float32(rng.uniform(0.85, 1.15))
    out: np.ndarray = img.astype(np.float32) * gain[..., None] * rng.uniform(0.93, 1.07, 3).astype(np.float32)
    out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.1) * s)
    out = out + rng.standard_normal(out.shape, dtype=np.float32) * np.float32(rng.uniform(1.5, 5.0))
    return np.clip(out, 0, 255).astype(np.uint8)


def _jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if decoded is None:
        raise RuntimeError("JPEG decoding failed")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def render_photo(seed: int, width: int = 2048, height: int = 1536, min_containers: int = 2,
                 max_containers: int = 6, style: SyntheticStyle = DEFAULT_STYLE) -> SyntheticPhoto:
    """Render one synthetic bench photo; identical pixels for the same arguments."""
    # Two streams: the scene (layout, plants) does not depend on the resolution,
    # so the same seed gives the same bench at 2048x1536 and 4000x3000.
    rng = np.random.default_rng([seed, 0])
    tex = np.random.default_rng([seed, 1])
    s = max(width, height) / REFERENCE_LONG_SIDE
    base, area = _bench(rng, tex, height, width, s)
    img = np.clip(base, 0, 255).astype(np.uint8)
    n = int(rng.integers(min_containers, max_containers + 1))
    containers = []
    grains = np.random.default_rng([seed, 2]) if style.soil_grains > 0 else None  # a stream of its own
    for cell in _split_cells(rng, area, n):
        rect = _container_rect(rng, cell, s)
        segment = rng.random() < style.segment_share or min(rect[2] - rect[0], rect[3] - rect[1]) < 150 * s
        own = np.random.default_rng(rng.integers(2**63))  # rounding elsewhere cannot shift later draws
        if segment:
            containers.append(_render_segment(own, tex, img, rect, s, style, grains))
        else:
            containers.append(_render_tray(own, img, rect, s, style, grains))
    img = _lighting(tex, img, s)
    img = _jpeg_roundtrip(img, int(tex.integers(75, 96)))
    return SyntheticPhoto(img, containers)


# --------------------------------------------------------------------------- COCO


def _coco_categories(empty_cells: bool = False) -> list[dict[str, object]]:
    cats: list[dict[str, object]] = [{"id": i + 1, "name": n, "supercategory": "container"}
                                     for i, n in enumerate(CONTAINER_CLASSES)]
    cats.append({"id": PLANT_CATEGORY_ID, "name": "plant", "supercategory": "plant"})
    if empty_cells:
        cats.append({"id": EMPTY_CELL_CATEGORY_ID, "name": "empty_cell", "supercategory": "plant"})
    return cats


def _coco_annotations(image_id: int, containers: list[SyntheticContainer],
                      next_id: int) -> tuple[list[dict[str, object]], int]:
    anns: list[dict[str, object]] = []
    for c in containers:
        x1, y1, x2, y2 = c.bbox
        cid = next_id
        poly = np.array(c.polygon)
        area = float(cv2.contourArea(poly.astype(np.float32)))
        anns.append({"id": cid, "image_id": image_id, "category_id": CONTAINER_CLASSES.index(c.kind) + 1,
                     "segmentation": [[round(float(v), 2) for v in poly.ravel()]],
                     "bbox": [x1, y1, x2 - x1, y2 - y1], "area": area, "iscrowd": 0})
        next_id += 1
        for px1, py1, px2, py2 in c.plants:
            w, h = px2 - px1, py2 - py1
            anns.append({"id": next_id, "image_id": image_id, "category_id": PLANT_CATEGORY_ID,
                         "bbox": [round(px1, 2), round(py1, 2), round(w, 2), round(h, 2)],
                         "area": round(w * h, 2), "iscrowd": 0, "container_id": cid})
            next_id += 1
        for ex1, ey1, ex2, ey2 in c.empty_cells:
            w, h = ex2 - ex1, ey2 - ey1
            anns.append({"id": next_id, "image_id": image_id, "category_id": EMPTY_CELL_CATEGORY_ID,
                         "bbox": [round(ex1, 2), round(ey1, 2), round(w, 2), round(h, 2)],
                         "area": round(w * h, 2), "iscrowd": 0, "container_id": cid})
            next_id += 1
    return anns, next_id


def write_dataset(out_dir: Path, n: int, seed: int, width: int = 2048, height: int = 1536,
                  style: SyntheticStyle = DEFAULT_STYLE) -> Path:
    """Render n photos (seeds seed..seed+n-1) as JPEGs plus a COCO file; return its path.

    Styles other than the default also label empty tray cells (category `empty_cell`).
    """
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    images, annotations, next_id = [], [], 1
    empty_cells = style != DEFAULT_STYLE
    for i in range(n):
        photo = render_photo(seed + i, width, height, style=style)
        if not empty_cells:
            photo = SyntheticPhoto(photo.image, [replace(c, empty_cells=[]) for c in photo.containers])
        name = f"bench_{seed}_{i}.jpg"
        bgr = cv2.cvtColor(photo.image, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(out_dir / "images" / name), bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
        images.append({"id": i + 1, "file_name": name, "width": width, "height": height,
                       "true_count": photo.true_count, "seed": seed + i})
        anns, next_id = _coco_annotations(i + 1, photo.containers, next_id)
        annotations += anns
    path = out_dir / "annotations.json"
    coco = {"images": images, "annotations": annotations, "categories": _coco_categories(empty_cells)}
    path.write_text(json.dumps(coco))
    return path


def load_ground_truth(annotations: Path) -> dict[str, list[SyntheticContainer]]:
    """Read a COCO file written by `write_dataset`: file_name -> containers."""
    coco = json.loads(Path(annotations).read_text())
    kinds = {c["id"]: c["name"] for c in coco["categories"]}
    plants: dict[int, list[Box]] = {}
    for a in coco["annotations"]:
        if a["category_id"] == PLANT_CATEGORY_ID:
            x, y, w, h = a["bbox"]
            plants.setdefault(a["container_id"], []).append((x, y, x + w, y + h))
    by_image: dict[int, list[SyntheticContainer]] = {img["id"]: [] for img in coco["images"]}
    for a in coco["annotations"]:
        if a["category_id"] in (PLANT_CATEGORY_ID, EMPTY_CELL_CATEGORY_ID):
            continue
        flat = a["segmentation"][0]
        poly = [(float(flat[i]), float(flat[i + 1])) for i in range(0, len(flat), 2)]
        x, y, w, h = a["bbox"]
        by_image[a["image_id"]].append(
            SyntheticContainer(kinds[a["category_id"]], poly, (x, y, x + w, y + h), plants.get(a["id"], [])))
    return {img["file_name"]: by_image[img["id"]] for img in coco["images"]}
