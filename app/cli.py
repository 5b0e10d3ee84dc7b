"""The `demeter` command line (also `python -m app`).

    demeter demo [--photos N] [--json]       the whole pipeline on the embedded default
    demeter process PATH... [--json]         the same for your own photos
    demeter synth --out DIR --n N --seed S   generate bench photos with known counts
    demeter eval --data DIR [--json]         counts against ground truth (--labels/--counts: your photos)
    demeter train --data DIR [--base NAME]   fine-tune the plant detector on your labelled photos
    demeter models list|show [NAME]|use NAME the plant detector the workers load
    demeter export-detections ID --format coco|yolo   a photo's plants as pre-annotations
    demeter recount --model NAME [ID...] [--since DATE]  count stored photos again, record the difference
    demeter migrate                          bring the database schema up to date
    demeter api                              serve the HTTP API
    demeter dlq list|show|replay|purge       inspect and replay the dead-letter queue
    demeter keys create|list|revoke          API keys for the HTTP API
    demeter logs --correlation-id ID         one photo's log lines, readable, in time order
    demeter logs --photo UUID                the same, found by the photo's UUID
    demeter config [--json]                  the effective settings, secrets masked

A failure prints one line (`demeter: <kind>: <message>`) and exits with the code of
its class (app/exits.py: 65 bad input, 69 service unreachable, 124 timeout, 70
anything unexpected); `--debug` adds the traceback.

Imports are lazy: `demo` must set up its environment before the settings are read.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from app import exits


def _cmd_demo(args: argparse.Namespace) -> int:
    from app.runner import run_demo

    return run_demo(photos=args.photos, as_json=args.json, seed=args.seed, timeout=args.timeout, yes=args.yes)


def _cmd_process(args: argparse.Namespace) -> int:
    from app.runner import run_process

    return run_process([Path(p) for p in args.paths], as_json=args.json, timeout=args.timeout)


def _cmd_synth(args: argparse.Namespace) -> int:
    from app.ml.synthetic import STYLES, write_dataset

    out = Path(args.out).resolve()
    annotations = write_dataset(out, n=args.n, seed=args.seed, width=args.width, height=args.height,
                                style=STYLES[args.style])
    print(f"wrote {args.n} photos to {out / 'images'} and their plant boxes to {annotations}")
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
    if args.detector_class and not (args.labels or args.counts):
        print("demeter eval: --class needs --labels or --counts", file=sys.stderr)
        return 2
    if args.detector_class and args.write_card:
        print("demeter eval: --write-card calibrates the counted classes; not with --class", file=sys.stderr)
        return 2
    if args.whole_photo and not (args.labels or args.counts):
        print("demeter eval: --whole-photo needs --labels or --counts (the synthetic evaluation scores the "
              "container finder too)", file=sys.stderr)
        return 2
    if not (args.labels or args.counts):
        from app.evaluation import main as eval_main

        return eval_main(data=Path(args.data), as_json=args.json, compare_full_image=not args.no_full_image,
                         settings=settings)
    from app import label_evaluation

    try:
        result = label_evaluation.evaluate_labels(Path(args.data), settings, Path(args.counts) if args.counts else None,
                                                  # Regions found as the workers find them, unless asked.
                                                  whole_photo=args.whole_photo or settings.region_mode == "whole",
                                                  plant_side=args.plant_size,
                                                  detector_class=args.detector_class)
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


def _cmd_train_segmenter(args: argparse.Namespace) -> int:
    from app.config import get_settings
    from app.ml.registry import select_device
    from app.ml.segmenter_training import SegmenterLabelError, SegmenterPlan, train_segmenter

    settings = get_settings()
    device = select_device(settings.device)
    quick = args.quick
    shipped = args.base in (None, "shipped")
    base_weights = Path(settings.segmentation_weights if shipped else args.base)
    if not base_weights.is_file():
        print(f"demeter train: no segmenter weights {base_weights} (--base: a weights file, or `shipped`)",
              file=sys.stderr)
        return 2
    plan = SegmenterPlan(
        data=Path(args.data), out=Path(args.out or settings.trained_models_dir), name=args.name,
        base_weights=base_weights, base_name="shipped" if shipped else str(base_weights),
        imgsz=args.imgsz or (160 if quick else settings.segmentation_imgsz),
        epochs=args.epochs or (1 if quick else 30), batch=args.batch,
        device="0" if device.startswith("cuda") else device, val_fraction=args.val_fraction,
        max_photos=args.max_photos or (4 if quick else None), seed=args.seed, work=settings.data_dir / "train-own")
    try:
        model_dir = train_segmenter(plan)
    except (SegmenterLabelError, ValueError) as exc:
        print(f"demeter train: {exc}", file=sys.stderr)
        return 2
    print(f"use it with: SEGMENTATION_WEIGHTS={model_dir / 'container_seg.pt'}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    if args.segmenter:
        return _cmd_train_segmenter(args)
    from app.config import get_settings
    from app.ml.catalog import UnknownModel, training_base
    from app.ml.labels import LabelError
    from app.ml.pipeline import slice_params
    from app.ml.registry import select_device
    from app.ml.training import TrainPlan, train

    try:
        # --base, else the detector in use; trained at its slicing.
        base, settings = training_base(get_settings(), args.base)
    except UnknownModel as exc:
        print(f"demeter train: {exc}", file=sys.stderr)
        return 2
    device = select_device(settings.device)
    quick = args.quick
    slicing = slice_params(settings)
    imgsz = args.imgsz or (160 if quick else settings.detection_imgsz)
    plan = TrainPlan(
        data=Path(args.data), out=Path(args.out or settings.trained_models_dir), name=args.name,
        base_weights=base.weights, base_name=base.name,
        slicing=type(slicing)(**{**slicing.__dict__, "imgsz": imgsz}),
        epochs=args.epochs or (1 if quick else 30), batch=args.batch, lr0=args.lr0,
        device="0" if device.startswith("cuda") else device, val_fraction=args.val_fraction,
        plant_side=args.plant_size, max_photos=args.max_photos or (4 if quick else None),
        classes=args.classes.split(",") if args.classes else None, whole_photo=args.whole_photo,
        export=not (args.no_export or quick), workers=0 if quick else args.workers, empty_slices=args.empty_slices,
        rehearsal=args.rehearsal, original_check=1 if quick else 3, seed=args.seed,
        work=settings.data_dir / "train-own")
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

    from app.db import repository
    from app.db.detections import photo_detections
    from app.db.session import db_session
    from app.errors import UnknownPhoto
    from app.review import ReviewRegion, coco_detections, yolo_detections

    try:
        with db_session() as db:
            found = photo_detections(db, photo_id=repository.resolve_photo(db, given=args.photo))
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


def _cmd_recount(args: argparse.Namespace) -> int:
    import json
    import time

    from app import recount
    from app.config import get_settings
    from app.errors import UnknownPhoto
    from app.exits import TimedOut
    from app.ml.catalog import UnknownModel, find_model

    if not args.photos and args.since is None:
        print("demeter recount: name photos (their UUIDs) or --since DATE", file=sys.stderr)
        return 2
    try:
        find_model(get_settings(), args.model)  # the workers resolve it again; a typo stops here
        if len(args.model) > recount.MAX_MODEL_NAME:
            raise UnknownModel(f"a model name of at most {recount.MAX_MODEL_NAME} characters, not {args.model!r}")
        photo_ids = recount.photos_to_recount(args.photos, args.since)
        sent = {photo_id: recount.start_recount(photo_id, args.model) for photo_id in photo_ids}
    except (UnknownModel, UnknownPhoto, ValueError) as exc:
        print(f"demeter recount: {exc}", file=sys.stderr)
        return 2
    print(f"{sum(sent.values())} of {len(photo_ids)} photos sent to the workers to recount with {args.model}",
          file=sys.stderr)
    finished = args.no_wait or recount.wait_for_recounts(photo_ids, args.model, time.monotonic() + args.timeout)
    reports = [recount.report(photo_id, args.model, already_done=not sent[photo_id]) for photo_id in photo_ids]
    if args.json:
        print(json.dumps([r.as_dict() for r in reports], indent=2))
    else:
        print(f"{'photo':<36} {'status':<10} {'region':>6} {'counted':>8} {'recount':>8} {'difference':>10}")
        for r in reports:
            for region in r.regions or [recount.RegionDifference(-1, None, None, None)]:
                cells = ["-" if v is None else str(v) for v in (region.counted, region.recounted)]
                cells.append("-" if region.difference is None else f"{region.difference:+d}")
                index = "-" if region.region_index < 0 else region.region_index
                print(f"{r.photo_uuid:<36} {r.status:<10} {index:>6} {cells[0]:>8} {cells[1]:>8} {cells[2]:>10}")
    if not finished:
        raise TimedOut(f"recounts not finished after {args.timeout:g} s (are the workers running?)")
    return 0 if all(r.status in ("completed", "warning") for r in reports) or args.no_wait else 1


def _cmd_migrate(_: argparse.Namespace) -> int:
    from app.db.migrate import upgrade_database

    upgrade_database()
    print("database is at the newest schema")
    return 0


def _cmd_api(args: argparse.Namespace) -> int:
    from app.api.server import serve
    from app.config import get_settings

    serve(get_settings(), args.host, args.port)
    return 0


def _cmd_dlq(args: argparse.Namespace) -> int:
    from app.deadletter.cli import run

    return run(args)


def _cmd_broker(args: argparse.Namespace) -> int:
    from app import broker
    from app.celery_app import app as celery

    if args.action == "migrate":
        for queue, count in broker.migrate(celery).items():
            print(f"{queue}: redeclared, {count} messages kept")
    problems = broker.check(celery)
    for problem in problems:
        print(problem)
    print("broker topology: " + ("MISMATCH" if problems else "ok"))
    return 1 if problems else 0


def _cmd_logs(args: argparse.Namespace) -> int:
    from app.observability.follow import follow

    correlation_id = args.correlation_id
    if args.photo:
        from app.db import repository
        from app.db.session import db_session
        from app.errors import UnknownPhoto

        try:
            with db_session() as db:
                photo_id = repository.photo_id_for(db, photo_uuid=args.photo)
                correlation_id = repository.get_photo(db, photo_id=photo_id).correlation_id
        except UnknownPhoto as unknown:
            print(unknown, file=sys.stderr)
            return 1
        if not correlation_id:
            print(f"photo {args.photo} has no correlation id", file=sys.stderr)
            return 1
    return follow(correlation_id, [Path(p) for p in args.files])


def _cmd_config(args: argparse.Namespace) -> int:
    from app.settings_view import print_settings

    print_settings(as_json=args.json)
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("demeter-pipeline")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


class _HelpWithDefaults(argparse.HelpFormatter):
    """Appends '(default: X)' to an option's help when it has a default worth saying (not for plain flags)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "%(default)" in text:
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """Every (sub)command's --help shows each option's default; subcommands inherit the class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpWithDefaults)
        super().__init__(*args, **kwargs)


def _parser(sub: argparse._SubParsersAction, name: str, help_text: str) -> argparse.ArgumentParser:
    """A subcommand with its help as its description too."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=900.0, metavar="SECONDS",
                        help="give up waiting for the photos after this many seconds (exit 124)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document instead of the table, and no progress")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    demo = _parser(sub, "demo", "run the pipeline on generated photos (embedded default: no servers needed)")
    demo.add_argument("--photos", type=int, default=3, metavar="N", help="number of photos to generate")
    demo.add_argument("--seed", type=int, default=9000,
                      help="seed of the first photo; seeds >= 9000 are never used for training")
    demo.add_argument("--yes", action="store_true",
                      help="run even when DATABASE_URL, BROKER_URL or RESULT_BACKEND name real servers "
                           "(the demo then writes its photos and stock rows there)")
    _add_run_options(demo)
    demo.set_defaults(func=_cmd_demo, shows_progress=True)


