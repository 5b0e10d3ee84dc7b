"""The `demeter` command line (also `python -m app`).

    demeter demo [--photos N] [--json]       the whole pipeline on the embedded default
    demeter process PATH... [--json]         the same for your own photos
    demeter synth --out DIR --n N --seed S   generate bench photos with known counts
    demeter eval --data DIR [--json]         counts against ground truth
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
    from app.ml.synthetic import write_dataset

    out = Path(args.out).resolve()
    annotations = write_dataset(out, n=args.n, seed=args.seed, width=args.width, height=args.height)
    print(f"wrote {args.n} photos to {out / 'images'} and their plant boxes to {annotations}")
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
    from app.api.server import serve
    from app.config import get_settings

    serve(get_settings(), args.host, args.port)
    return 0


def _cmd_dlq(args: argparse.Namespace) -> int:
    from app.deadletter.cli import run

    return run(args)


def _cmd_logs(args: argparse.Namespace) -> int:
    from app.observability.follow import follow

    correlation_id = args.correlation_id
    if args.photo:
        from app.db import repository
        from app.db.models import Photo
        from app.db.session import db_session
        from app.errors import UnknownPhoto

        try:
            with db_session() as db:
                photo = db.get(Photo, repository.photo_id_for(db, photo_uuid=args.photo))
                correlation_id = photo.correlation_id if photo is not None else None
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
    synth.set_defaults(func=_cmd_synth)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    evaluate = _parser(sub, "eval", "compare counts with ground truth on a generated set (runs the models here)")
    evaluate.add_argument("--data", required=True, metavar="DIR", help="a folder written by `demeter synth`")
    evaluate.add_argument("--json", action="store_true", help="print one JSON document, and no progress")
    evaluate.add_argument("--no-full-image", action="store_true",
                          help="skip the unsliced (whole photo at once) comparison")
    evaluate.set_defaults(func=_cmd_eval, shows_progress=True)


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
    _parser(sub, "migrate", "bring the database to the newest schema (alembic upgrade head)").set_defaults(
        func=_cmd_migrate)
    _add_api(sub)
    _add_dlq(sub)
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
