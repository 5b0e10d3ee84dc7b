"""The `demeter` command line (also `python -m app`).

    demeter demo [--photos N] [--json]       the whole pipeline on the embedded default
    demeter process PATH... [--json]         the same for your own photos
    demeter synth --out DIR --n N --seed S   generate bench photos with known counts
    demeter eval --data DIR [--json]         counts against ground truth
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
    from app.ml.synthetic import write_dataset

    annotations = write_dataset(Path(args.out), n=args.n, seed=args.seed, width=args.width, height=args.height)
    print(f"wrote {args.n} photos and {annotations}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from app.evaluation import main as eval_main

    return eval_main(data=Path(args.data), as_json=args.json, compare_full_image=not args.no_full_image)


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
    synth.set_defaults(func=_cmd_synth)

    evaluate = sub.add_parser("eval", help="compare counts with ground truth on a generated set")
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--json", action="store_true")
    evaluate.add_argument("--no-full-image", action="store_true", help="skip the unsliced comparison")
    evaluate.set_defaults(func=_cmd_eval)

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

    broker = sub.add_parser("broker", help="the broker's queues against the declared topology")
    broker.add_argument("action", choices=["check", "migrate"],
                        help="check: name every mismatch (exit 1 if any); migrate: redeclare, keeping messages")
    broker.set_defaults(func=_cmd_broker)

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
