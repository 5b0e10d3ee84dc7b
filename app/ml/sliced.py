"""Sliced detection of small plants inside one region: SAHI's method, batched and lean.

The region is cut into SAHI's overlapping windows; every window is letterboxed
exactly as ultralytics' predict does it, into one (B, 3, H, W) batch per forward
pass; the raw output goes through ultralytics' own NMS and box scaling; boxes are
shifted to photo coordinates and duplicates from neighbouring windows are merged
with SAHI's own matching functions. Only arrays cross the functions, never one
Python object per detection, so the detections equal SAHI's `get_sliced_prediction`
on the same weights while the time goes to the network. On CUDA the tiles are cut,
resized and padded on the device; on a CPU with OpenCV, as ultralytics does.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from itertools import chain
from typing import Any

import cv2
import numpy as np
import torch
from sahi.postprocess.combine import greedy_nmm, nms
from sahi.slicing import get_slice_bboxes

from app.geometry import box_overlap
from app.ml.offline import configure_offline
from app.ml.runtimes import TileNetwork

PAD_VALUE = 114  # ultralytics' letterbox grey


@dataclass(frozen=True)
class SliceParams:
    slice_size: int = 320  # at the reference long side
    reference_side: int = 2048
    overlap: float = 0.2
    imgsz: int = 320
    confidence: float = 0.35
    batch_size: int = 16
    merge_method: str = "GREEDYNMM"  # or "NMS"
    merge_metric: str = "IOS"  # or "IOU"
    merge_threshold: float = 0.5
    scale_down: bool = True  # slices shrink on photos smaller than the reference side, too

    def slice_pixels(self, photo_width: int, photo_height: int) -> int:
        """Slice edge in pixels: `slice_size` scaled by the photo's long side over `reference_side`, so a plant
        spans the same share of a slice, and of the network's input, at any resolution of the same framing.

        A photo larger than the reference gets larger slices; a smaller one smaller slices, enlarged to imgsz
        (with `scale_down`: on 320 px slices the shipped detector's count MAPE was 19.8 % on 1024x768 bench
        photos, 42.4 % on 800x600 ones, every miss an undercount; 0.30 % and 0.34 % on these slices: models/
        README.md, "Smaller photos"). Without `scale_down`, slices
        never shrink below `slice_size`: for crops of a larger photo, whose plants are not smaller, and for
        models trained so. Never under 32 px.
        """
        ratio = max(photo_width, photo_height) / self.reference_side
        return max(32, round(self.slice_size * (ratio if self.scale_down else max(1.0, ratio))))


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray  # (N, 4) float32 x1, y1, x2, y2 in photo pixels
    scores: np.ndarray  # (N,) float32
    classes: np.ndarray  # (N,) int64, the detector's class index of each box

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int64))

    def take(self, keep: np.ndarray) -> Detections:
        return Detections(self.boxes[keep], self.scores[keep], self.classes[keep])

    def of_classes(self, counted: tuple[int, ...]) -> Detections:
        """Only the boxes whose class is in `counted` (e.g. plants, not empty cells)."""
        return self.take(np.isin(self.classes, counted))


def network_stride(module: Any) -> int:
    """The largest stride of a loaded ultralytics network, at least 32: what its predict pads inputs to."""
    return max(int(module.stride.max()), 32)


@dataclass(frozen=True)
class TileDetector:
    """A network over batches of tiles, plus what ultralytics' predict would apply around it."""

    network: TileNetwork
    stride: int = 32
    end2end: bool = False  # NMS-free heads (YOLO26/v10) only filter by confidence
    iou: float = 0.7  # ultralytics' predict default for the NMS inside one tile (SAHI leaves it as is)
    max_det: int = 300  # likewise, per tile

    @classmethod
    def from_yolo(cls, yolo: Any, network: TileNetwork) -> TileDetector:
        """Take stride, head type and NMS defaults from a loaded ultralytics YOLO, as its predict would."""
        from ultralytics.cfg import DEFAULT_CFG

        module = yolo.model
        stride = network_stride(module) if hasattr(module, "stride") else 32
        return cls(network=network, stride=stride, end2end=bool(getattr(module, "end2end", False)),
                   iou=float(DEFAULT_CFG.iou), max_det=int(DEFAULT_CFG.max_det))

    def warmup(self, imgsz: int, batch_sizes: Iterable[int]) -> None:
        """One forward at each of these batch shapes, so the first photos pay no first-call costs: each new
        input shape costs its runtime a one-off setup (OpenVINO's shape inference and memory, CUDA kernels)."""
        for batch_size in batch_sizes:
            batch = torch.zeros((batch_size, 3, imgsz, imgsz), dtype=self.network.input_dtype,
                                device=self.network.device)
            self.network(batch)


