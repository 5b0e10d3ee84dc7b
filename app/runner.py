"""Local runs: start real worker processes, submit photos, wait, print the results.

`demeter demo` and `demeter process` use the embedded default unless the
environment names servers: a SQLite database, a filesystem broker and result
backend, and local storage, all under DATA_DIR (default `var/demo`). Earlier runs
are kept: every run gets its own folder `DATA_DIR/runs/<UTC time>/` with the
workers' logs and a copy of each annotated image (`annotated/<photo id>_<name>.jpg`).

Standard output carries only the table (or, with --json, the JSON document);
where the run writes and how far it is go to standard error (app/progress.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from app.config import PROJECT_ROOT, Settings, get_settings
from app.errors import PermanentError
from app.exits import NeedsConfirmation, TimedOut
from app.progress import ProgressDisplay, Step

CONNECTION_VARIABLES = ("DATABASE_URL", "BROKER_URL", "RESULT_BACKEND")
POLL_SECONDS = 0.5


@dataclass
class PhotoReport:
    photo_uuid: str | None  # its public id, as in the API, logs, dead letters, Flower; None: refused at upload
    name: str
    status: str
    regions: int
    counted: int | None
    true_count: int | None
    seconds: float | None
    error: str | None = None
    doubts: list[str] = field(default_factory=list)  # plain reasons the count may be wrong
    model_cards: dict[str, str] = field(default_factory=dict)  # provenance
    annotated: str | None = None  # path of the annotated image's copy in the run folder


def prepare_embedded(default_dir: str = "var/demo") -> Path:
    """DATA_DIR for a local run: `default_dir` on the embedded default unless DATA_DIR is set; any configured
    servers are kept. Nothing is deleted: earlier runs stay in their folders."""
    embedded = not any(os.environ.get(name) for name in CONNECTION_VARIABLES)
    if embedded and not os.environ.get("DATA_DIR"):
        os.environ["DATA_DIR"] = str(Path(default_dir).resolve())
    get_settings.cache_clear()
    data_dir = get_settings().data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir


def new_run_dir(data_dir: Path, now: datetime | None = None) -> Path:
    """A fresh `DATA_DIR/runs/YYYYmmdd-HHMMSS[-n]` folder (UTC)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    runs = data_dir / "runs"
    candidate, n = runs / stamp, 1
    while candidate.exists():
        n += 1
        candidate = runs / f"{stamp}-{n}"
    candidate.mkdir(parents=True)
    return candidate


def servers_written(settings: Settings, photos: int) -> list[str]:
    """What a demo would write outside the embedded default, one phrase per configured server; [] if none."""
    from app.settings_view import mask_url

    written = []
    if settings.database_url:
        written.append(f"{photos} synthetic photos with their sessions, regions, detections and stock "
                       f"batches and movements into DATABASE_URL={mask_url(settings.database_url)}")
    if settings.broker_url:
        written.append(f"their tasks onto BROKER_URL={mask_url(settings.broker_url)}")
    if settings.result_backend:
        written.append(f"task results into RESULT_BACKEND={mask_url(settings.result_backend)}")
    if settings.storage_backend == "s3":
        written.append(f"the photos and annotated images into s3://{settings.s3_bucket}/{settings.s3_prefix}")
    return written


def confirm_servers(settings: Settings, photos: int, yes: bool) -> None:
    """Raise NeedsConfirmation when the demo would write to configured servers and `--yes` was not given."""
    written = servers_written(settings, photos)
    if written and not yes:
        raise NeedsConfirmation("the demo would write " + "; ".join(written)
                                + ". Run it with --yes to allow that, or unset those variables for the "
                                  "embedded default (SQLite and files under var/demo)")


