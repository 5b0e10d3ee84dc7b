"""`demeter train`: fine-tune the plant detector on a grower's labelled photos, offline.

1. Read the labels (`app.ml.labels`: YOLO txt or COCO, boxes or points; points become boxes of the
   expected plant size).
2. Hold out whole photos for validation (never slices of a training photo: neighbouring slices
   overlap, so a slice-level split would validate on pixels the model trained on).
3. Cut every photo into the slices inference cuts (`app.ml.sliced.region_windows` and
   `letterboxed_tiles`: same slice size at the photo's resolution, same overlap, same resize and grey
   padding to the network input), so the model learns plants at the scale it will count them. A plant
   is labelled in a slice when its box centre lies inside it; its box is clipped to the slice.
4. Rehearsal: a base model trained on synthetic photos forgets them when fine-tuned on one new bench
   style (models/README.md, "A second style"), so default-style synthetic photos from its own training
   seeds are cut the same way and a sample of their slices, about as many as the grower's, joins the
   training split (never the held-out photos, which stay the grower's own).
5. Train with ultralytics' trainer, starting from the base model (`--base`, default the one in use;
   printed first, and its name and weights SHA-256 go into the card), with no training loop here.
6. Count the held-out photos through the pipeline's own functions at every confidence threshold and
   keep the one with the lowest count error (`app.ml.calibration`). For a synthetic-trained base, also
   count a few held-out default-style photos at that threshold: what the model still knows of the original.
7. Write a new model directory `<out>/<name>-<UTC timestamp>/`: `plant_det.pt`, its model card
   `plant_det.card.json` (the format of `app.ml.cards`), and the OpenVINO export the CPU workers run.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from app.config import Settings
from app.ml.calibration import THRESHOLDS, PhotoCounts, Scores, choose_threshold, count_photo, score
from app.ml.cards import ModelCard, Spread, card_path, read_card, weights_digest, write_card
from app.ml.images import decode_rgb
from app.ml.labels import (
    REFERENCE_LONG_SIDE,
    LabelledPhoto,
    LabelSet,
    data_digest,
    read_coco,
    read_labels,
    select_classes,
    with_point_boxes,
)
from app.ml.offline import configure_offline
from app.ml.sliced import Letterbox, SliceParams, letterboxed_tiles, region_windows
from app.ml.synthetic import write_dataset

WEIGHTS_NAME = "plant_det.pt"
STRIDE = 32  # YOLO11's largest stride: inputs are padded to multiples of it, as at inference
ULTRALYTICS_NOMINAL_BATCH = 64  # ultralytics' default `nbs`
FALLBACK_PLANT_SIDE = 23.0  # px at the reference side: the shipped detector's median plant (its card, p50)
# The shipped detector's training photos are seeds 1000-1799, its held-out ones >= 9000 (models/README.md).
REHEARSAL_SEEDS = range(1000, 1800)
DEFAULT_REHEARSAL = 10  # photos: ~45 slices with plants each, sampled down to as many as the grower's
ORIGINAL_CHECK_SEED = 9900  # first held-out seed of the original-style check (not one the evaluations use)

Progress = Callable[[str], None]


def print_progress(line: str) -> None:
    print(line, flush=True)


@dataclass(frozen=True)
class TrainPlan:
    data: Path
    out: Path  # parent of the new model directory
    name: str
    base_weights: Path
    slicing: SliceParams  # slice size, reference side, overlap and network input size (imgsz)
    epochs: int = 30
    batch: int = 8
    lr0: float = 0.002
    device: str = "cpu"
    val_fraction: float = 0.2
    plant_side: float | None = None  # px at the reference side for point labels; None: learned from the labels
    max_photos: int | None = None
    classes: list[str] | None = None  # train only these labelled classes (default: all)
    whole_photo: bool = False  # calibrate on the whole photo as one region instead of segmented containers
    empty_slices: float = 0.25  # share of the slices without a labelled plant that are kept (bench, walls)
    rehearsal: int | None = None  # default-style photos mixed in; None: DEFAULT_REHEARSAL for a synthetic base
    original_check: int = 3  # held-out default-style photos counted after training (synthetic base only)
    export: bool = True
    workers: int = 2
    threads: int = 0  # torch threads while training; 0 = all cores
    seed: int = 0
    work: Path = field(default_factory=lambda: Path("var/train-own"))
    base_name: str = ""  # the catalog name of base_weights (`shipped` or a trained model); "": its file name


@dataclass(frozen=True)
class TrainResult:
    model_dir: Path
    weights: Path
    card: dict[str, Any]
    calibration: Scores


# --------------------------------------------------------------------------- data


def split_photos(photos: tuple[LabelledPhoto, ...], val_fraction: float,
                 seed: int) -> tuple[list[LabelledPhoto], list[LabelledPhoto]]:
    """(train, held-out) photos: a seeded shuffle of the name order, at least one of each.

    Raises ValueError with fewer than two photos.
    """
    if len(photos) < 2:
        raise ValueError(f"training needs at least 2 labelled photos (one is held out), got {len(photos)}")
    ordered = sorted(photos, key=lambda p: p.name)
    order = np.random.default_rng(seed).permutation(len(ordered))
    held = min(len(ordered) - 1, max(1, round(len(ordered) * val_fraction)))
    return [ordered[i] for i in sorted(order[held:])], [ordered[i] for i in sorted(order[:held])]


def tile_label_lines(boxes: np.ndarray, classes: np.ndarray, window: np.ndarray, box: Letterbox) -> list[str]:
    """YOLO lines (class cx cy w h, normalised to the network input) of the plants centred in `window`.

    `boxes` are in the coordinates `window` is in; boxes are clipped to the window, then scaled and
    shifted exactly as the tile was (`box`).
    """
    x1, y1, x2, y2 = (float(v) for v in window)
    if len(boxes) == 0:
        return []
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    inside = (cx >= x1) & (cx < x2) & (cy >= y1) & (cy < y2)
    clipped = boxes[inside] - np.array([x1, y1, x1, y1])
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, x2 - x1)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, y2 - y1)
    ratio_y, ratio_x = box.resized[0] / (y2 - y1), box.resized[1] / (x2 - x1)
    clipped[:, [0, 2]] = clipped[:, [0, 2]] * ratio_x + box.left
    clipped[:, [1, 3]] = clipped[:, [1, 3]] * ratio_y + box.top
    height, width = box.input_shape
    lines = []
    for cls, (a, b, c, d) in zip(classes[inside].tolist(), clipped.tolist(), strict=True):
        if c - a < 1 or d - b < 1:
            continue  # less than a pixel of the plant is in this slice
        lines.append(f"{cls} {(a + c) / 2 / width:.6f} {(b + d) / 2 / height:.6f} {(c - a) / width:.6f} "
                     f"{(d - b) / height:.6f}")
    return lines


def write_slices(photos: list[LabelledPhoto], split: Path, params: SliceParams, progress: Progress,
                 empty_share: float = 1.0, seed: int = 0) -> int:
    """Write the slices of `photos` (JPEG q95) and their YOLO labels under split/images and split/labels.

    Slices with plants are all kept; of those without, a seeded `empty_share` (they teach the model what
    is not a plant, but on a bench photo they are many and would take most of the training time).
    """
    rng = np.random.default_rng(seed)
    (split / "images").mkdir(parents=True, exist_ok=True)
    (split / "labels").mkdir(parents=True, exist_ok=True)
    import cv2

    written = 0
    for number, photo in enumerate(photos, 1):
        image = decode_rgb(photo.image.read_bytes())
        height, width = image.shape[:2]
        windows = region_windows((height, width), (0, 0, width, height), params)
        tiles, box = letterboxed_tiles(image, windows, params.imgsz, STRIDE, rect=False)
        kept = 0
        for index, (window, tile) in enumerate(zip(windows, tiles, strict=True)):
            lines = tile_label_lines(photo.boxes, photo.classes, window, box)
            if not lines and rng.random() >= empty_share:
                continue
            stem = f"{photo.image.stem}_{index:04d}"
            cv2.imwrite(str(split / "images" / f"{stem}.jpg"), cv2.cvtColor(tile, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            (split / "labels" / f"{stem}.txt").write_text("".join(line + "\n" for line in lines))
            kept += 1
        written += kept
        progress(f"sliced {split.name} photo {number}/{len(photos)} {photo.name}: {kept} of {len(windows)} slices")
    return written


def trained_on_synthetic(base: ModelCard) -> bool:
    """Whether a model's card says it learned from `app.ml.synthetic` photos (the shipped detector does)."""
    source = base.document.get("training_data", {}).get("source", "")
    return isinstance(source, str) and source.startswith("app.ml.synthetic")