@dataclass(frozen=True)
class Letterbox:
    """Where a tile lands in the network input, computed exactly as ultralytics' LetterBox does."""

    input_shape: tuple[int, int]  # (H, W) of the network input
    resized: tuple[int, int]  # (h, w) of the tile after resizing
    top: int
    left: int

    @classmethod
    def plan(cls, tile_shape: tuple[int, int], imgsz: int, stride: int, rect: bool) -> Letterbox:
        """`rect`: pad only to a multiple of the stride (predict's `auto`), not to the full square."""
        size = math.ceil(imgsz / stride) * stride  # ultralytics' check_imgsz
        height, width = tile_shape
        ratio = min(size / height, size / width)
        new_w, new_h = max(round(width * ratio), 1), max(round(height * ratio), 1)
        pad_w, pad_h = size - new_w, size - new_h
        if rect:
            pad_w, pad_h = pad_w % stride, pad_h % stride
        top, bottom = round(pad_h / 2 - 0.1), round(pad_h / 2 + 0.1)
        left, right = round(pad_w / 2 - 0.1), round(pad_w / 2 + 0.1)
        return cls((new_h + top + bottom, new_w + left + right), (new_h, new_w), top, left)

    @property
    def padded(self) -> bool:
        return self.input_shape != self.resized


def slice_windows(width: int, height: int, size: int, overlap: float) -> np.ndarray:
    """(K, 4) windows x1, y1, x2, y2 covering a width x height area; one window if it fits.

    All windows of one area have the same shape: SAHI moves the last row and column back inside.
    """
    if width <= size and height <= size:
        return np.array([[0, 0, width, height]], dtype=np.int64)
    windows = get_slice_bboxes(
        image_height=height,
        image_width=width,
        slice_height=size,
        slice_width=size,
        overlap_height_ratio=overlap,
        overlap_width_ratio=overlap,
    )
    return np.asarray(windows, dtype=np.int64)


