"""The batched sliced engine gives SAHI's detections, and its exports follow the weights.

The equivalence tests run on a detector built here: the production shape (YOLO11n, one
class) with an untrained but lively head, so hundreds of boxes of every score and size
come out and the comparison with SAHI is never vacuous, whatever weights are trained.
The trained detector is compared too when models/plant_det.pt exists.
"""

from __future__ import annotations

import dataclasses
import shutil
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.config import PROJECT_ROOT, Settings
from app.ml import export
from app.ml.offline import configure_offline
from app.ml.pipeline import padded_box, slice_params
from app.ml.registry import ModelRegistry
from app.ml.sliced import (
    Letterbox,
    SliceParams,
    agreement,
    detect_in_region,
    merge_detections,
    slice_windows,
    tiles_on_cpu,
    tiles_on_device,
)
from tests.utils.photos import synthetic

SEED = 9511  # a dense photo: ~1500 plants
STRESS_CONFIDENCE = 0.2
TRAINED = PROJECT_ROOT / "models" / "plant_det.pt"  # not DETECTION_WEIGHTS, which may name a placeholder


def build_lively_detector(path: Path, bias: float = -3.0, names: tuple[str, ...] = ("plant",)) -> Path:
    """Save a YOLO11n/1-class checkpoint whose BatchNorm is fitted to real tiles and whose class logits spread."""
    configure_offline()
    import torch
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolo11n.yaml", nc=len(names), verbose=False)
    image = synthetic(SEED).image
    tiles = np.stack([image[y : y + 320, x : x + 320] for y in range(0, 1200, 300) for x in range(0, 1700, 400)])
    batch = torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative: the running statistics become these tiles' statistics
    model.train()
    with torch.no_grad():
        model(batch)
    model.eval()
    head: Any = model.model[-1]  # type: ignore[index]
    for index, branch in enumerate(head.cv3):
        last = branch[-1]
        generator = torch.Generator().manual_seed(index)
        last.weight.data = torch.randn(last.weight.shape, generator=generator) * 4 / last.weight.shape[1] ** 0.5
        last.bias.data = torch.full_like(last.bias.data, bias)
    model.names = dict(enumerate(names))
    torch.save({"model": model.half(), "train_args": {"task": "detect", "imgsz": 320}}, path)
    return path


