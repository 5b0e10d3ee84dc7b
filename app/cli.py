"""The `demeter` command line (also `python -m app`).

    demeter demo [--photos N] [--json]       the whole pipeline on the embedded default
    demeter process PATH... [--json]         the same for your own photos
    demeter synth --out DIR --n N --seed S   generate bench photos with known counts
    demeter eval --data DIR [--json]         counts against ground truth (--labels/--counts: your photos)
    demeter train --data DIR [--quick]       fine-tune the plant detector on your labelled photos
    demeter models list|show [NAME]|use NAME the plant detector the workers load
    demeter export-detections ID --format coco|yolo   a photo's plants as pre-annotations
    demeter migrate                          bring the database schema up to date
    demeter api                              serve the HTTP API
    demeter dlq list|show|replay|purge       inspect and replay the dead-letter queue
    demeter logs --correlation-id ID         follow one photo through JSON logs

Imports are lazy: `demo` must set up its environment before the settings are read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_demo(args: argparse.Namespace) -> int:
    from app.runner import run_demo

    return run_demo(photos=args.photos, as_json=args.json, seed=args.seed, timeout=args.timeout)


def _cmd_process(args: argparse.Namespace) -> int:
    from app.runner import run_process

    return run_process([Path(p) for p in args.paths], as_json=args.json, timeout=args.timeout)


def _cmd_synth(args: argparse.Namespace) -> int:
    from app.ml.synthetic import STYLES, write_dataset

    annotations = write_dataset(Path(args.out), n=args.n, seed=args.seed, width=args.width, height=args.height,
                                style=STYLES[args.style])
    print(f"wrote {args.n} photos and {annotations}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    from app.config import get_settings
    from app.ml.catalog import UnknownModel, resolve_detection
    from app.ml.labels import LabelError

    try:
        settings = resolve_detection(get_settings(), args.model)
    except UnknownModel as exc:
        print(f"demeter eval: {exc}", file=sys.stderr)
        return 2
    if not (args.labels or args.counts):
        from app.evaluation import main as eval_main

        return eval_main(data=Path(args.data), as_json=args.json, compare_full_image=not args.no_full_image,
                         settings=settings)
    from app import label_evaluation

    try:
        result = label_evaluation.evaluate_labels(Path(args.data), settings, Path(args.counts) if args.counts else None,
                                                  whole_photo=args.whole_photo, plant_side=args.plant_size)
        if args.write_card:
            path = label_evaluation.write_threshold(settings, result, Path(args.data))
            print(f"threshold {result.best.threshold} written to {path}", file=sys.stderr)
    except (LabelError, ValueError) as exc:
        print(f"demeter eval: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        label_evaluation.print_report(result)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from app.config import get_settings
    from app.ml.catalog import UnknownModel, resolve_detection
    from app.ml.labels import LabelError
    from app.ml.pipeline import slice_params
    from app.ml.registry import select_device
    from app.ml.training import TrainPlan, train

    try:
        settings = resolve_detection(get_settings())  # start from the detector in use, at its slicing
    except UnknownModel as exc:
        print(f"demeter train: {exc}", file=sys.stderr)
        return 2
    device = select_device(settings.device)
    quick = args.quick
    slicing = slice_params(settings)
    imgsz = args.imgsz or (160 if quick else settings.detection_imgsz)
    plan = TrainPlan(
        data=Path(args.data), out=Path(args.out or settings.trained_models_dir), name=args.name,
        base_weights=Path(args.base or settings.detection_weights),
        slicing=type(slicing)(**{**slicing.__dict__, "imgsz": imgsz}),
        epochs=args.epochs or (1 if quick else 30), batch=args.batch, lr0=args.lr0,
        device="0" if device.startswith("cuda") else device, val_fraction=args.val_fraction,
        plant_side=args.plant_size, max_photos=args.max_photos or (4 if quick else None),
        classes=args.classes.split(",") if args.classes else None, whole_photo=args.whole_photo,
        export=not (args.no_export or quick), workers=0 if quick else args.workers, empty_slices=args.empty_slices,
        seed=args.seed, work=settings.data_dir / "train-own")
    try:
        result = train(plan, settings)
    except (LabelError, ValueError) as exc:
        print(f"demeter train: {exc}", file=sys.stderr)
        return 2
    print(f"use it with: demeter models use {result.model_dir.name}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    import json

    from app.config import get_settings
    from app.ml import catalog

    settings = get_settings()
    try:
        if args.models_command == "use":
            entry = catalog.use_model(settings, args.name)
            print(f"workers load {entry.name} ({entry.card.id}) when they next start or recycle")
            if settings.detection_model:
                print(f"note: DETECTION_MODEL={settings.detection_model} is set and wins over this choice")
            return 0
        if args.models_command == "show":
            entry = catalog.find_model(settings, args.name or catalog.active_name(settings))
            print(json.dumps(entry.card.document or entry.summary(), indent=2))
            return 0
    except catalog.UnknownModel as exc:
        print(f"demeter models: {exc}", file=sys.stderr)
        return 2
    active = catalog.active_name(settings)
    entries = [catalog.find_model(settings, catalog.SHIPPED), *catalog.trained_models(settings)]
    if args.json:
        print(json.dumps([{**e.summary(), "in_use": e.name == active} for e in entries], indent=2))
        return 0
    print(f"{'':2}{'name':<36} {'card':<48} {'threshold':>9} {'held-out MAPE':>13}")
    for e in entries:
        s = e.summary()
        mape = "-" if s["held_out_count_mape"] is None else f"{s['held_out_count_mape']:.1%}"
        threshold = "-" if s["confidence_threshold"] is None else f"{s['confidence_threshold']:.2f}"
        print(f"{'*' if e.name == active else ' '} {e.name:<36} {e.card.id[:48]:<48} {threshold:>9} {mape:>13}")
    return 0


def _cmd_export_detections(args: argparse.Namespace) -> int:
    import json

    from app.db.detections import photo_detections
    from app.db.session import db_session
    from app.errors import UnknownPhoto
    from app.review import ReviewRegion, coco_detections, yolo_detections

    try:
        with db_session() as db:
            found = photo_detections(db, photo_id=args.photo_id)
            photo = found.photo
            name = photo.original_filename or Path(photo.storage_key).name
            regions = [ReviewRegion(r.class_name, (r.x1, r.y1, r.x2, r.y2), r.polygon, r.confidence)
                       for r in found.regions] if args.regions else None
            if args.format == "coco":
                text = json.dumps(coco_detections(image_id=photo.id, file_name=name, width=photo.width,
                                                  height=photo.height, plants=found.plants, regions=regions), indent=2)
            else:
                text = yolo_detections(width=photo.width, height=photo.height, plants=found.plants)
    except UnknownPhoto as exc:
        print(f"demeter export-detections: {exc}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).write_text(text if text.endswith("\n") or not text else text + "\n")
        print(f"{len(found.plants)} plants of {name} written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    return 0


def _cmd_migrate(_: argparse.Namespace) -> int:
    from app.db.migrate import upgrade_database

    upgrade_database()
    print("database is at the newest schema")
    return 0


def _cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    uvicorn.run("app.api.main:app", host=args.host, port=args.port, log_config=None)
    return 0


def _cmd_dlq(args: argparse.Namespace) -> int:
    from app.deadletter.cli import run

    return run(args)


def _cmd_logs(args: argparse.Namespace) -> int:
    from app.observability.follow import follow

    return follow(args.correlation_id, [Path(p) for p in args.files])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="demeter", description="Demeter Pipeline: plant counts from bench photos.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the pipeline on generated photos (embedded, no servers)")
    demo.add_argument("--photos", type=int, default=3)
    demo.add_argument("--seed", type=int, default=9000, help="seeds >= 9000 are never used for training")
    demo.add_argument("--timeout", type=float, default=900.0)
    demo.add_argument("--json", action="store_true")
    demo.set_defaults(func=_cmd_demo)

    process = sub.add_parser("process", help="run the pipeline on your own photos")
    process.add_argument("paths", nargs="+")
    process.add_argument("--timeout", type=float, default=900.0)
    process.add_argument("--json", action="store_true")
    process.set_defaults(func=_cmd_process)

    synth = sub.add_parser("synth", help="generate bench photos with known plant counts (COCO JSON)")
    synth.add_argument("--out", required=True)
    synth.add_argument("--n", type=int, default=10)
    synth.add_argument("--seed", type=int, default=9000)
    synth.add_argument("--width", type=int, default=2048)
    synth.add_argument("--height", type=int, default=1536)
    synth.add_argument("--style", choices=("default", "perlite"), default="default",
                       help="perlite: large strap-leaved plants, white grains, light cell walls, empty cells")
    synth.set_defaults(func=_cmd_synth)

    evaluate = sub.add_parser("eval", help="compare counts with ground truth on a generated set")
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--json", action="store_true")
    evaluate.add_argument("--no-full-image", action="store_true", help="skip the unsliced comparison")
    evaluate.add_argument("--labels", action="store_true",
                          help="score plant counts against labels (YOLO/COCO boxes or points) at every threshold")
    evaluate.add_argument("--counts", help="score against a `file_name,count` file instead (photos in --data)")
    evaluate.add_argument("--model", help="a trained model's name, or `shipped` (default: the model in use)")
    evaluate.add_argument("--whole-photo", action="store_true", help="count whole photos, not segmented containers")
    evaluate.add_argument("--plant-size", type=float, help="side of a point label's box, px at a 2048 px long side")
    evaluate.add_argument("--write-card", action="store_true",
                          help="write the best threshold into the evaluated model's card (held-out photos only)")
    evaluate.set_defaults(func=_cmd_eval)

    training = sub.add_parser("train", help="fine-tune the plant detector on your labelled photos")
    training.add_argument("--data", required=True, help="labelled photos: a COCO JSON file or images/ + labels/")
    training.add_argument("--quick", action="store_true", help="smoke run: 4 photos, 1 epoch, imgsz 160, no export")
    training.add_argument("--epochs", type=int, help="default 30 (1 with --quick)")
    training.add_argument("--out", help="parent of the new model directory (default TRAINED_MODELS_DIR)")
    training.add_argument("--name", default="plants", help="model directory name before the timestamp")
    training.add_argument("--base", help="weights to start from (default: the detector in use)")
    training.add_argument("--imgsz", type=int, help="network input (default DETECTION_IMGSZ; 160 with --quick)")
    training.add_argument("--batch", type=int, default=8)
    training.add_argument("--lr0", type=float, default=0.002)
    training.add_argument("--val-fraction", type=float, default=0.2, help="share of photos held out")
    training.add_argument("--plant-size", type=float,
                          help="side of a point label's box, px at a 2048 px long side (default: learned)")
    training.add_argument("--classes", help="comma-separated classes to train (default: every labelled class)")
    training.add_argument("--max-photos", type=int, help="use only the first N photos (by name)")
    training.add_argument("--whole-photo", action="store_true",
                          help="calibrate on whole photos instead of segmented containers")
    training.add_argument("--empty-slices", type=float, default=0.25,
                          help="share of plant-free slices kept for training (default 0.25)")
    training.add_argument("--no-export", action="store_true", help="skip the OpenVINO export")
    training.add_argument("--workers", type=int, default=2, help="data loader processes")
    training.add_argument("--seed", type=int, default=0)
    training.set_defaults(func=_cmd_train)

    models = sub.add_parser("models", help="list, show and choose the plant detector the workers use")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    models_sub.add_parser("list").add_argument("--json", action="store_true")
    models_sub.add_parser("show").add_argument("name", nargs="?", help="default: the model in use")
    models_sub.add_parser("use").add_argument("name", help="a trained model's directory name, or `shipped`")
    models.set_defaults(func=_cmd_models)

    export = sub.add_parser("export-detections",
                            help="a photo's plant boxes as COCO JSON or YOLO txt, for CVAT or Label Studio")
    export.add_argument("photo_id", type=int)
    export.add_argument("--format", choices=("coco", "yolo"), default="coco")
    export.add_argument("--regions", action="store_true", help="COCO: also the regions (trays, beds) with outlines")
    export.add_argument("--out", help="file to write (default: standard output)")
    export.set_defaults(func=_cmd_export_detections)

    sub.add_parser("migrate", help="alembic upgrade head").set_defaults(func=_cmd_migrate)

    api = sub.add_parser("api", help="serve the HTTP API with uvicorn")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.set_defaults(func=_cmd_api)

    dlq = sub.add_parser("dlq", help="the dead-letter queue")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_list = dlq_sub.add_parser("list")
    dlq_list.add_argument("--all", action="store_true", help="include replayed entries")
    dlq_list.add_argument("--json", action="store_true")
    dlq_sub.add_parser("show").add_argument("id", type=int)
    replay = dlq_sub.add_parser("replay")
    replay.add_argument("id", type=int, nargs="?")
    replay.add_argument("--all", action="store_true")
    replay.add_argument("--task", help="only entries of this task name")
    purge = dlq_sub.add_parser("purge")
    purge.add_argument("id", type=int, nargs="?")
    purge.add_argument("--older-than", type=float, help="days")
    dlq.set_defaults(func=_cmd_dlq)

    logs = sub.add_parser("logs", help="print the JSON log lines of one correlation id")
    logs.add_argument("--correlation-id", required=True)
    logs.add_argument("files", nargs="*", help="log files (default: standard input)")
    logs.set_defaults(func=_cmd_logs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from app.config import get_settings
    from app.observability.logging import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
