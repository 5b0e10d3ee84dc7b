"""Train Demeter's two models from synthetic bench photos, offline and reproducibly.

1. ``models/container_seg.pt`` - YOLO11n-seg, classes 0 tray / 1 segment, trained
   on whole 2048x1536 photos at imgsz 512.
2. ``models/plant_det.pt`` - YOLO11n detect, class 0 plant, trained on 320x320
   slices cut at native resolution from 2048x1536 photos, imgsz 320. A plant is
   labelled in a slice when its box centre lies inside; its box is clipped.

Seeds: training photos come from seeds 1000-1799 and validation photos from
1800-1999 (`app.ml.synthetic.render_photo(seed)`). Seeds >= 9000 are reserved for
held-out evaluation and are never rendered here.

Usage (from the repository root):
    nice -n 10 .venv/bin/python scripts/train_models.py            # full run
    .venv/bin/python scripts/train_models.py --quick --work var/smoke --out var/smoke/models
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.ml.offline import configure_offline

configure_offline()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from app.ml.synthetic import CONTAINER_CLASSES, SyntheticPhoto, render_photo  # noqa: E402

TRAIN_SEEDS = range(1000, 1800)
VAL_SEEDS = range(1800, 2000)
EVAL_SEED_START = 9000  # held-out evaluation seeds; never used for training
PHOTO_SIZE = (2048, 1536)
SLICE = 320
SEED = 0
# Stop a run early once its validation metrics clear these bars on two consecutive epochs.
STOP_TARGETS = {
    "seg": {"metrics/precision(B)": 0.97, "metrics/recall(B)": 0.97, "metrics/mAP50(B)": 0.98,
            "metrics/mAP50(M)": 0.97},
    "det": {"metrics/precision(B)": 0.985, "metrics/recall(B)": 0.985, "metrics/mAP50(B)": 0.99},
}


@dataclass(frozen=True)
class DataPlan:
    seg_train: int
    seg_val: int
    det_train_photos: int
    det_val_photos: int
    slices_per_photo: int
    background_fraction: float


# --------------------------------------------------------------------------- datasets


def _write_image(path: Path, rgb: np.ndarray) -> None:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])


def _seg_label(photo: SyntheticPhoto) -> str:
    h, w = photo.image.shape[:2]
    lines = []
    for c in photo.containers:
        pts = " ".join(f"{x / w:.6f} {y / h:.6f}" for x, y in c.polygon)
        lines.append(f"{CONTAINER_CLASSES.index(c.kind)} {pts}")
    return "\n".join(lines) + "\n"


def _slice_origins(rng: np.random.Generator, photo: SyntheticPhoto, k: int, bg: float) -> list[tuple[int, int]]:
    """Top-left corners: most slices centred inside a container bbox, some anywhere."""
    h, w = photo.image.shape[:2]
    origins = []
    for _ in range(k):
        if rng.random() < bg or not photo.containers:
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        else:
            x1, y1, x2, y2 = photo.containers[int(rng.integers(len(photo.containers)))].bbox
            cx, cy = rng.uniform(x1, x2), rng.uniform(y1, y2)
        x0 = int(np.clip(cx - SLICE / 2, 0, w - SLICE))
        y0 = int(np.clip(cy - SLICE / 2, 0, h - SLICE))
        origins.append((x0, y0))
    return origins


def _slice_label(boxes: np.ndarray, x0: int, y0: int) -> str:
    """YOLO lines for plants whose centre lies in the slice; boxes clipped to it."""
    if len(boxes) == 0:
        return ""
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    inside = (cx >= x0) & (cx < x0 + SLICE) & (cy >= y0) & (cy < y0 + SLICE)
    b = np.clip(boxes[inside] - [x0, y0, x0, y0], 0, SLICE) / SLICE
    return "".join(f"0 {(r[0] + r[2]) / 2:.6f} {(r[1] + r[3]) / 2:.6f} {r[2] - r[0]:.6f} {r[3] - r[1]:.6f}\n"
                   for r in b)


def _write_slices(photo: SyntheticPhoto, seed: int, out: Path, plan: DataPlan) -> None:
    rng = np.random.default_rng([seed, 7])
    boxes = np.array([b for c in photo.containers for b in c.plants], dtype=np.float64).reshape(-1, 4)
    for j, (x0, y0) in enumerate(_slice_origins(rng, photo, plan.slices_per_photo, plan.background_fraction)):
        name = f"slice_{seed}_{j}"
        _write_image(out / "images" / f"{name}.jpg", photo.image[y0:y0 + SLICE, x0:x0 + SLICE])
        (out / "labels" / f"{name}.txt").write_text(_slice_label(boxes, x0, y0))


def _render_split(seeds: Iterable[int], seg_n: int, det_n: int, seg_dir: Path, det_dir: Path,
                  plan: DataPlan) -> None:
    for d in (seg_dir, det_dir):
        (d / "images").mkdir(parents=True, exist_ok=True)
        (d / "labels").mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds):
        if i >= max(seg_n, det_n):
            break
        photo = render_photo(seed, *PHOTO_SIZE)
        if i < seg_n:
            _write_image(seg_dir / "images" / f"bench_{seed}.jpg", photo.image)
            (seg_dir / "labels" / f"bench_{seed}.txt").write_text(_seg_label(photo))
        if i < det_n:
            _write_slices(photo, seed, det_dir, plan)


def build_datasets(work: Path, plan: DataPlan) -> tuple[Path, Path]:
    """Render photos once and write both YOLO datasets; reuse them if the plan is unchanged."""
    data = work / "data"
    marker = data / "plan.json"
    wanted = json.dumps(plan.__dict__, sort_keys=True)
    if not (marker.exists() and marker.read_text() == wanted):
        shutil.rmtree(data, ignore_errors=True)
        t0 = time.perf_counter()
        _render_split(TRAIN_SEEDS, plan.seg_train, plan.det_train_photos, data / "seg" / "train",
                      data / "det" / "train", plan)
        _render_split(VAL_SEEDS, plan.seg_val, plan.det_val_photos, data / "seg" / "val", data / "det" / "val", plan)
        marker.write_text(wanted)
        print(f"datasets rendered in {time.perf_counter() - t0:.0f}s", flush=True)
    seg_yaml, det_yaml = data / "container_seg.yaml", data / "plant_det.yaml"
    _write_data_yaml(seg_yaml, data / "seg", dict(enumerate(CONTAINER_CLASSES)))
    _write_data_yaml(det_yaml, data / "det", {0: "plant"})
    return seg_yaml, det_yaml


def _write_data_yaml(path: Path, root: Path, names: dict[int, str]) -> None:
    lines = [f"path: {root.resolve()}", "train: train/images", "val: val/images", "names:"]
    lines += [f"  {k}: {v}" for k, v in names.items()]
    path.write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- training


def _common_args(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    return {"device": args.device, "amp": False, "plots": False, "seed": SEED, "deterministic": True,
            "workers": min(args.workers, 2), "pretrained": False, "project": str((work / "runs").resolve()),
            "exist_ok": True, "verbose": True, "patience": 100, "cache": "ram", "val": True}


def _stop_at(targets: dict[str, float], hits: int = 2) -> Any:
    """Callback: stop training once all `targets` are met on `hits` consecutive validations."""
    streak = [0]

    def callback(trainer: Any) -> None:
        met = all(float(trainer.metrics.get(k, 0.0)) >= v for k, v in targets.items())
        streak[0] = streak[0] + 1 if met else 0
        if streak[0] >= hits:
            print(f"targets {targets} met for {hits} epochs: stopping early", flush=True)
            trainer.stop = True

    return callback


def train_one(model_yaml: str, data_yaml: Path, name: str, overrides: dict[str, Any],
              targets: dict[str, float] | None = None, threads: int = 1) -> Path:
    from ultralytics import YOLO

    model = YOLO(model_yaml)
    # select_device() in the trainer's __init__ resets torch to cpu_count - 1 threads; undo that.
    model.add_callback("on_pretrain_routine_start", lambda _trainer: torch.set_num_threads(threads))
    if targets:
        model.add_callback("on_fit_epoch_end", _stop_at(targets))
    t0 = time.perf_counter()
    model.train(data=str(data_yaml), name=name, **overrides)
    print(f"{name}: trained in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    trainer = model.trainer
    assert trainer is not None
    return Path(trainer.best)


def validate(weights: Path, data_yaml: Path, imgsz: int, device: str, batch: int) -> dict[str, float]:
    from ultralytics import YOLO

    metrics = YOLO(str(weights)).val(data=str(data_yaml), imgsz=imgsz, device=device, batch=batch,
                                     plots=False, split="val", verbose=False, max_det=600)
    return {k: round(float(v), 4) for k, v in metrics.results_dict.items()}


def export(best: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(best, out)
    print(f"{out}: {out.stat().st_size / 1e6:.2f} MB", flush=True)


def seg_overrides(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    return {**_common_args(args, work), "epochs": args.seg_epochs, "imgsz": args.seg_imgsz,
            "batch": args.seg_batch, "mosaic": args.seg_mosaic,
            "close_mosaic": args.seg_close_mosaic if args.seg_close_mosaic >= 0 else max(1, args.seg_epochs // 4),
            "flipud": 0.5, "fliplr": 0.5, "degrees": 0.0, "scale": 0.3, "translate": 0.1,
            # Ultralytics warms up for at least 100 iterations (5 epochs of 160 photos at batch 8, with a
            # 0.1 bias lr); from scratch on few iterations that wastes a third of the run, so skip it.
            "lr0": args.seg_lr, "optimizer": "AdamW", "warmup_epochs": 0.0}


def det_overrides(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    # Slices are at the inference scale, so keep scale jitter small and skip mosaic.
    return {**_common_args(args, work), "epochs": args.det_epochs, "imgsz": args.det_imgsz,
            "batch": args.det_batch, "mosaic": 0.0, "close_mosaic": 0, "flipud": 0.5, "fliplr": 0.5,
            "degrees": 0.0, "scale": 0.15, "translate": 0.05, "lr0": args.det_lr, "optimizer": "AdamW",
            "warmup_epochs": 0.5, "max_det": 600}


# --------------------------------------------------------------------------- cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="0" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=Path("models"))
    p.add_argument("--work", type=Path, default=Path("var/train"))
    p.add_argument("--quick", action="store_true", help="tiny smoke run: 1 epoch, a few images")
    p.add_argument("--only", choices=("seg", "det"), help="train just one of the two models")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="torch CPU threads (ultralytics would use cpu_count - 1, i.e. 1 on 2 cores)")
    p.add_argument("--seg-train", type=int, default=160)
    p.add_argument("--seg-val", type=int, default=40)
    p.add_argument("--seg-epochs", type=int, default=18)
    p.add_argument("--seg-imgsz", type=int, default=512)
    p.add_argument("--seg-batch", type=int, default=4)
    p.add_argument("--seg-lr", type=float, default=0.002)
    p.add_argument("--seg-mosaic", type=float, default=0.5)
    p.add_argument("--seg-close-mosaic", type=int, default=-1, help="-1: the last quarter of the epochs")
    p.add_argument("--det-train-photos", type=int, default=200)
    p.add_argument("--det-val-photos", type=int, default=30)
    p.add_argument("--slices-per-photo", type=int, default=12)
    p.add_argument("--background-fraction", type=float, default=0.1)
    p.add_argument("--det-epochs", type=int, default=9)
    p.add_argument("--det-imgsz", type=int, default=SLICE)
    p.add_argument("--det-batch", type=int, default=8)
    p.add_argument("--no-early-stop", action="store_true", help="always run all epochs")
    p.add_argument("--seg-init", type=Path, help="continue from these container weights (a local .pt)")
    p.add_argument("--det-init", type=Path, help="continue from these plant weights (a local .pt)")
    p.add_argument("--name-suffix", default="", help="suffix for the ultralytics run names")
    p.add_argument("--det-lr", type=float, default=0.002)
    args = p.parse_args(argv)
    if args.quick:
        args.seg_train, args.seg_val, args.seg_epochs = 4, 2, 1
        args.det_train_photos, args.det_val_photos, args.slices_per_photo, args.det_epochs = 2, 1, 4, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.work
    plan = DataPlan(args.seg_train, args.seg_val, args.det_train_photos, args.det_val_photos,
                    args.slices_per_photo, args.background_fraction)
    seg_yaml, det_yaml = build_datasets(work, plan)
    report: dict[str, Any] = {"device": args.device, "plan": plan.__dict__}
    jobs = [("seg", "yolo11n-seg.yaml", seg_yaml, "container_seg", seg_overrides(args, work), args.seg_imgsz),
            ("det", "yolo11n.yaml", det_yaml, "plant_det", det_overrides(args, work), args.det_imgsz)]
    for key, yaml, data_yaml, name, overrides, imgsz in jobs:
        if args.only and args.only != key:
            continue
        t0 = time.perf_counter()
        targets = None if args.no_early_stop else STOP_TARGETS[key]
        init = args.seg_init if key == "seg" else args.det_init
        if init is not None:  # the architecture still comes from the YAML; only the weights are loaded
            overrides = {**overrides, "pretrained": str(init.resolve()), "warmup_epochs": 0.0}
        best = train_one(yaml, data_yaml, name + args.name_suffix, overrides, targets, args.threads)
        minutes = round((time.perf_counter() - t0) / 60, 1)
        export(best, args.out / f"{name}.pt")
        metrics = validate(args.out / f"{name}.pt", data_yaml, imgsz, args.device, overrides["batch"])
        report[name] = {"train_minutes": minutes, "epochs": overrides["epochs"], "imgsz": imgsz,
                        "init": str(init) if init else None,
                        "size_mb": round((args.out / f"{name}.pt").stat().st_size / 1e6, 2), "val": metrics}
        print(json.dumps({name: report[name]}, indent=2), flush=True)
    (work / f"report{args.name_suffix}.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
