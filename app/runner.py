"""Local runs: start real worker processes, submit photos, wait, print the results.

`demeter demo` and `demeter process` use the embedded default unless the
environment names servers: a SQLite database, a filesystem broker and result
backend, and local storage, all under DATA_DIR (default `var/demo`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from app.config import PROJECT_ROOT, get_settings
from app.errors import PermanentError

CONNECTION_VARIABLES = ("DATABASE_URL", "BROKER_URL", "RESULT_BACKEND")


@dataclass
class PhotoReport:
    photo_id: int  # 0: refused at upload (not stored)
    name: str
    status: str
    regions: int
    counted: int | None
    true_count: int | None
    seconds: float | None
    error: str | None = None


def prepare_embedded(default_dir: str = "var/demo") -> Path:
    """Use a fresh DATA_DIR for a run on the embedded default; keep any configured servers."""
    embedded = not any(os.environ.get(name) for name in CONNECTION_VARIABLES)
    if embedded and not os.environ.get("DATA_DIR"):
        os.environ["DATA_DIR"] = str(Path(default_dir).resolve())
        shutil.rmtree(os.environ["DATA_DIR"], ignore_errors=True)
    get_settings.cache_clear()
    data_dir = get_settings().data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir


@contextmanager
def local_workers(data_dir: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """A GPU (solo, supervised so it can recycle) worker and a CPU worker for the cpu and io queues."""
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    commands = {
        "gpu": [sys.executable, "-m", "workers.supervise", sys.executable, "-m", "workers.gpu"],
        "cpu": [sys.executable, "-m", "workers.cpu", "--queues=cpu,io", "--concurrency=1"],
    }
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])}
    processes = []
    try:
        for name, command in commands.items():
            log_file = (logs / f"worker-{name}.log").open("ab")
            processes.append(subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                              cwd=PROJECT_ROOT))
        yield processes
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_for_sessions(photo_ids: list[int], timeout: float) -> None:
    from app.db.models import ProcessingSession, SessionStatus
    from app.db.session import db_session

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db_session() as db:
            sessions = [db.query(ProcessingSession).filter_by(photo_id=pid).one() for pid in photo_ids]
            if all(SessionStatus(s.status).is_final for s in sessions):
                return
        time.sleep(0.5)


def collect_reports(submitted: list[tuple[int, str, int | None]]) -> list[PhotoReport]:
    from app.db.models import ProcessingSession
    from app.db.session import db_session

    reports = []
    with db_session() as db:
        for photo_id, name, true_count in submitted:
            session = db.query(ProcessingSession).filter_by(photo_id=photo_id).one()
            seconds = None
            if session.finished_at is not None:
                seconds = round((session.finished_at - session.created_at).total_seconds(), 2)
            reports.append(PhotoReport(photo_id, name, session.status, session.regions_total or 0,
                                       session.total_count, true_count, seconds, session.error))
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
    print(f"\nall completed: {'yes' if all_completed else 'NO'}")
    return all_completed


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def _run(photos: list[tuple[str, bytes, int | None]], as_json: bool, timeout: float) -> int:
    data_dir = prepare_embedded()
    from app.db.migrate import upgrade_database
    from app.intake import submit_photo

    upgrade_database()
    if not as_json:
        print(f"data dir: {data_dir}\nbroker:   {get_settings().broker_url_resolved}\n")
    with local_workers(data_dir):
        submitted, refused = [], []
        for name, data, true_count in photos:
            try:
                submission = submit_photo(data, filename=name)
            except PermanentError as exc:  # not a photo we can count: one failed row, the others go on
                error = f"{type(exc).__name__}: {exc}"
                refused.append(PhotoReport(0, name, "failed", 0, None, true_count, None, error))
                continue
            submitted.append((submission.photo_id, name, true_count))
        wait_for_sessions([photo_id for photo_id, _, _ in submitted], timeout)
    return 0 if print_reports(collect_reports(submitted) + refused, as_json) else 1


def run_demo(photos: int, as_json: bool, seed: int, timeout: float) -> int:
    from app.ml.images import encode_jpeg
    from app.ml.synthetic import render_photo

    generated: list[tuple[str, bytes, int | None]] = []
    for index in range(photos):
        photo = render_photo(seed + index)
        generated.append((f"bench_{seed + index}.jpg", encode_jpeg(photo.image), photo.true_count))
    return _run(generated, as_json, timeout)


def run_process(paths: list[Path], as_json: bool, timeout: float) -> int:
    return _run([(path.name, path.read_bytes(), None) for path in paths], as_json, timeout)