def _add_process(sub: argparse._SubParsersAction) -> None:
    process = _parser(sub, "process", "run the pipeline on your own photos; each run keeps its own folder")
    process.add_argument("paths", nargs="+", metavar="PHOTO", help="JPEG or PNG files")
    _add_run_options(process)
    process.set_defaults(func=_cmd_process, shows_progress=True)


def _add_synth(sub: argparse._SubParsersAction) -> None:
    synth = _parser(sub, "synth", "generate bench photos with known plant counts (COCO JSON)")
    synth.add_argument("--out", required=True, metavar="DIR", help="folder for images/ and annotations.json")
    synth.add_argument("--n", type=int, default=10, help="number of photos")
    synth.add_argument("--seed", type=int, default=9000, help="seed of the first photo (one seed per photo)")
    synth.add_argument("--width", type=int, default=2048, help="photo width in pixels")
    synth.add_argument("--height", type=int, default=1536, help="photo height in pixels")
    synth.add_argument("--style", choices=("default", "perlite"), default="default",
                       help="perlite: large strap-leaved plants, white grains, light cell walls, labelled empty cells")
    synth.set_defaults(func=_cmd_synth)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    evaluate = _parser(sub, "eval", "compare counts with ground truth on a generated set (runs the models here)")
    evaluate.add_argument("--data", required=True, metavar="DIR", help="a folder written by `demeter synth`")
    evaluate.add_argument("--json", action="store_true", help="print one JSON document, and no progress")
    evaluate.add_argument("--no-full-image", action="store_true",
                          help="skip the unsliced (whole photo at once) comparison")
    evaluate.add_argument("--labels", action="store_true",
                          help="score plant counts against labels (YOLO/COCO boxes or points) at every threshold")
    evaluate.add_argument("--counts", metavar="FILE",
                          help="score against a `file_name,count` file instead (photos in --data)")
    evaluate.add_argument("--model", metavar="NAME", help="a trained model's name, or `shipped` (the model in use)")
    evaluate.add_argument("--whole-photo", action="store_true", help="count whole photos, not segmented containers")
    evaluate.add_argument("--plant-size", type=float, metavar="PX",
                          help="side of a point label's box, px at a 2048 px long side")
    evaluate.add_argument("--write-card", action="store_true",
                          help="write the best threshold into the evaluated model's card (held-out photos only)")
    evaluate.add_argument("--class", dest="detector_class", metavar="NAME",
                          help="score this detector class against the labels of that name, not the counted "
                               "classes (e.g. empty_cell)")
    evaluate.set_defaults(func=_cmd_eval, shows_progress=True)