def rehearsal_photos(plan: TrainPlan, base: ModelCard) -> int:
    """How many default-style photos to rehearse: the plan's number, else DEFAULT_REHEARSAL for a synthetic base.

    Raises ValueError beyond the base model's training seeds (REHEARSAL_SEEDS).
    """
    photos = plan.rehearsal if plan.rehearsal is not None else DEFAULT_REHEARSAL if trained_on_synthetic(base) else 0
    if not 0 <= photos <= len(REHEARSAL_SEEDS):
        raise ValueError(f"rehearsal takes 0-{len(REHEARSAL_SEEDS)} photos, got {photos}")
    return photos


def default_style_photos(out: Path, first_seed: int, n: int, plant_class: int) -> list[LabelledPhoto]:
    """Render n default-style synthetic photos (seeds first_seed.., 2048x1536) into `out`, plants as `plant_class`."""
    labels = select_classes(read_coco(write_dataset(out, n, first_seed)), ["plant"])
    return [replace(p, classes=np.full(len(p.classes), plant_class, np.int64)) for p in labels.photos]


def add_rehearsal(split: Path, photos: list[LabelledPhoto], params: SliceParams, limit: int, progress: Progress,
                  empty_share: float = 1.0, seed: int = 0) -> int:
    """Cut `photos` as `write_slices` cuts the grower's, then move a seeded sample of at most `limit` of the
    slices into `split` (names prefixed `rehearsal_`); returns how many were moved."""
    staging = split.parent / "rehearsal"
    write_slices(photos, staging, params, progress, empty_share, seed)
    stems = sorted(path.stem for path in (staging / "images").glob("*.jpg"))
    chosen = np.random.default_rng(seed).choice(len(stems), min(limit, len(stems)), replace=False)
    for stem in (stems[i] for i in sorted(chosen)):
        (staging / "images" / f"{stem}.jpg").rename(split / "images" / f"rehearsal_{stem}.jpg")
        (staging / "labels" / f"{stem}.txt").rename(split / "labels" / f"rehearsal_{stem}.txt")
    shutil.rmtree(staging)
    return len(chosen)