@contextmanager
def local_workers(log_dir: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """A GPU (solo, supervised so it can recycle) worker and a CPU worker for the cpu and io queues."""
    log_dir.mkdir(parents=True, exist_ok=True)
    commands = {
        "gpu": [sys.executable, "-m", "workers.supervise", sys.executable, "-m", "workers.gpu"],
        "cpu": [sys.executable, "-m", "workers.cpu", "--queues=cpu,io", "--concurrency=1"],
    }
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])}
    processes = []
    try:
        for name, command in commands.items():
            log_file = (log_dir / f"worker-{name}.log").open("ab")
            # Same working directory as this process: the same `.env` and relative DATA_DIR.
            processes.append(subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env))
        yield processes
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def current_step(photo_ids: list[int]) -> Step:
    """Photos finished and regions done so far, from the sessions."""
    from app.db import repository
    from app.db.models import SessionStatus
    from app.db.session import db_session

    with db_session() as db:
        sessions = list(repository.sessions_of(db, photo_ids=photo_ids).values())
        done = sum(SessionStatus(s.status).is_final for s in sessions)
        regions_total = sum(s.regions_total or 0 for s in sessions)
        regions_done = sum(min(s.regions_done, s.regions_total or 0) for s in sessions)
        partial = sum(min(s.regions_done, s.regions_total) / s.regions_total for s in sessions
                      if s.regions_total and not SessionStatus(s.status).is_final)
    return Step(done, len(photo_ids), regions_done, regions_total, partial)


def wait_for_sessions(photo_ids: list[int], deadline: float, progress: ProgressDisplay | None = None) -> bool:
    """Poll until every session is final or `deadline` (time.monotonic()) passes; True when all are final."""
    while True:
        step = current_step(photo_ids)
        if progress is not None:
            progress.update(step)
        if step.done == step.total:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)


def wait_for_annotated(photo_ids: list[int], deadline: float) -> None:
    """The io worker renders a photo's annotated image just after it is counted; wait for those (not failed)."""
    from app.db import repository
    from app.db.session import db_session

    while time.monotonic() < deadline:
        with db_session() as db:
            missing = repository.count_unrendered(db, photo_ids=photo_ids)
        if not missing:
            return
        time.sleep(POLL_SECONDS)


def export_annotated(key: str | None, photo_id: int, name: str, folder: Path) -> str | None:
    """Copy a stored annotated image into the run folder; its path, or None when there is none."""
    if key is None:
        return None
    from app.storage import get_storage

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{photo_id}_{Path(name).stem}.jpg"
    path.write_bytes(get_storage().get(key))
    return str(path)


def collect_reports(submitted: list[tuple[int, str, int | None]], run_dir: Path | None = None) -> list[PhotoReport]:
    from app.db import repository
    from app.db.session import db_session

    reports = []
    with db_session() as db:
        sessions = repository.sessions_of(db, photo_ids=[photo_id for photo_id, _, _ in submitted])
        for photo_id, name, true_count in submitted:
            session = sessions[photo_id]
            seconds = None
            if session.finished_at is not None:
                seconds = round((session.finished_at - session.created_at).total_seconds(), 2)
            annotated = None
            if run_dir is not None:
                annotated = export_annotated(session.annotated_key, photo_id, name, run_dir / "annotated")
            reports.append(PhotoReport(str(session.photo.uuid), name, session.status, session.regions_total or 0,
                                       session.total_count, true_count, seconds, session.error,
                                       [d["message"] for d in session.doubts or []], session.model_cards or {},
                                       annotated))
    return reports