def _add_train(sub: argparse._SubParsersAction) -> None:
    training = _parser(sub, "train", "fine-tune the plant detector on your labelled photos (runs here, offline)")
    training.add_argument("--data", required=True, metavar="DIR",
                          help="labelled photos: a COCO JSON file, or images/ with labels/*.txt (YOLO)")
    training.add_argument("--quick", action="store_true", help="smoke run: 4 photos, 1 epoch, imgsz 160, no export")
    training.add_argument("--epochs", type=int, help="passes over the slices (30; 1 with --quick)")
    training.add_argument("--out", metavar="DIR", help="parent of the new model directory (TRAINED_MODELS_DIR)")
    training.add_argument("--name", default="plants", help="model directory name before the timestamp")
    training.add_argument("--base", metavar="NAME",
                          help="the detector to start from: a trained model's name (demeter models list) or "
                               "`shipped` (DETECTION_WEIGHTS); default: the one in use. With --segmenter: "
                               "segmenter weights (a path) or `shipped` (SEGMENTATION_WEIGHTS, the default)")
    training.add_argument("--imgsz", type=int, help="network input (DETECTION_IMGSZ; 160 with --quick)")
    training.add_argument("--batch", type=int, default=8, help="slices per training step")
    training.add_argument("--lr0", type=float, default=0.002, help="initial learning rate (AdamW)")
    training.add_argument("--val-fraction", type=float, default=0.2, help="share of photos held out")
    training.add_argument("--plant-size", type=float, metavar="PX",
                          help="side of a point label's box, px at a 2048 px long side (learned from box labels)")
    training.add_argument("--classes", help="comma-separated classes to train (every labelled class)")
    training.add_argument("--max-photos", type=int, metavar="N", help="use only the first N photos (by name)")
    training.add_argument("--whole-photo", action="store_true",
                          help="calibrate on whole photos instead of segmented containers")
    training.add_argument("--empty-slices", type=float, default=0.25, help="share of plant-free slices kept")
    training.add_argument("--rehearsal", type=int, metavar="N",
                          help="default-style synthetic photos whose slices are mixed into training, so the model "
                               "keeps what it learned from them (10 when the base model was trained on them, else 0)")
    training.add_argument("--no-export", action="store_true", help="skip the OpenVINO export")
    training.add_argument("--workers", type=int, default=2, help="data loader processes")
    training.add_argument("--seed", type=int, default=0, help="photo split and slice sampling seed")
    training.add_argument("--segmenter", action="store_true",
                          help="fine-tune the container segmenter (SEGMENTATION_WEIGHTS) on the labelled trays and "
                               "beds (COCO polygons or boxes) instead; --base, --epochs, --imgsz, --batch, "
                               "--val-fraction, --max-photos, --quick, --out, --name apply")
    training.set_defaults(func=_cmd_train)