def point_box_side(labels: LabelSet, requested: float | None, base_weights: Path) -> float:
    """The side (px at the reference long side) of the boxes that point labels become.

    In order: the requested size; the median box label of the same set; the base model's card
    (median training plant); the shipped detector's median plant.
    """
    if requested:
        return requested
    sides = labels.box_sides()
    if len(sides):
        return float(np.median(sides))
    card = read_card(card_path(base_weights), base_weights, "detect")
    return card.plant_side.p50 if card.plant_side is not None else FALLBACK_PLANT_SIDE


# --------------------------------------------------------------------------- card figures


def _max_iou(boxes: np.ndarray) -> float:
    if len(boxes) < 2:
        return 0.0
    a, b = boxes[:, None, :], boxes[None, :, :]
    iw = (np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])).clip(min=0)
    ih = (np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])).clip(min=0)
    inter = iw * ih
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iou = inter / np.maximum(area[:, None] + area[None, :] - inter, 1e-12)
    np.fill_diagonal(iou, 0)
    return float(iou.max())


def measure_plants(photos: list[LabelledPhoto], counted: tuple[int, ...]) -> dict[str, Any]:
    """Plant sizes, densities and overlaps of labelled photos, at the reference long side (the card's units).

    Density is plants per megapixel of the box around a photo's labelled plants (grower labels carry no
    container outlines; on a photo of one tray that box is the tray).
    """
    sides, densities, overlap, plants = [], [], 0.0, 0
    for photo in photos:
        boxes = photo.boxes[np.isin(photo.classes, counted)] / photo.scale
        if len(boxes) == 0:
            continue
        plants += len(boxes)
        sides.extend(np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).tolist())
        area = (boxes[:, 2].max() - boxes[:, 0].min()) * (boxes[:, 3].max() - boxes[:, 1].min()) / 1e6
        densities.append(len(boxes) / max(area, 1e-6))
        overlap = max(overlap, _max_iou(boxes))
    if not plants:
        return {"plants": 0}
    return {
        "what": "labelled plants of the training photos (points as boxes); sizes in px at a 2048 px long side",
        "plants": plants,
        "photos": len(photos),
        "plant_side": Spread.of(sides).as_dict(),
        "plant_density": Spread.of(densities).as_dict(),
        "plant_density_unit": "plants per megapixel of the box around a photo's labelled plants",
        "max_plant_overlap": round(overlap, 3),
    }


