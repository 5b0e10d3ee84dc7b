"""`demeter dlq ...`: what an operator types to see and replay failures.

A dead letter names its photo by the photo's UUID (the id the API and Flower show), joined from
the photos table; `dlq list --photo UUID` keeps one photo's letters.
"""

from __future__ import annotations

import argparse
import json

from app.db import dead_letters, repository
from app.db.models import DeadLetter
from app.db.session import db_session
from app.deadletter.replay import pending_ids, purge, replay
from app.errors import ReplayRefused, UnknownPhoto


def _row(letter: DeadLetter, photo_uuid: object) -> dict[str, object]:
    return {
        "id": letter.id,
        "task": letter.task_name.rsplit(".", 1)[-1],
        "photo_uuid": str(photo_uuid) if photo_uuid is not None else None,
        "error": f"{letter.exception_type}: {letter.exception_message}"[:120],
        "retries": letter.retries,
        "correlation_id": letter.correlation_id,
        "last_failed_at": letter.last_failed_at.isoformat(timespec="seconds"),
        "replayed_as": letter.replay_task_id,
    }


def _list(args: argparse.Namespace) -> int:
    with db_session() as db:
        photo_id = None
        if args.photo:
            try:
                photo_id = repository.photo_id_for(db, photo_uuid=args.photo)
            except UnknownPhoto as unknown:
                print(unknown)
                return 1
        letters = dead_letters.with_photo_uuids(db, include_replayed=args.all, photo_id=photo_id)
        rows = [_row(letter, photo_uuid) for letter, photo_uuid in letters]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        photo = f"photo={row['photo_uuid'] or '-':<36}"
        print(f"{row['id']:>5}  {row['task']:<18} {photo} retries={row['retries']}  {row['error']}")
    print(f"{len(rows)} dead letter(s)")
    return 0


def _show(args: argparse.Namespace) -> int:
    from app.celery_app import app  # noqa: F401  (settings and models loaded)

    with db_session() as db:
        letter = dead_letters.get(db, letter_id=args.id)
        if letter is None:
            print(f"no dead letter {args.id}")
            return 1
        photo_uuid = repository.photo_uuid(db, photo_id=letter.photo_id) if letter.photo_id is not None else None
        print(json.dumps({**_row(letter, photo_uuid), "task_name": letter.task_name, "task_id": letter.task_id,
                          "args": letter.args, "kwargs": letter.kwargs, "queue": letter.queue,
                          "first_failed_at": letter.first_failed_at.isoformat(timespec="seconds"),
                          "traceback": letter.traceback}, indent=2, default=str))
    return 0


def _replay(args: argparse.Namespace) -> int:
    from app.celery_app import app

    ids = pending_ids(args.task) if args.all else [args.id]
    if ids == [None]:
        print("replay needs an id or --all")
        return 2
    failures = 0
    for letter_id in ids:
        try:
            print(f"dead letter {letter_id} replayed as task {replay(letter_id, app)}")
        except ReplayRefused as refused:
            print(f"dead letter {letter_id} not replayed: {refused}")
            failures += 1
    return 1 if failures else 0


def _purge(args: argparse.Namespace) -> int:
    try:
        print(f"purged {purge(args.id, args.older_than)} dead letter(s)")
    except ReplayRefused as refused:
        print(refused)
        return 2
    return 0


def run(args: argparse.Namespace) -> int:
    commands = {"list": _list, "show": _show, "replay": _replay, "purge": _purge}
    return commands[args.dlq_command](args)