def _add_models(sub: argparse._SubParsersAction) -> None:
    models = _parser(sub, "models", "list, show and choose the plant detector the workers load")
    models_sub = models.add_subparsers(dest="models_command", required=True, metavar="{list,show,use}")
    _parser(models_sub, "list", "the shipped and the trained detectors; * marks the one in use").add_argument(
        "--json", action="store_true", help="print a JSON list")
    _parser(models_sub, "show", "a detector's model card (JSON)").add_argument(
        "name", nargs="?", help="a trained model's name or `shipped` (the one in use)")
    _parser(models_sub, "use", "the detector workers load at their next start").add_argument(
        "name", help="a trained model's directory name, or `shipped`")
    models.set_defaults(func=_cmd_models)


def _add_export(sub: argparse._SubParsersAction) -> None:
    export = _parser(sub, "export-detections", "a counted photo's plant boxes as COCO JSON or YOLO txt, "
                                               "to load as pre-annotations in CVAT or Label Studio")
    export.add_argument("photo", metavar="PHOTO", help="the photo's UUID (the API's photo_id)")
    export.add_argument("--format", choices=("coco", "yolo"), default="coco", help="output format")
    export.add_argument("--regions", action="store_true", help="COCO: also the regions (trays, beds) with outlines")
    export.add_argument("--out", metavar="FILE", help="file to write (standard output)")
    export.set_defaults(func=_cmd_export_detections)