@pytest.fixture(scope="module")
def lively(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_lively_detector(tmp_path_factory.mktemp("weights") / "lively_det.pt")


def region_of(seed: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A photo and the padded box of its largest container, as count_region would search it."""
    photo = synthetic(seed)
    height, width = photo.image.shape[:2]
    container = max(photo.containers, key=lambda c: (c.bbox[2] - c.bbox[0]) * (c.bbox[3] - c.bbox[1]))
    return photo.image, padded_box(container.bbox, width, height, 0.02)


@cache
def sahi_boxes(weights: Path, seed: int, params: SliceParams) -> np.ndarray:
    """SAHI's own sliced prediction over the photo's region (see region_of), in photo coordinates."""
    from sahi import AutoDetectionModel
    from sahi.predict import get_sliced_prediction

    image, bbox = region_of(seed)
    model = AutoDetectionModel.from_pretrained(model_type="ultralytics", model_path=str(weights),
                                               confidence_threshold=params.confidence, device="cpu",
                                               image_size=params.imgsz)
    x1, y1, x2, y2 = bbox
    size = params.slice_pixels(image.shape[1], image.shape[0])
    result = get_sliced_prediction(
        np.ascontiguousarray(image[y1:y2, x1:x2]), model, slice_height=size, slice_width=size,
        overlap_height_ratio=params.overlap, overlap_width_ratio=params.overlap, perform_standard_pred=False,
        postprocess_type=params.merge_method, postprocess_match_metric=params.merge_metric,
        postprocess_match_threshold=params.merge_threshold, postprocess_class_agnostic=True,
        force_postprocess_type=True, verbose=0,
    )
    boxes = np.array([p.bbox.to_xyxy() for p in result.object_prediction_list], np.float64).reshape(-1, 4)
    return boxes + np.array([x1, y1, x1, y1])


def engine_boxes(weights: Path, runtime: str, precision: str, image: np.ndarray, bbox: tuple[int, int, int, int],
                 params: SliceParams) -> np.ndarray:
    settings = Settings().model_copy(update={"detection_weights": str(weights), "detection_runtime": runtime,
                                             "detection_precision": precision, "device": "cpu"})
    return detect_in_region(ModelRegistry(settings).tile_detector(), image, bbox, params).boxes


@pytest.mark.parametrize("runtime", ["torch", "auto"])
def test_engine_matches_sahi_on_a_region(lively: Path, runtime: str) -> None:
    image, bbox = region_of(SEED)
    params = dataclasses.replace(slice_params(Settings()), confidence=STRESS_CONFIDENCE)

    reference = sahi_boxes(lively, SEED, params)
    found = engine_boxes(lively, runtime, "fp32", image, bbox, params)

    f1, count_diff = agreement(found, reference)
    assert len(reference) > 50
    assert f1 >= 0.99, (f1, len(found), len(reference))
    assert count_diff <= 0.01


def reduced_precisions() -> list[str]:
    from app.ml.runtimes import openvino_precisions

    return [p for p in openvino_precisions() if p != "fp32"]


@pytest.mark.skipif(not TRAINED.exists(), reason="the trained detector models/plant_det.pt is not built yet")
@pytest.mark.parametrize("precision", ["fp32", "auto", *reduced_precisions()])
def test_trained_engine_matches_sahi_on_a_region(precision: str) -> None:
    image, bbox = region_of(SEED)
    params = slice_params(Settings())

    reference = sahi_boxes(TRAINED, SEED, params)
    found = engine_boxes(TRAINED, "auto", precision, image, bbox, params)

    f1, count_diff = agreement(found, reference)
    assert len(reference) > 50
    assert f1 >= (0.99 if precision == "fp32" else 0.98), (f1, count_diff)
    assert count_diff <= 0.01


def test_slices_scale_with_the_photo_both_ways_unless_told_not_to_shrink() -> None:
    params = SliceParams(slice_size=320, reference_side=2048)
    assert [params.slice_pixels(w, h) for w, h in ((2048, 1536), (4000, 3000), (1024, 768), (768, 1024),
                                                   (100, 80))] == [320, 625, 160, 160, 32]
    fixed = SliceParams(slice_size=320, reference_side=2048, scale_down=False)
    assert [fixed.slice_pixels(w, h) for w, h in ((4000, 3000), (1024, 768))] == [625, 320]


@pytest.mark.parametrize(("width", "height", "size"), [(2048, 1536, 320), (801, 333, 320), (300, 200, 320),
                                                       (250, 900, 320), (4000, 3000, 625)])
def test_slice_windows_cover_the_region_with_equal_windows(width: int, height: int, size: int) -> None:
    windows = slice_windows(width, height, size, 0.2)

    covered = np.zeros((height, width), bool)
    for x1, y1, x2, y2 in windows:
        covered[y1:y2, x1:x2] = True
    assert covered.all()
    assert (windows[:, :2] >= 0).all() and (windows[:, 2] <= width).all() and (windows[:, 3] <= height).all()
    shapes = {(x2 - x1, y2 - y1) for x1, y1, x2, y2 in windows}
    assert shapes == {(min(width, size), min(height, size))}


@pytest.mark.parametrize("tile_shape", [(320, 320), (625, 625), (200, 130), (333, 801)])
def test_tiles_are_letterboxed_like_ultralytics_predict(tile_shape: tuple[int, int]) -> None:
    configure_offline()
    from ultralytics.data.augment import LetterBox

    rng = np.random.default_rng(1)
    tile = rng.integers(0, 256, (*tile_shape, 3), dtype=np.uint8)
    box = Letterbox.plan(tile_shape, 320, 32, rect=True)

    ours = tiles_on_cpu(tile, np.array([[0, 0, tile_shape[1], tile_shape[0]]]), box)[0].permute(1, 2, 0).numpy()

    theirs = LetterBox((320, 320), auto=True, stride=32)(image=tile)
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize(("width", "height", "size"), [(1000, 700, 320), (1300, 1000, 625), (250, 180, 320)])
def test_device_tiles_match_the_cpu_tiles(width: int, height: int, size: int) -> None:
    """The CUDA preprocessing (torch resize and pad), run here on CPU tensors, against OpenCV's."""
    import torch

    crop = synthetic(SEED).image[:height, :width]
    windows = slice_windows(width, height, size, 0.2)
    tile_shape = (int(windows[0, 3] - windows[0, 1]), int(windows[0, 2] - windows[0, 0]))
    box = Letterbox.plan(tile_shape, 320, 32, rect=True)

    on_cpu = tiles_on_cpu(crop, windows, box).float()
    on_device = tiles_on_device(torch.from_numpy(np.ascontiguousarray(crop)), windows, box)

    assert on_device.shape == on_cpu.shape
    difference = (on_device - on_cpu).abs()
    assert float(difference.max()) <= 1.0  # OpenCV rounds to uint8, torch keeps the float


def handcrafted_boxes() -> tuple[np.ndarray, np.ndarray]:
    """Chains, nests and near-ties, where SAHI's re-check against the grown box decides."""
    boxes = np.array([
        [10, 10, 50, 50], [30, 12, 70, 52], [48, 14, 90, 54],  # a chain: the third only touches the grown box
        [12, 11, 49, 51],  # a near-duplicate of the first
        [200, 200, 240, 240], [205, 205, 220, 220],  # a box inside another (IoS 1)
        [400, 400, 430, 430], [415, 400, 445, 430], [430, 400, 460, 430],  # IoS exactly 0.5, then 0
        [600, 600, 640, 640],  # alone
        [100, 300, 160, 340], [130, 300, 190, 340], [101, 301, 159, 339],
    ], np.float64)
    scores = np.array([0.9, 0.8, 0.85, 0.7, 0.6, 0.95, 0.5, 0.55, 0.52, 0.4, 0.66, 0.66, 0.3], np.float32)
    return boxes, scores


@pytest.mark.parametrize(("method", "metric"), [("GREEDYNMM", "IOS"), ("GREEDYNMM", "IOU"), ("NMS", "IOU")])
def test_merge_equals_sahi_postprocess(method: str, metric: str) -> None:
    from sahi.postprocess.combine import GreedyNMMPostprocess, NMSPostprocess
    from sahi.prediction import ObjectPrediction

    boxes, scores = handcrafted_boxes()
    params = SliceParams(merge_method=method, merge_metric=metric, merge_threshold=0.5)
    predictions = [ObjectPrediction(bbox=b.tolist(), category_id=0, category_name="plant", score=float(s))
                   for b, s in zip(boxes, scores, strict=True)]
    postprocess = (GreedyNMMPostprocess if method == "GREEDYNMM" else NMSPostprocess)(
        match_threshold=0.5, match_metric=metric, class_agnostic=True)

    theirs = postprocess(predictions)
    ours = merge_detections(boxes, scores, params)

    np.testing.assert_allclose(ours.boxes, np.array([p.bbox.to_xyxy() for p in theirs]), atol=1e-4)
    np.testing.assert_allclose(ours.scores, np.array([p.score.value for p in theirs]), atol=1e-6)
    assert len(ours) < len(boxes)


def fake_openvino_build(weights: Path, fmt: str, imgsz: int, workdir: Path) -> Path:
    """Stands in for ultralytics' OpenVINO export (seconds): a folder whose .xml names the weights it came from."""
    folder = workdir / f"{weights.stem}_openvino_model"
    folder.mkdir()
    (folder / f"{weights.stem}.xml").write_text(export.sha256_file(weights))
    return folder


@pytest.mark.parametrize("fmt", ["openvino", "onnx"])
def test_export_is_reused_then_rebuilt_when_the_weights_change(lively: Path, tmp_path: Path, fmt: export.ExportFormat,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache logic on both stamp kinds; the real OpenVINO export runs in test_engine_matches_sahi_on_a_region."""
    if fmt == "onnx":
        pytest.importorskip("onnx", reason="the ONNX runtime is the optional [export] extra")
    weights = tmp_path / "det.pt"
    shutil.copyfile(lively, weights)
    builds: list[Path] = []
    build = fake_openvino_build if fmt == "openvino" else export._build

    def counting_build(*args: Any) -> Path:
        builds.append(build(*args))
        return builds[-1]

    monkeypatch.setattr(export, "_build", counting_build)

    first = export.ensure_export(weights, fmt, 320)
    again = export.ensure_export(weights, fmt, 320)
    target = export.export_target(weights, fmt)
    assert first == again and first.exists()
    assert len(builds) == 1
    assert export.read_stamp(target, fmt) == export.expected_stamp(weights, fmt, 320)

    build_lively_detector(weights, bias=-2.5)  # same architecture, other weights
    export.ensure_export(weights, fmt, 320)
    assert len(builds) == 2
    assert export.read_stamp(target, fmt)["sha256"] == export.sha256_file(weights)  # type: ignore[index]
    if fmt == "openvino":
        assert first.read_text() == export.sha256_file(weights)  # the new build replaced the old one
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["det.pt", target.name])  # no temporary folder left