# --------------------------------------------------------------------------- training


def _data_yaml(root: Path, classes: tuple[str, ...]) -> Path:
    path = root / "data.yaml"
    lines = [f"path: {root.resolve()}", "train: train/images", "val: val/images", "names:"]
    lines += [f"  {i}: {json.dumps(name)}" for i, name in enumerate(classes)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _progress_callbacks(model: Any, epochs: int, threads: int, progress: Progress) -> None:
    import torch

    def pretrain(_trainer: Any) -> None:
        # The trainer's select_device() sets torch to cpu_count - 1 threads; undo that.
        torch.set_num_threads(threads)

    def epoch_end(trainer: Any) -> None:
        # Also called once more by the final validation of the best weights.
        losses = trainer.label_loss_items(trainer.tloss) if isinstance(trainer.tloss, dict) else {}
        figures = {**losses, **(trainer.metrics or {})}
        text = " ".join(f"{k.split('/')[-1]} {float(v):.3f}" for k, v in figures.items()
                        if k.startswith(("train/", "metrics/")))
        step = f"epoch {trainer.epoch + 1}/{epochs}" if trainer.epoch + 1 <= epochs else "best weights"
        progress(f"{step} ({time.perf_counter() - started:.0f} s): {text}")

    seen = [0]

    def epoch_start(_trainer: Any) -> None:
        seen[0] = 0

    def batch_end(trainer: Any) -> None:
        # A CPU epoch takes minutes: report a fifth of an epoch at a time.
        seen[0] += 1
        total = len(trainer.train_loader)
        if seen[0] % max(1, total // 5) == 0 and seen[0] < total:
            progress(f"epoch {trainer.epoch + 1}/{epochs}: batch {seen[0]}/{total} "
                     f"({time.perf_counter() - started:.0f} s)")

    started = time.perf_counter()
    model.add_callback("on_pretrain_routine_start", pretrain)
    model.add_callback("on_train_epoch_start", epoch_start)
    model.add_callback("on_train_batch_end", batch_end)
    model.add_callback("on_fit_epoch_end", epoch_end)


def nominal_batch(slices: int, batch: int) -> int:
    """Ultralytics' `nbs`: it steps the optimizer once per nbs / batch batches (64 by default), counted
    across epochs. A few labelled photos make one or two batches an epoch, so the default would step
    once every several epochs; never accumulate more than one epoch's slices."""
    return max(batch, min(ULTRALYTICS_NOMINAL_BATCH, -(-slices // batch) * batch))


def run_trainer(plan: TrainPlan, data_yaml: Path, run_dir: Path, progress: Progress) -> tuple[Path, dict[str, float]]:
    """Ultralytics' trainer, from the base weights; returns best.pt and its validation metrics."""
    import os

    configure_offline()
    from ultralytics import YOLO

    threads = plan.threads or os.cpu_count() or 1
    slices = sum(1 for _ in (data_yaml.parent / "train" / "images").iterdir())
    model = YOLO(str(plan.base_weights), task="detect")
    _progress_callbacks(model, plan.epochs, threads, progress)
    # Slices are already at the inference scale and letterboxed as inference does: no mosaic, little
    # scale jitter; a short warm-up, since the weights are trained already. nbs: see nominal_batch.
    model.train(data=str(data_yaml), epochs=plan.epochs, imgsz=plan.slicing.imgsz, batch=plan.batch,
                nbs=nominal_batch(slices, plan.batch),
                device=plan.device, workers=plan.workers, project=str(run_dir.parent.resolve()), name=run_dir.name,
                exist_ok=True, pretrained=True, optimizer="AdamW", lr0=plan.lr0, warmup_epochs=0.5, mosaic=0.0,
                close_mosaic=0, scale=0.15, translate=0.05, degrees=0.0, flipud=0.5, fliplr=0.5, amp=False,
                plots=False, seed=plan.seed, deterministic=True, max_det=600, patience=100, val=True,
                verbose=False)
    trainer = model.trainer
    if trainer is None:
        raise RuntimeError("ultralytics returned no trainer")
    best = Path(trainer.best) if Path(trainer.best).exists() else Path(trainer.last)
    metrics = {k: round(float(v), 4) for k, v in (trainer.metrics or {}).items() if k.startswith("metrics/")}
    return best, metrics


def count_photos(weights: Path, photos: list[LabelledPhoto], settings: Settings, plan: TrainPlan,
                 counted: tuple[int, ...], progress: Progress, what: str = "held-out") -> list[PhotoCounts]:
    """Count labelled photos through the pipeline with the new weights, at every threshold of THRESHOLDS."""
    from app.ml.pipeline import pipeline_counter
    from app.ml.registry import ModelRegistry

    trained = settings.model_copy(update={
        "detection_weights": str(weights), "detection_runtime": "torch", "detection_precision": "fp32",
        "detection_imgsz": plan.slicing.imgsz, "slice_size": plan.slicing.slice_size,
        "slice_reference_side": plan.slicing.reference_side, "slice_overlap": plan.slicing.overlap,
        "slice_scale_down": plan.slicing.scale_down})
    count_at = pipeline_counter(ModelRegistry(trained), whole_photo=plan.whole_photo)
    results = []
    for number, photo in enumerate(photos, 1):
        image = decode_rgb(photo.image.read_bytes())
        results.append(count_photo(photo.name, image, count_at, THRESHOLDS, labels=photo, counted_classes=counted))
        progress(f"counted {what} photo {number}/{len(photos)} {photo.name}")
    return results


def _export(weights: Path, imgsz: int, progress: Progress) -> str | None:
    """The OpenVINO export the CPU workers run; built now so the first worker start does not pay for it."""
    from app.ml.export import ensure_export

    try:
        target = ensure_export(weights, "openvino", imgsz)
    except Exception as exc:  # an export is a convenience: the workers build it themselves on first load
        progress(f"runtime export skipped: {exc}")
        return None
    return str(target.relative_to(weights.parent)) if target.is_relative_to(weights.parent) else str(target)


def describe_base(plan: TrainPlan, base: ModelCard) -> dict[str, str]:
    """The card's `base_model`: the base's name (`shipped` or a trained model's), its weights file name,
    their SHA-256 (hex) and its card id, so a model says which weights it continued from."""
    return {"name": plan.base_name or plan.base_weights.name, "weights": plan.base_weights.name,
            "weights_sha256": weights_digest(plan.base_weights), "card_id": base.id}


def train(plan: TrainPlan, settings: Settings, progress: Progress = print_progress) -> TrainResult:
    """The whole of `demeter train`; returns where the new model is. Raises LabelError, ValueError."""
    started = time.perf_counter()
    base = read_card(card_path(plan.base_weights), plan.base_weights, "detect")
    base_model = describe_base(plan, base)
    progress(f"starting from {base_model['name']}: {plan.base_weights} (sha256 {base_model['weights_sha256'][:12]}, "
             f"card {base.id})")
    labels = read_labels(plan.data)
    if plan.classes:
        labels = select_classes(labels, plan.classes)
    if plan.max_photos:
        labels = LabelSet(labels.classes, tuple(sorted(labels.photos, key=lambda p: p.name)[: plan.max_photos]),
                          labels.source)
    side = point_box_side(labels, plan.plant_side, plan.base_weights)
    labels = with_point_boxes(labels, side)
    counted = tuple(i for i, name in enumerate(labels.classes) if name in settings.detection_count_classes) or (0,)
    train_photos, held_out = split_photos(labels.photos, plan.val_fraction, plan.seed)
    progress(f"{len(labels.photos)} labelled photos ({labels.source}, classes {', '.join(labels.classes)}): "
             f"{len(train_photos)} to train on, {len(held_out)} held out; {labels.labels} labels, "
             f"{labels.point_labels} of them points (boxes of {side:.1f} px at a {REFERENCE_LONG_SIDE} px side)")

    rehearsal = rehearsal_photos(plan, base)

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    model_name = f"{plan.name}-{stamp}"
    work = plan.work / model_name
    slices = {"train": write_slices(train_photos, work / "data" / "train", plan.slicing, progress,
                                    plan.empty_slices, plan.seed),
              "val": write_slices(held_out, work / "data" / "val", plan.slicing, progress, plan.empty_slices,
                                  plan.seed)}
    rehearsed: dict[str, Any] = {"photos": rehearsal, "slices": 0}
    if rehearsal:
        seeds = REHEARSAL_SEEDS[:rehearsal]
        photos = default_style_photos(work / "rehearsal", seeds[0], rehearsal, counted[0])
        rehearsed["slices"] = add_rehearsal(work / "data" / "train", photos, plan.slicing, slices["train"],
                                            progress, plan.empty_slices, plan.seed)
        rehearsed.update(seeds=f"{seeds[0]}-{seeds[-1]}", source="app.ml.synthetic.render_photo(seed), default "
                         "style, 2048x1536; its slices join the training split only")
    best, val_metrics = run_trainer(plan, _data_yaml(work / "data", labels.classes), work / "run", progress)

    model_dir = plan.out / model_name
    model_dir.mkdir(parents=True, exist_ok=False)
    weights = model_dir / WEIGHTS_NAME
    shutil.copyfile(best, weights)
    counts = count_photos(weights, held_out, settings, plan, counted, progress)
    chosen = choose_threshold(counts)
    progress(f"threshold {chosen.threshold}: held-out count MAPE {chosen.count_mape:.1%}, worst photo "
             f"{chosen.worst_photo} {chosen.worst_error:.1%}")
    evaluation: dict[str, Any] = {
        "val_slices": val_metrics,
        "held_out_photos": {**chosen.as_dict(),
                            "regions": "whole photo" if plan.whole_photo else "container segmentation",
                            "per_photo": [{"photo": c.name, "true": c.true_count,
                                           "counted": c.counted[THRESHOLDS.index(chosen.threshold)]}
                                          for c in counts]},
    }
    if trained_on_synthetic(base) and plan.original_check:
        originals = default_style_photos(work / "original", ORIGINAL_CHECK_SEED, plan.original_check, counted[0])
        original = score(count_photos(weights, originals, settings, plan, counted, progress, "original-style"),
                         THRESHOLDS.index(chosen.threshold), THRESHOLDS)
        progress(f"original style at {chosen.threshold}: count MAPE {original.count_mape:.1%}")
        evaluation["original_style_photos"] = {
            **original.as_dict(), "what": "default-style synthetic photos the base model learned from, held out",
            "seeds": f"{ORIGINAL_CHECK_SEED}-{ORIGINAL_CHECK_SEED + plan.original_check - 1}"}
    digest = weights_digest(weights)
    card = {
        "id": f"{model_name}@{digest[:12]}",
        "model": model_name,
        "task": "detect",
        "weights": weights.name,
        "weights_sha256": digest,
        "classes": list(labels.classes),
        "counted_classes": [labels.classes[i] for i in counted],
        "reference_long_side": REFERENCE_LONG_SIDE,
        "confidence_threshold": chosen.threshold,
        "slicing": {"slice_size": plan.slicing.slice_size, "reference_side": plan.slicing.reference_side,
                    "overlap": plan.slicing.overlap, "imgsz": plan.slicing.imgsz,
                    "scale_down": plan.slicing.scale_down},
        "base_model": base_model,
        "training_data": {
            "source": str(plan.data), "format": labels.source, "data_sha256": data_digest(labels),
            "photos": {"train": len(train_photos), "held_out": len(held_out),
                       "held_out_names": [p.name for p in held_out]},
            "labels": labels.labels, "point_labels": labels.point_labels, "point_box_side": round(side, 2),
            "slices": slices, "rehearsal": rehearsed, "empty_slices_kept": plan.empty_slices,
            "epochs": plan.epochs, "batch": plan.batch,
            "lr0": plan.lr0, "device": plan.device,
            "minutes": round((time.perf_counter() - started) / 60, 2),
        },
        "detections": measure_plants(train_photos, counted),
        "evaluation": evaluation,
    }
    if plan.export:
        card["runtime_export"] = _export(weights, plan.slicing.imgsz, progress)
    write_card(card, weights)
    progress(f"model {model_name} written to {model_dir} in {(time.perf_counter() - started) / 60:.1f} min")
    return TrainResult(model_dir, weights, card, chosen)