def _add_recount(sub: argparse._SubParsersAction) -> None:
    from datetime import datetime

    recount = _parser(sub, "recount", "count stored photos again with another detector (on the running workers) "
                                      "and record each region's difference as a `recount` stock movement, "
                                      "once per photo and model")
    recount.add_argument("photos", nargs="*", metavar="PHOTO", help="photo UUIDs (the API's photo_id)")
    recount.add_argument("--model", required=True, help="a trained model's name (demeter models list) or `shipped`")
    recount.add_argument("--since", type=datetime.fromisoformat, metavar="DATE",
                         help="also every photo counted (completed or warning) since DATE (ISO 8601, UTC "
                              "when no offset is given)")
    recount.add_argument("--no-wait", action="store_true", help="send the recounts and print what is there now")
    _add_run_options(recount)
    recount.set_defaults(func=_cmd_recount)


def _add_api(sub: argparse._SubParsersAction) -> None:
    api = _parser(sub, "api", "serve the HTTP API with uvicorn")
    api.add_argument("--host", default="127.0.0.1", help="address to listen on")
    api.add_argument("--port", type=int, default=8000, help="TCP port")
    api.set_defaults(func=_cmd_api)


def _add_dlq(sub: argparse._SubParsersAction) -> None:
    dlq = _parser(sub, "dlq", "the dead-letter queue: tasks that failed for good")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True, metavar="{list,show,replay,purge}")
    dlq_list = _parser(dlq_sub, "list", "entries not yet replayed, oldest first")
    dlq_list.add_argument("--all", action="store_true", help="include replayed entries")
    dlq_list.add_argument("--json", action="store_true", help="print a JSON list")
    dlq_list.add_argument("--photo", metavar="UUID", help="only this photo's entries (the UUID the API gave)")
    _parser(dlq_sub, "show", "one entry with its arguments and traceback (JSON)").add_argument(
        "id", type=int, help="dead letter id (from `dlq list`)")
    replay = _parser(dlq_sub, "replay", "send the original task again (new task id, same correlation id)")
    replay.add_argument("id", type=int, nargs="?", help="dead letter id")
    replay.add_argument("--all", action="store_true", help="every entry not yet replayed")
    replay.add_argument("--task", metavar="NAME", help="with --all: only entries of this task name")
    purge = _parser(dlq_sub, "purge", "delete entries")
    purge.add_argument("id", type=int, nargs="?", help="dead letter id")
    purge.add_argument("--older-than", type=float, metavar="DAYS", help="every entry last failed before this")
    dlq.set_defaults(func=_cmd_dlq)