def print_reports(reports: list[PhotoReport], as_json: bool) -> bool:
    all_completed = all(r.status == "completed" for r in reports)
    if as_json:
        print(json.dumps({"photos": [asdict(r) for r in reports], "all_completed": all_completed}, indent=2))
        return all_completed
    header = f"{'photo':<28} {'status':<10} {'regions':>7} {'counted':>8} {'true':>6} {'seconds':>8}"
    print(header)
    print("-" * len(header))
    for r in reports:
        print(f"{r.name[:28]:<28} {r.status:<10} {r.regions:>7} {_cell(r.counted):>8} {_cell(r.true_count):>6} "
              f"{_cell(r.seconds):>8}")
        if r.error:
            print(f"    error: {r.error}")
        for doubt in r.doubts:
            print(f"    doubt: {doubt}")
    cards = sorted({card for r in reports for card in r.model_cards.values()})
    if cards:
        print(f"\nmodel cards: {', '.join(cards)}")
    annotated = [r for r in reports if r.annotated]
    if annotated:
        print("\nannotated images:")
        for r in annotated:
            print(f"  {r.name[:28]:<28} {r.annotated}")
    print(f"\nall completed: {'yes' if all_completed else 'NO'}")
    return all_completed


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def _run(photos: list[tuple[str, bytes, int | None]], as_json: bool, timeout: float) -> int:
    data_dir = prepare_embedded()
    run_dir = new_run_dir(data_dir)
    from app.db.migrate import upgrade_database
    from app.intake import submit_photo

    upgrade_database()
    deadline = time.monotonic() + timeout
    with ProgressDisplay("counting", len(photos), "photos", enabled=not as_json) as progress:
        progress.note(f"run folder: {run_dir}\nbroker:     {get_settings().broker_url_resolved}\n"
                      "starting the workers (the GPU worker loads its models first)")
        with local_workers(run_dir / "logs"):
            submitted, refused = [], []
            for name, data, true_count in photos:
                try:
                    submission = submit_photo(data, filename=name)
                except PermanentError as exc:  # not a photo we can count: one failed row, the others go on
                    error = f"{type(exc).__name__}: {exc}"
                    refused.append(PhotoReport(None, name, "failed", 0, None, true_count, None, error))
                    continue
                submitted.append((submission.photo_id, name, true_count))
            photo_ids = [photo_id for photo_id, _, _ in submitted]
            finished = wait_for_sessions(photo_ids, deadline, progress)
            if finished:
                wait_for_annotated(photo_ids, min(deadline, time.monotonic() + 60))
    all_completed = print_reports(collect_reports(submitted, run_dir) + refused, as_json)
    if not finished:
        unfinished = sum(1 for r in collect_reports(submitted) if r.status in ("pending", "processing"))
        raise TimedOut(f"{unfinished} of {len(photos)} photos not finished after {timeout:g} s "
                       f"(raise --timeout; the workers' logs are in {run_dir / 'logs'})")
    return 0 if all_completed else 1


def run_demo(photos: int, as_json: bool, seed: int, timeout: float, yes: bool = False) -> int:
    from app.ml.images import encode_jpeg
    from app.ml.synthetic import render_photo

    get_settings.cache_clear()
    confirm_servers(get_settings(), photos, yes)  # before anything is created or written
    generated: list[tuple[str, bytes, int | None]] = []
    for index in range(photos):
        photo = render_photo(seed + index)
        generated.append((f"bench_{seed + index}.jpg", encode_jpeg(photo.image), photo.true_count))
    return _run(generated, as_json, timeout)


def read_photos(paths: list[Path]) -> list[tuple[str, bytes, int | None]]:
    """The files' bytes, checked to be images before any worker starts. Raises FileNotFoundError for a
    missing file, and InvalidImage when no file is an image (the command's 'bad input'); in a batch with
    some good photos a bad one stays in, to become one failed row while the others are counted."""
    from app.errors import InvalidImage
    from app.ml.images import inspect_image

    photos: list[tuple[str, bytes, int | None]] = []
    problems: list[str] = []
    for path in paths:
        data = path.read_bytes()
        try:
            inspect_image(data)
        except InvalidImage as exc:
            problems.append(f"{path}: {exc}")
        photos.append((path.name, data, None))
    if problems and len(problems) == len(photos):
        raise InvalidImage(problems[0] if len(problems) == 1 else f"none of the {len(problems)} files is a "
                           f"photo that can be counted; first: {problems[0]}")
    return photos


def run_process(paths: list[Path], as_json: bool, timeout: float) -> int:
    return _run(read_photos(paths), as_json, timeout)