def tiles_on_cpu(crop: np.ndarray, windows: np.ndarray, box: Letterbox) -> torch.Tensor:
    """uint8 tiles -> (B, 3, H, W) uint8, resized with OpenCV like ultralytics (NHWC memory, i.e. channels-last)."""
    height, width = box.input_shape
    new_h, new_w = box.resized
    batch = np.full((len(windows), height, width, 3), PAD_VALUE, np.uint8) if box.padded else \
        np.empty((len(windows), height, width, 3), np.uint8)
    for row, (x1, y1, x2, y2) in enumerate(windows):
        tile = crop[y1:y2, x1:x2]
        if tile.shape[:2] != (new_h, new_w):
            tile = cv2.resize(tile, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        batch[row, box.top : box.top + new_h, box.left : box.left + new_w] = tile
    return torch.from_numpy(batch).permute(0, 3, 1, 2)


def region_windows(photo_shape: tuple[int, int], bbox: tuple[int, int, int, int], params: SliceParams) -> np.ndarray:
    """(K, 4) slice windows over `bbox` of a photo of `photo_shape` (H, W), in the box's own coordinates.

    The one place that decides where slices fall: inference (`detect_in_region`) and the training
    slices (`app.ml.training`) both call it, so a model is trained on plants at the scale it counts them.
    """
    height, width = photo_shape
    x1, y1, x2, y2 = bbox
    return slice_windows(x2 - x1, y2 - y1, params.slice_pixels(width, height), params.overlap)


def letterboxed_tiles(crop: np.ndarray, windows: np.ndarray, imgsz: int, stride: int,
                      rect: bool) -> tuple[np.ndarray, Letterbox]:
    """(B, H, W, 3) uint8 network inputs for `windows` of an RGB crop, and where each tile landed in them.

    The same resize and padding as the CPU inference path (`tiles_on_cpu`): training slices are cut by it.
    """
    tile_shape = (int(windows[0, 3] - windows[0, 1]), int(windows[0, 2] - windows[0, 0]))
    box = Letterbox.plan(tile_shape, imgsz, stride, rect=rect)
    return tiles_on_cpu(crop, windows, box).permute(0, 2, 3, 1).numpy(), box


def tiles_on_device(crop: torch.Tensor, windows: np.ndarray, box: Letterbox) -> torch.Tensor:
    """The same on the GPU: the crop is uploaded once, tiles are cut, resized and padded there (float32)."""
    tiles = torch.stack([crop[y1:y2, x1:x2] for x1, y1, x2, y2 in windows.tolist()]).permute(0, 3, 1, 2).float()
    if tuple(tiles.shape[2:]) != box.resized:
        tiles = torch.nn.functional.interpolate(tiles, size=box.resized, mode="bilinear", align_corners=False)
    if box.padded:
        height, width = box.input_shape
        new_h, new_w = box.resized
        sides = (box.left, width - new_w - box.left, box.top, height - new_h - box.top)
        tiles = torch.nn.functional.pad(tiles, sides, value=float(PAD_VALUE))
    return tiles


@cache
def _ultralytics_ops() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """ultralytics' NMS and box scaling, imported once and only after its offline switches.

    torchvision is imported first on purpose: ultralytics' NMS uses its C++ kernel only when torchvision
    is already loaded (its predictor's warmup does that), and a Python loop otherwise. Same result, slower.
    """
    configure_offline()
    import torchvision  # noqa: F401
    from ultralytics.utils.nms import non_max_suppression
    from ultralytics.utils.ops import scale_boxes

    return non_max_suppression, scale_boxes


def _normalised(tiles: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0-255 -> 0-1 in float32 as predict does (uint8 -> float, / 255), then the network's dtype."""
    return tiles.float().div_(255).to(dtype)


def _batches(count: int, size: int) -> Iterator[slice]:
    for start in range(0, count, size):
        yield slice(start, min(start + size, count))


def predict_windows(
    detector: TileDetector, crop_rgb: np.ndarray, windows: np.ndarray, params: SliceParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the detector over every window; float64 boxes (exact shifts) in crop coordinates, float32 scores,
    int64 classes."""
    non_max_suppression, scale_boxes = _ultralytics_ops()
    network = detector.network
    tile_shape = (int(windows[0, 3] - windows[0, 1]), int(windows[0, 2] - windows[0, 0]))
    box = Letterbox.plan(tile_shape, params.imgsz, detector.stride, rect=network.dynamic)
    on_device = network.device.type == "cuda"
    crop = torch.from_numpy(np.ascontiguousarray(crop_rgb)).to(network.device) if on_device else None
    found_boxes, found_scores, found_classes, found_tiles = [], [], [], []
    for part in _batches(len(windows), params.batch_size):
        chosen = windows[part]
        tiles = tiles_on_cpu(crop_rgb, chosen, box) if crop is None else tiles_on_device(crop, chosen, box)
        batch = tiles if network.input_dtype == torch.uint8 else _normalised(tiles, network.input_dtype)
        kept = non_max_suppression(network(batch), params.confidence, detector.iou, None, False,
                                   max_det=detector.max_det, nc=0, end2end=detector.end2end)
        counts = torch.tensor([len(k) for k in kept])
        if int(counts.sum()) == 0:
            continue
        found = torch.cat(kept)
        scaled = scale_boxes(box.input_shape, found[:, :4].clone(), tile_shape)  # also clips to the tile
        found_boxes.append(scaled.cpu().numpy())
        found_scores.append(found[:, 4].cpu().numpy())
        found_classes.append(found[:, 5].cpu().numpy())
        found_tiles.append(torch.repeat_interleave(torch.arange(part.start, part.stop), counts).numpy())
    if not found_boxes:
        return np.zeros((0, 4), np.float64), np.zeros((0,), np.float32), np.zeros((0,), np.int64)
    tile_index = np.concatenate(found_tiles)
    boxes = np.concatenate(found_boxes).astype(np.float64) + np.tile(windows[tile_index, :2], 2)
    return boxes, np.concatenate(found_scores).astype(np.float32), np.concatenate(found_classes).astype(np.int64)


def _merge_groups(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, keep_to_merge: dict[int, list[int]], metric: str,
    threshold: float,
) -> Detections:
    """SAHI's merge loop, vectorised across groups: step j folds every group's j-th member into its grown box.

    Like SAHI, each member is re-checked against the box grown so far; a match widens the box to the
    union and keeps the best score; the group keeps the class of its first (best) box.
    """
    keeps = np.fromiter(keep_to_merge.keys(), np.int64, len(keep_to_merge))
    merged, best = boxes[keeps].copy(), scores[keeps].copy()
    lengths = np.fromiter(map(len, keep_to_merge.values()), np.int64, len(keeps))
    members = np.fromiter(chain.from_iterable(keep_to_merge.values()), np.int64, int(lengths.sum()))
    starts = np.cumsum(lengths) - lengths
    for step in range(int(lengths.max(initial=0))):
        rows = np.flatnonzero(lengths > step)
        other = members[starts[rows] + step]
        match = box_overlap(merged[rows], boxes[other], metric) >= threshold
        rows, other = rows[match], other[match]
        merged[rows, :2] = np.minimum(merged[rows, :2], boxes[other, :2])
        merged[rows, 2:] = np.maximum(merged[rows, 2:], boxes[other, 2:])
        best[rows] = np.maximum(best[rows], scores[other])
    return Detections(merged.astype(np.float32), best, classes[keeps])


def merge_detections(boxes: np.ndarray, scores: np.ndarray, params: SliceParams,
                     classes: np.ndarray | None = None) -> Detections:
    """Merge duplicates from overlapping slices exactly as SAHI's (class-agnostic) postprocess does.

    `classes` (default: all 0) are carried along: a merged box keeps its best box's class.
    """
    if len(scores) == 0:
        return Detections.empty()
    classes = np.zeros(len(scores), np.int64) if classes is None else classes
    boxes = boxes.astype(np.float64, copy=False)
    predictions = np.zeros((len(scores), 6), np.float32)  # SAHI matches on float32 copies, class 0
    predictions[:, :4], predictions[:, 4] = boxes, scores
    if params.merge_method == "NMS":
        keep = np.asarray(nms(predictions, match_metric=params.merge_metric, match_threshold=params.merge_threshold))
        return Detections(boxes[keep].astype(np.float32), scores[keep], classes[keep])
    keep_to_merge = greedy_nmm(predictions, match_metric=params.merge_metric, match_threshold=params.merge_threshold)
    return _merge_groups(boxes, scores, classes, keep_to_merge, params.merge_metric, params.merge_threshold)


def _region_boxes(
    detector: TileDetector, image_rgb: np.ndarray, bbox: tuple[int, int, int, int], params: SliceParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every window's boxes above the confidence, in photo coordinates, before merging; scores; classes."""
    x1, y1, x2, y2 = bbox
    windows = region_windows(image_rgb.shape[:2], bbox, params)
    boxes, scores, classes = predict_windows(detector, image_rgb[y1:y2, x1:x2], windows, params)
    # SAHI drops boxes that clipping left without area.
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes[keep] + np.array([x1, y1, x1, y1], np.float64), scores[keep], classes[keep]


def detect_in_region(
    detector: TileDetector, image_rgb: np.ndarray, bbox: tuple[int, int, int, int], params: SliceParams
) -> Detections:
    """Detect plants inside `bbox` of the photo; boxes in photo coordinates."""
    boxes, scores, classes = _region_boxes(detector, image_rgb, bbox, params)
    return merge_detections(boxes, scores, params, classes)


def detect_in_region_at(
    detector: TileDetector, image_rgb: np.ndarray, bbox: tuple[int, int, int, int], params: SliceParams,
    thresholds: list[float],
) -> list[Detections]:
    """`detect_in_region` at each confidence threshold, with one pass of the network (at the lowest).

    Exact: NMS inside a tile only lets a box be removed by a higher-scoring one, so the boxes it keeps
    above a threshold t are the same whether it ran at t or lower; merging then runs per threshold.
    """
    boxes, scores, classes = _region_boxes(detector, image_rgb, bbox,
                                           dataclasses.replace(params, confidence=min(thresholds)))
    return [merge_detections(boxes[scores >= t], scores[scores >= t], params, classes[scores >= t]) for t in thresholds]


def agreement(found: np.ndarray, reference: np.ndarray, iou_threshold: float = 0.5) -> tuple[float, float]:
    """(F1, relative count difference) of `found` against `reference` boxes, matched one-to-one greedily.

    Pairs are taken in decreasing IoU while both boxes are free; how the benchmarks and tests compare
    this engine with SAHI.
    """
    if len(found) == 0 or len(reference) == 0:
        f1 = 1.0 if len(found) == len(reference) else 0.0
    else:
        a, b = found[:, None, :].astype(np.float64), reference[None, :, :].astype(np.float64)
        inter = (np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])).clip(min=0) * (
            np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])).clip(min=0)
        union = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]) + (b[..., 2] - b[..., 0]) * (
            b[..., 3] - b[..., 1]) - inter
        iou = inter / np.maximum(union, 1e-12)
        rows, cols = np.nonzero(iou >= iou_threshold)
        order = np.argsort(-iou[rows, cols], kind="stable")
        used_rows, used_cols, matched = set(), set(), 0
        for r, c in zip(rows[order].tolist(), cols[order].tolist(), strict=True):
            if r not in used_rows and c not in used_cols:
                used_rows.add(r)
                used_cols.add(c)
                matched += 1
        f1 = 2 * matched / (len(found) + len(reference))
    count_diff = abs(len(found) - len(reference)) / max(len(reference), 1)
    return f1, count_diff