def _add_broker(sub: argparse._SubParsersAction) -> None:
    broker = _parser(sub, "broker", "compare the broker's live queues with the declared topology (app/topology.py)")
    broker.add_argument("action", choices=["check", "migrate"],
                        help="check: name every mismatch (exit 1 if any); migrate: redeclare the queues with the "
                             "declared arguments, keeping their messages (stop the workers first)")
    broker.set_defaults(func=_cmd_broker)

def _add_keys(sub: argparse._SubParsersAction) -> None:
    from app.keys_cli import add_parser as add_keys_parser

    add_keys_parser(sub)


def _add_logs(sub: argparse._SubParsersAction) -> None:
    logs = _parser(sub, "logs", "print one correlation id's lines from JSON logs as readable text, in time order "
                                "(one line each: time, level, worker, task, event, fields)")
    which = logs.add_mutually_exclusive_group(required=True)
    which.add_argument("--correlation-id", metavar="ID", help="the X-Correlation-ID of a photo")
    which.add_argument("--photo", metavar="UUID", help="a photo's UUID (the API's id): its upload's correlation id")
    logs.add_argument("files", nargs="*", metavar="FILE", help="JSON log files; none or '-' reads standard input")
    logs.set_defaults(func=_cmd_logs)


def _add_config(sub: argparse._SubParsersAction) -> None:
    config = _parser(sub, "config", "print the effective settings (environment, .env, defaults), secrets masked")
    config.add_argument("--json", action="store_true", help="print one JSON object")
    config.set_defaults(func=_cmd_config)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="demeter", description="Demeter Pipeline: plant counts from bench photos.",
        epilog="exit codes: 0 done, 1 not all photos completed, 2 usage or confirmation needed, 65 bad input, "
               "69 service unreachable, 70 internal error, 124 timeout, 130 interrupted, 141 output closed")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_demo(sub)
    _add_process(sub)
    _add_synth(sub)
    _add_eval(sub)
    _add_train(sub)
    _add_models(sub)
    _add_export(sub)
    _add_recount(sub)
    _parser(sub, "migrate", "bring the database to the newest schema (alembic upgrade head)").set_defaults(
        func=_cmd_migrate)
    _add_api(sub)
    _add_dlq(sub)
    _add_broker(sub)
    _add_keys(sub)
    _add_logs(sub)
    _add_config(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from app.observability.logging import configure_from_settings

    try:
        configure_from_settings(quiet=getattr(args, "shows_progress", False))
        return int(args.func(args))
    except BrokenPipeError:  # the reader went away (`| head`): say nothing more on the closed pipe
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return exits.BROKEN_PIPE
    except KeyboardInterrupt:
        print("demeter: interrupted", file=sys.stderr)
        return exits.INTERRUPTED
    except Exception as exc:
        error = exits.classify(exc)
        if args.debug:
            traceback.print_exc()
        print(exits.one_line(error, args.debug), file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
