"""End-to-end throughput: HTTP API -> Celery -> PostgreSQL, against the same work in one process.

    .venv/bin/python benchmarks/bench_pipeline.py [--photos 20] [--rounds 3] [--rss-photos 200] [--json]
    .venv/bin/python benchmarks/bench_pipeline.py --latency idle,low,normal [--photos 20] [--json]
    .venv/bin/python benchmarks/bench_pipeline.py --null-model [--photos 8] [--rounds 3]
    .venv/bin/python benchmarks/bench_pipeline.py --brokers redis,amqp,amqp-quorum [--photos 6] [--rounds 3]
    .venv/bin/python benchmarks/bench_pipeline.py --steady [--photos 20] [--duration 180] [--load 0.8]
    python benchmarks/bench_pipeline.py --size 4000x3000 [--photos 10] [--rounds 2]   # on a GPU machine

--size sets the synthetic photos' size (2048x1536 by default). Where nvidia-smi answers, the default
run also reports `gpu_busy_share`: the mean of nvidia-smi's `utilization.gpu` (the share of time in
which at least one kernel ran, sampled every 200 ms) while the pipeline rounds run, and the GPU's name.

With --null-model, the GPU worker is benchmarks/null_gpu_worker.py: the real pipeline with a
stand-in network of zero cost (regions and detections replayed from a real run on the same
photos), so what is measured is everything but the network: photos/s of one GPU worker, its
host ms per photo by stage, beside a no-op chord of the same fan-out and a bare decode loop,
and the CPU ms of every process per photo (while uploading; while counting, until the
annotated images are stored) and per no-op chord.

Needs the local Redis and PostgreSQL (as the tests do). Starts the production entrypoints as
subprocesses (a uvicorn API, one GPU solo worker, one CPU prefork worker with BENCH_CPU_CONCURRENCY
processes (1), one io gevent worker), warms them, then measures in one run, in --rounds alternating rounds
(medians reported, as this machine's speed drifts by several per cent from minute to minute):
- photos/s through the API with warm workers (upload all, wait until all sessions end), and
  until every annotated image is stored as well;
- photos/s of `analyse_photo` on the same photos in this process (the in-process floor);
- once, photos/s when every photo was uploaded before the GPU worker starts on them (the
  pipeline without the uploads' share of the CPU);
- chords/s of a no-op chord with the same fan-out on the same Redis (Celery alone);
- the GPU worker's resident memory after the warm-up, after the first round and after
  --rss-photos photos in all;
- CPU seconds per photo of each process while the pipeline runs (API, workers, the Redis and
  PostgreSQL servers, this client) and of the in-process run: on a CPU-only machine, whatever
  runs beside the model takes cores from it.
The overhead ratio is pipeline / in-process: 1.0 means queueing, chords and database cost nothing.

With --latency, for each BACKGROUND_CPU_PRIORITY given (fresh services each), the photos are
uploaded at once and the run reports, from the sessions' own timestamps: seconds from the first
upload to the first photo completed, p50/p95 of upload-to-completed, and the last photo's.

With --brokers, the same pipeline (API and three workers each, models warmed) on each broker given:
`redis`, `amqp` (RabbitMQ classic queues, with priorities) and `amqp-quorum` (RabbitMQ quorum queues,
BROKER_QUEUE_TYPE=quorum), all started before the first round (RabbitMQ at BENCH_AMQP_URL, a vhost
of their own each). Each round uploads the photos to one broker's API after the other (each broker
first in turn) and waits until they are counted, so a slow spell of the machine touches every
broker; it reports photos/s
per broker (median of the rounds) and each broker's ratio to the first one named, and beside them
the broker's own share: no-op chords/s (NOOP_CHORDS chords of NOOP_FAN_OUT no-op children on the GPU
queue and a no-op callback, the pipeline's messages without the models).

Redis databases BENCH_REDIS_DB and the next one (2 and 3 by default) and the PostgreSQL database
BENCH_DATABASE are emptied at the start of every run.

With --steady (real models): the throughput with --photos queued at once, the upload-to-completed
latency of one photo alone (median of 3), then photos uploaded one by one on a fixed schedule at
--load x that throughput for --duration seconds; the p95 of their upload-to-completed against the
single photo's latency.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import photo_size  # noqa: E402
from tests.utils.processes import project_pythonpath  # noqa: E402

REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "2"))  # broker; the next one holds the results
AMQP = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")
POSTGRES = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432")
HEADERS: dict[str, str] = {}  # the benchmark's API key, made by reset_services()
BENCH_DB = os.environ.get("BENCH_DATABASE", "demeter_bench")  # recreated at every run
BROKERS = ("redis", "amqp", "amqp-quorum")
NOOP_CHORDS, NOOP_FAN_OUT = 30, 4  # --brokers: no-op chords per round, children each (a photo of 4 regions)
CPU_CONCURRENCY = os.environ.get("BENCH_CPU_CONCURRENCY", "1")  # the cpu worker's processes
PHOTO_SIZE = (2048, 1536)  # width, height of the synthetic photos; --size


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def configure_environment(data_dir: Path) -> dict[str, str]:
    env = {
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": f"{POSTGRES}/{BENCH_DB}",
        "BROKER_URL": f"{REDIS}/{REDIS_DB}",
        "RESULT_BACKEND": f"{REDIS}/{REDIS_DB + 1}",
        "STORAGE_BACKEND": "local",
        "LOG_LEVEL": "WARNING",
        "GPU_MAX_TASKS_PER_CHILD": "0",  # measure one process: no recycling during the run
    }
    os.environ.update(env)
    return env


def reset_services() -> None:
    from tests.utils.services import create_database, flush_redis

    create_database(POSTGRES, BENCH_DB)
    flush_redis(REDIS, REDIS_DB, REDIS_DB + 1)
    from app.db.migrate import upgrade_database

    upgrade_database()
    from tests.utils.keys import bearer, make_api_key

    HEADERS.clear()
    HEADERS.update(bearer(make_api_key(name="bench")))  # the API takes uploads only with a key


class Services:
    """The API and the workers, as the production entrypoints run them."""

    def __init__(self, env: dict[str, str], log_dir: Path, gpu_command: list[str] | None = None) -> None:
        self.env = {**os.environ, **env, "PYTHONPATH": project_pythonpath()}
        self.gpu_command = gpu_command or ["-m", "workers.gpu"]
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.processes: list[subprocess.Popen[bytes]] = []
        self.names: list[str] = []

    def start(self) -> None:
        commands = {
            "api": ["-m", "app", "api", "--port", str(self.port)],
            "gpu": self.gpu_command,
            "cpu": ["-m", "workers.cpu", f"--concurrency={CPU_CONCURRENCY}"],
            "io": ["-m", "workers.io", "--concurrency=4"],
        }
        for name, args in commands.items():
            log = (self.log_dir / f"{name}.log").open("ab")
            self.names.append(name)
            self.processes.append(subprocess.Popen([sys.executable, *args], env=self.env, cwd=ROOT,
                                                   stdout=log, stderr=subprocess.STDOUT))
        app = self.celery()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            seen = {host.split("@")[0] for reply in app.control.ping(timeout=1.0) or [] for host in reply}
            if {"gpu0", "cpu", "io"} <= seen and self._api_up():
                return
        raise TimeoutError("services did not start")

    def celery(self) -> Any:
        """A Celery app on these services' broker (they may not be on the one this process's settings name)."""
        from app.celery_app import create_app
        from app.config import get_settings

        return create_app(get_settings().model_copy(update={
            "broker_url": self.env["BROKER_URL"], "broker_queue_type": self.env.get("BROKER_QUEUE_TYPE", "classic")}))

    def _api_up(self) -> bool:
        import httpx

        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user + system) spent so far by each service's process tree, by the Redis
        server of the benchmark's port, by PostgreSQL's backends of the benchmark's database and
        its own server processes (other databases' backends, a shared machine's, left out), and by
        this benchmark (the HTTP client)."""
        import psutil

        def tree(process: psutil.Process) -> float:
            return sum(_cpu(member) for member in [process, *process.children(recursive=True)])

        seconds = {name: tree(psutil.Process(p.pid)) for name, p in zip(self.names, self.processes, strict=True)}
        redis_port = self.env["BROKER_URL"].rsplit(":", 1)[-1].split("/")[0]
        seconds["redis-server"] = sum(tree(p) for p in psutil.process_iter(["name", "cmdline"])
                                      if p.info["name"] == "redis-server"
                                      and any(part.endswith(f":{redis_port}") for part in p.info["cmdline"] or []))
        seconds["postgres backends"] = seconds["postgres server"] = 0.0
        for server in (p for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres" and p.ppid() in (0, 1)):
            seconds["postgres server"] += _cpu(server)
            for member in server.children():
                try:
                    title = " ".join(member.cmdline())
                except psutil.Error:
                    continue
                if f" {BENCH_DB} " in title:
                    seconds["postgres backends"] += _cpu(member)
                elif "(" not in title and "[local]" not in title:  # no client address: a server process
                    seconds["postgres server"] += _cpu(member)
        seconds["client"] = time.process_time()
        return seconds

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(timeout=60)


def _cpu(process: Any) -> float:
    """A psutil process's CPU seconds (user + system); 0 once it has gone."""
    import psutil

    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


FINAL = {"completed", "warning", "failed"}


def bench_photo(seed: int) -> bytes:
    """A synthetic bench photo of PHOTO_SIZE as JPEG bytes."""
    from tests.utils.photos import synthetic_jpeg

    return synthetic_jpeg(seed, *PHOTO_SIZE)


class GpuBusy:
    """The share of time the GPU ran kernels while sampling: nvidia-smi's `utilization.gpu` (percent of the
    sample period in which one or more kernels executed; nvidia-smi's own documentation), every 200 ms.
    Samples only between start() and stop(); `share` is None where there is no nvidia-smi."""

    def __init__(self) -> None:
        self.available = shutil.which("nvidia-smi") is not None
        self.samples: list[float] = []
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        if self.available:
            self._process = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200"],
                stdout=subprocess.PIPE, text=True)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            output, _ = self._process.communicate(timeout=10)
            self.samples += [float(line) for line in output.split() if line.strip().isdigit()]
            self._process = None

    @property
    def share(self) -> float | None:
        return round(sum(self.samples) / len(self.samples) / 100, 3) if self.samples else None

    def device_name(self) -> str | None:
        if not self.available:
            return None
        return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, check=False).stdout.strip() or None


def upload_and_wait(port: int, photos: list[bytes],
                    before_start: Callable[[], object] | None = None) -> tuple[float, float]:
    """Seconds from the first upload until the API reports every photo counted, and until
    every annotated image is stored too (the io queue renders them after the counts).

    With `before_start`, the clock starts only once every photo is uploaded and
    `before_start()` has returned (it resumes a GPU worker that was paused meanwhile).
    """
    import httpx

    started = time.perf_counter()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60, headers=HEADERS) as client:
        urls = []
        for index, data in enumerate(photos):
            response = client.post("/api/v1/photos", files={"file": (f"bench-{index}.jpg", data, "image/jpeg")})
            response.raise_for_status()
            urls.append(response.json()["status_url"])
        if before_start is not None:
            started = time.perf_counter()
            before_start()
        statuses = []
        for url in urls:
            while (status := client.get(url).json()["status"]) not in FINAL:
                time.sleep(0.1)
            statuses.append(status)
        counted = time.perf_counter() - started
        for url in urls:
            while client.get(url).json()["annotated_url"] is None:
                time.sleep(0.1)
    rendered = time.perf_counter() - started
    if any(status != "completed" for status in statuses):
        raise RuntimeError(f"not every photo completed: {statuses}")
    return counted, rendered


def queued_first(port: int, photos: list[bytes], on_start: Callable[[], object] | None = None) -> float:
    """Seconds to count photos that were all uploaded while the GPU worker was paused: the
    pipeline without the uploads' share of the CPU. `on_start()` runs once they are uploaded,
    just before the GPU worker resumes and the clock starts."""
    from app.celery_app import app
    from app.names import gpu_queue

    queue = gpu_queue(0)
    gpu = [host for reply in app.control.ping(timeout=1.0) or [] for host in reply if host.startswith("gpu0@")]
    app.control.cancel_consumer(queue, destination=gpu, reply=True)

    def resume() -> None:
        if on_start is not None:
            on_start()
        app.control.add_consumer(queue, destination=gpu, reply=True)

    try:
        counted, _ = upload_and_wait(port, photos, before_start=resume)
    except BaseException:
        app.control.add_consumer(queue, destination=gpu, reply=True)
        raise
    return counted


class InProcess:
    """The same work without Celery, HTTP or a database: `analyse_photo` in this process, models loaded once."""

    def __init__(self) -> None:
        from app.config import get_settings
        from app.ml.registry import ModelRegistry

        self.registry = ModelRegistry(get_settings())
        self.registry.preload()

    def run(self, photos: list[bytes]) -> tuple[float, float]:
        """Seconds for the photos; mean regions per photo."""
        from app.ml.images import decode_rgb
        from app.ml.pipeline import analyse_photo

        started = time.perf_counter()
        regions = [len(analyse_photo(decode_rgb(data), self.registry).regions) for data in photos]
        return time.perf_counter() - started, sum(regions) / len(regions)


def noop_chords(count: int, fan_out: int, celery: Any = None) -> float:
    """Seconds for `count` chords of `fan_out` no-op children on the GPU queue and a no-op callback
    (on `celery`'s broker; default: this process's app)."""
    from celery import chord

    from app.celery_app import app as default_app

    app = celery or default_app
    noop = app.signature("app.tasks.maintenance.noop")
    started = time.perf_counter()
    results = [
        chord([noop.clone().set(queue="gpu_queue_0") for _ in range(fan_out)], noop.clone().set(queue="cpu"))()
        for _ in range(count)
    ]
    for result in results:
        result.get(timeout=600)
    return time.perf_counter() - started


def gpu_worker_rss_kb() -> int:
    from app.celery_app import app

    info = app.send_task("app.tasks.maintenance.process_info", queue="gpu_queue_0").get(timeout=120)
    return int(info["rss_kb"])


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between the closest ranks."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latencies(photo_ids: list[int]) -> dict[str, float]:
    """From the database: seconds from the first upload to the first completion, and upload-to-completed
    per photo (p50, p95, max), by the photos' `created_at` and their sessions' `finished_at`."""
    from sqlalchemy import select

    from app.db.models import Photo, ProcessingSession
    from app.db.session import db_session

    with db_session() as db:
        rows = db.execute(select(Photo.created_at, ProcessingSession.finished_at)
                          .join(ProcessingSession, ProcessingSession.photo_id == Photo.id)
                          .where(Photo.id.in_(photo_ids))).all()
    done = [(created, finished) for created, finished in rows if finished is not None]
    first_upload = min(created for created, _ in done)
    waits = [(finished - created).total_seconds() for created, finished in done]
    return {
        "first_completed_s": round(min((finished - first_upload).total_seconds() for _, finished in done), 2),
        "p50_s": round(percentile(waits, 50), 2),
        "p95_s": round(percentile(waits, 95), 2),
        "last_completed_s": round(max((finished - first_upload).total_seconds() for _, finished in done), 2),
    }


def upload_all(port: int, photos: list[bytes]) -> list[int]:
    """Upload every photo through the API at once (one after the other, no waiting); their database ids."""
    import httpx

    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60, headers=HEADERS) as client:
        uploaded = [upload_one(client, data, index) for index, data in enumerate(photos)]
    return ids_of(uploaded)


def wait_counted(photo_ids: list[int], timeout: float = 1200) -> None:
    from tests.utils.photos import wait_final

    for photo_id in photo_ids:
        if wait_final(photo_id, timeout=timeout).status != "completed":
            raise RuntimeError(f"photo {photo_id} did not complete")


def latency_run(priorities: list[str], n_photos: int) -> dict[str, Any]:
    """Per BACKGROUND_CPU_PRIORITY: n photos uploaded at once through the API, then `latencies`."""
    photos = [bench_photo(9600 + i) for i in range(n_photos)]
    result: dict[str, Any] = {"photos": n_photos}
    for priority in priorities:
        data_dir = Path(tempfile.mkdtemp(prefix="demeter-bench-"))
        env = {**configure_environment(data_dir), "BACKGROUND_CPU_PRIORITY": priority}
        reset_services()
        services = Services(env, data_dir)
        services.start()
        try:
            upload_and_wait(services.port, photos[:2])  # warm: models loaded, connections open
            ids = upload_all(services.port, photos)
            wait_counted(ids)
            result[priority] = latencies(ids)
        finally:
            services.stop()
        print(f"{priority}: {result[priority]}", file=sys.stderr)
    return result


def upload_one(client: Any, data: bytes, index: int) -> uuid.UUID:
    response = client.post("/api/v1/photos", files={"file": (f"bench-{index}.jpg", data, "image/jpeg")})
    response.raise_for_status()
    return uuid.UUID(response.json()["photo_id"])


def ids_of(photo_uuids: list[uuid.UUID]) -> list[int]:
    from sqlalchemy import select

    from app.db.models import Photo
    from app.db.session import db_session

    with db_session() as db:
        return list(db.scalars(select(Photo.id).where(Photo.uuid.in_(photo_uuids))))


def steady_stream(port: int, photos: list[bytes], rate: float, duration: float) -> list[int]:
    """Upload one photo every 1/rate seconds (on a fixed schedule, cycling through `photos`) for
    `duration` seconds; the photos' database ids."""
    import httpx

    uploaded: list[uuid.UUID] = []
    started = time.monotonic()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60, headers=HEADERS) as client:
        index = 0
        while (due := started + index / rate) < started + duration:
            time.sleep(max(0.0, due - time.monotonic()))
            uploaded.append(upload_one(client, photos[index % len(photos)], index))
            index += 1
    return ids_of(uploaded)


@contextmanager
def warm_services(n_photos: int, prefix: str) -> Iterator[tuple[Services, list[bytes]]]:
    """API and workers on a fresh data directory, warmed on two photos (models loaded, connections
    open), with `n_photos` synthetic photos (seeds 9600...) to send; stopped on the way out."""
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    env = configure_environment(data_dir)
    reset_services()
    photos = [bench_photo(9600 + i) for i in range(n_photos)]
    services = Services(env, data_dir)
    services.start()
    try:
        upload_and_wait(services.port, photos[:2])
        yield services, photos
    finally:
        services.stop()


def steady_run(n_photos: int, duration: float, load: float) -> dict[str, Any]:
    """Upload-to-completed p95 under a steady stream at `load` x the measured throughput, against the
    latency of one photo alone (the median of 3), on the real models."""
    with warm_services(n_photos, "demeter-bench-steady-") as (services, photos):
        throughput = n_photos / queued_first(services.port, photos)  # photos/s of this machine, queued up
        alone = []
        for data in photos[:3]:
            ids = upload_all(services.port, [data])
            wait_counted(ids)
            alone.append(latencies(ids)["p50_s"])
        rate = load * throughput
        print(f"throughput {throughput:.2f} photos/s; streaming {rate:.2f} photos/s for {duration:.0f} s",
              file=sys.stderr)
        ids = steady_stream(services.port, photos, rate, duration)
        wait_counted(ids)
        stream = latencies(ids)
    single = median(alone)
    return {
        "photos_per_s_measured": round(throughput, 3),
        "load": load,
        "photos_per_s_streamed": round(rate, 3),
        "duration_s": duration,
        "photos_streamed": len(ids),
        "single_photo_latency_s": round(single, 2),
        "single_photo_latency_runs_s": alone,
        "steady_p50_s": stream["p50_s"],
        "steady_p95_s": stream["p95_s"],
        "p95_vs_single": round(stream["p95_s"] / single, 2),
    }


def run(n_photos: int, rounds: int, rss_photos: int) -> dict[str, Any]:
    with warm_services(n_photos, "demeter-bench-") as (services, photos):
        rss_warm = gpu_worker_rss_kb()
        inprocess = InProcess()
        # Rounds alternate the pipeline and the in-process run, so a slow spell of the machine
        # touches both; the medians are reported.
        pipeline_s: list[float] = []
        with_images_s: list[float] = []
        inprocess_s: list[float] = []
        pipeline_cpu: list[dict[str, float]] = []
        inprocess_cpu: list[float] = []
        rss_first = 0
        gpu_busy = GpuBusy()
        for _ in range(rounds):
            cpu_before = services.cpu_seconds()
            gpu_busy.start()
            try:
                counted, rendered = upload_and_wait(services.port, photos)  # returns once the workers are idle
            finally:
                gpu_busy.stop()
            cpu_after = services.cpu_seconds()
            if not pipeline_s:
                rss_first = gpu_worker_rss_kb()  # after 2 + n_photos photos: the memory baseline
            inprocess_cpu_started = time.process_time()
            elapsed, fan_out = inprocess.run(photos)
            inprocess_cpu.append(time.process_time() - inprocess_cpu_started)
            pipeline_s.append(counted)
            with_images_s.append(rendered)
            inprocess_s.append(elapsed)
            pipeline_cpu.append({name: cpu_after[name] - cpu_before[name] for name in cpu_after})
        queued_s = queued_first(services.port, photos)
        noop_s = noop_chords(n_photos, max(1, round(fan_out)))
        ratios = [i / p for i, p in zip(inprocess_s, pipeline_s, strict=True)]
        result: dict[str, Any] = {
            "photos": n_photos,
            "photo_size": "x".join(map(str, PHOTO_SIZE)),
            "rounds": rounds,
            "gpu": gpu_busy.device_name(),
            "gpu_busy_share": gpu_busy.share,
            "gpu_busy_samples": len(gpu_busy.samples),
            "photos_per_s_pipeline": round(n_photos / median(pipeline_s), 4),
            "photos_per_s_inprocess": round(n_photos / median(inprocess_s), 4),
            "overhead_ratio": round(median(ratios), 4),
            "overhead_ratio_per_round": [round(r, 4) for r in ratios],
            "photos_per_s_uploaded_first": round(n_photos / queued_s, 4),
            "overhead_ratio_uploaded_first": round(median(inprocess_s) / queued_s, 4),
            "photos_per_s_with_images": round(n_photos / median(with_images_s), 4),
            "overhead_ratio_with_images": round(
                median([i / w for i, w in zip(inprocess_s, with_images_s, strict=True)]), 4),
            "chords_per_s_noop": round(n_photos / noop_s, 2),
            "regions_per_photo": round(fan_out, 2),
            "gpu_worker_rss_kb_warm": rss_warm,
            "cpu_s_per_photo": {name: round(median([c[name] for c in pipeline_cpu]) / n_photos, 4)
                                for name in pipeline_cpu[0]},
            "inprocess_cpu_s_per_photo": round(median(inprocess_cpu) / n_photos, 4),
        }
        result[f"gpu_worker_rss_kb_after_{n_photos + 2}"] = rss_first
        processed = (rounds + 1) * n_photos + 2
        if rss_photos > processed:
            distinct = [bench_photo(9700 + i) for i in range(min(50, rss_photos - processed))]
            extra = [distinct[i % len(distinct)] for i in range(rss_photos - processed)]
            for start in range(0, len(extra), 20):
                upload_and_wait(services.port, extra[start : start + 20])
            last = gpu_worker_rss_kb()
            result[f"gpu_worker_rss_kb_after_{rss_photos}"] = last
            result["rss_growth_ratio"] = round(last / rss_first, 4)
        return result


def broker_env(broker: str) -> dict[str, str]:
    """BROKER_URL and BROKER_QUEUE_TYPE of one of BROKERS; a RabbitMQ broker gets a fresh vhost."""
    if broker == "redis":
        return {"BROKER_URL": f"{REDIS}/{REDIS_DB}", "BROKER_QUEUE_TYPE": "classic"}
    from tests.utils.services import create_vhost

    vhost = f"{BENCH_DB}_{broker.replace('-', '_')}"
    create_vhost(vhost)
    return {"BROKER_URL": f"{AMQP}/{vhost}", "BROKER_QUEUE_TYPE": "quorum" if broker == "amqp-quorum" else "classic"}


def broker_run(brokers: list[str], n_photos: int, rounds: int) -> dict[str, Any]:
    """photos/s of the pipeline on each broker, rounds alternating between them; ratios to the first."""
    unknown = set(brokers) - set(BROKERS)
    if unknown:
        raise SystemExit(f"unknown broker(s) {sorted(unknown)}: choose from {', '.join(BROKERS)}")
    data_dir = Path(tempfile.mkdtemp(prefix="demeter-bench-brokers-"))
    env = configure_environment(data_dir)
    reset_services()
    photos = [bench_photo(9600 + i) for i in range(n_photos)]
    services = {broker: Services({**env, **broker_env(broker)}, data_dir / broker) for broker in brokers}
    apps = {broker: services[broker].celery() for broker in brokers}
    seconds: dict[str, list[float]] = {broker: [] for broker in brokers}
    chord_s: dict[str, list[float]] = {broker: [] for broker in brokers}
    try:
        for broker in brokers:
            services[broker].start()
            upload_and_wait(services[broker].port, photos[:2])  # warm: models loaded, connections open
        for round_ in range(rounds):
            for broker in brokers[round_ % len(brokers):] + brokers[:round_ % len(brokers)]:  # each goes first in turn
                counted, _rendered = upload_and_wait(services[broker].port, photos)
                seconds[broker].append(counted)
                chord_s[broker].append(noop_chords(NOOP_CHORDS, NOOP_FAN_OUT, apps[broker]))
                print(f"{broker}: {n_photos / counted:.3f} photos/s, {NOOP_CHORDS / chord_s[broker][-1]:.1f} "
                      "no-op chords/s", file=sys.stderr)
    finally:
        for running in services.values():
            if running.processes:
                running.stop()
    per_s = {broker: round(n_photos / median(seconds[broker]), 4) for broker in brokers}
    first = brokers[0]
    return {
        "photos": n_photos,
        "rounds": rounds,
        "photos_per_s": per_s,
        f"ratio_to_{first}": {broker: round(median([seconds[first][r] / seconds[broker][r] for r in range(rounds)]), 3)
                              for broker in brokers},
        "seconds_per_round": {broker: [round(s, 2) for s in seconds[broker]] for broker in brokers},
        # The broker's own share: chords of no-op tasks, the pipeline's message pattern without the models.
        f"noop_chords_per_s_{NOOP_FAN_OUT}_children": {broker: round(NOOP_CHORDS / median(chord_s[broker]), 2)
                                                        for broker in brokers},
        f"noop_chord_ratio_to_{first}": {
            broker: round(median([chord_s[first][r] / chord_s[broker][r] for r in range(rounds)]), 3)
            for broker in brokers},
    }


def record_null_model(photos: list[bytes], path: Path) -> float:
    """Run the real models once over `photos` and write what the stand-in network will replay; mean regions."""
    from app.config import get_settings
    from app.ml.images import decode_rgb
    from app.ml.pipeline import choose_regions, count_region
    from app.ml.registry import ModelRegistry
    from benchmarks.null_gpu_worker import bbox_key, fingerprint

    registry = ModelRegistry(get_settings())
    recording: dict[str, Any] = {}
    for data in photos:
        image = decode_rgb(data)
        proposals, mode = choose_regions(image, registry, registry.settings.region_mode)
        detections = {}
        for proposal in proposals:
            found = count_region(image, proposal.bbox, registry)
            detections[bbox_key(proposal.bbox)] = [[*map(float, b), float(s)] for b, s in zip(found.boxes, found.scores,
                                                                                             strict=True)]
        recording[fingerprint(image)] = {
            "mode": mode, "detections": detections,
            "regions": [{"class_name": p.class_name, "confidence": p.confidence, "bbox": list(p.bbox),
                         "polygon": p.polygon} for p in proposals]}
    path.write_text(json.dumps(recording))
    return sum(len(r["regions"]) for r in recording.values()) / len(recording)


def decode_loop(photos: list[bytes]) -> float:
    """Seconds to decode every photo once in this process, as the GPU worker's photo cache does."""
    from app.ml.images import decode_rgb

    started = time.perf_counter()
    for data in photos:
        decode_rgb(data)
    return time.perf_counter() - started


def cpu_ms_per_item(rounds: list[dict[str, float]], items: int) -> dict[str, float]:
    """Median CPU ms per item of each process over the rounds' CPU seconds, and their total."""
    per_item = {name: round(median([r[name] for r in rounds]) * 1000 / items, 1) for name in rounds[0]}
    return {**per_item, "total": round(sum(per_item.values()), 1)}


def null_model_run(n_photos: int, rounds: int) -> dict[str, Any]:
    """The real pipeline with a zero-cost network (benchmarks/null_gpu_worker.py): what is left is host work."""
    data_dir = Path(tempfile.mkdtemp(prefix="demeter-bench-null-"))
    env = configure_environment(data_dir)
    # The CPU and io workers at normal priority: under SCHED_IDLE they starve behind any neighbour's load on a
    # shared machine, and with no network running there is nothing of the GPU worker's to protect.
    env["BACKGROUND_CPU_PRIORITY"] = os.environ["BACKGROUND_CPU_PRIORITY"] = "normal"
    reset_services()
    photos = [bench_photo(9600 + i) for i in range(n_photos)]
    recording, stages = data_dir / "recording.json", data_dir / "stages.json"
    fan_out = record_null_model(photos, recording)
    worker = [str(ROOT / "benchmarks" / "null_gpu_worker.py"), str(recording), str(stages)]
    services = Services(env, data_dir, gpu_command=worker)
    services.start()
    pipeline_s: list[float] = []
    noop_s: list[float] = []
    decode_s: list[float] = []
    # CPU seconds of every process, per round: while the photos are uploaded, while they are counted
    # (the timed window), and during the no-op chords.
    cpu: dict[str, list[dict[str, float]]] = {"uploading": [], "counting": [], "noop": []}
    marks: list[dict[str, float]] = []

    def mark() -> None:
        marks.append(services.cpu_seconds())

    try:
        queued_first(services.port, photos[:2])  # warm: connections open, every photo recorded
        for _ in range(rounds):  # the three alternate, so a busy spell of the machine touches all of them
            marks.clear()
            mark()
            pipeline_s.append(queued_first(services.port, photos, on_start=mark))
            mark()
            noop_s.append(noop_chords(n_photos, max(1, round(fan_out))))
            mark()
            for window, (before, after) in zip(cpu, pairwise(marks), strict=True):
                cpu[window].append({name: after[name] - before[name] for name in after})
            decode_s.append(decode_loop(photos))
    finally:
        services.stop()
    processed = 2 + rounds * n_photos
    timings = json.loads(stages.read_text())
    host_ms = {name: round(seconds * 1000 / processed, 2) for name, seconds in sorted(timings["seconds"].items())}
    calls = {name: round(count / processed, 2) for name, count in sorted(timings["calls"].items())}
    return {
        "photos": n_photos, "rounds": rounds, "regions_per_photo": round(fan_out, 2),
        "photos_per_s_null_model": round(n_photos / median(pipeline_s), 2),
        "chords_per_s_noop": round(n_photos / median(noop_s), 2),
        "photos_per_s_decode_only": round(n_photos / median(decode_s), 2),
        "null_model_vs_noop_chord": round(median([c / p for p, c in zip(pipeline_s, noop_s, strict=True)]), 3),
        "gpu_worker_cpu_ms_per_photo": round(median([c["gpu"] for c in cpu["counting"]]) * 1000 / n_photos, 1),
        "cpu_ms_per_photo_counting": cpu_ms_per_item(cpu["counting"], n_photos),
        "cpu_ms_per_photo_uploading": cpu_ms_per_item(cpu["uploading"], n_photos),
        "cpu_ms_per_chord_noop": cpu_ms_per_item(cpu["noop"], n_photos),
        "host_ms_per_photo_by_stage": host_ms,
        "calls_per_photo_by_stage": calls,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=20, help="photos per round")
    parser.add_argument("--rounds", type=int, default=3, help="pipeline and in-process runs, alternating")
    parser.add_argument("--rss-photos", type=int, default=0, help="also push this many photos and compare RSS")
    parser.add_argument("--latency", default="", help="comma-separated CPU priorities (idle,low,normal): "
                        "time to first completion and p50/p95 upload-to-completed for each")
    parser.add_argument("--null-model", action="store_true", help="the real pipeline with a zero-cost stand-in "
                        "network: photos/s per GPU worker and host ms per photo by stage, beside the no-op chord "
                        "and a bare decode loop")
    parser.add_argument("--brokers", default="", help="comma-separated brokers (redis,amqp,amqp-quorum): photos/s "
                        "of the same pipeline on each, rounds alternating, and the ratio to the first named")
    parser.add_argument("--steady", action="store_true", help="upload-to-completed p95 under a steady stream at "
                        "--load x the measured throughput, against one photo alone")
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of the steady stream")
    parser.add_argument("--load", type=float, default=0.8, help="the steady stream's rate, a share of the throughput")
    parser.add_argument("--size", type=photo_size, default=(2048, 1536),
                        help="the synthetic photos' WIDTHxHEIGHT in pixels (2048x1536)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    global PHOTO_SIZE
    PHOTO_SIZE = args.size
    if args.brokers:
        result = broker_run(args.brokers.split(","), args.photos, args.rounds)
        print(json.dumps(result, indent=2))
        return 0
    if args.steady:
        result = steady_run(args.photos, args.duration, args.load)
        print(json.dumps(result, indent=2))
        print(f"steady p95 is {result['p95_vs_single']:.2f}x the single-photo latency", file=sys.stderr)
        return 0
    if args.null_model:
        result = null_model_run(args.photos, args.rounds)
        print(json.dumps(result, indent=2))
        return 0
    if args.latency:
        result = latency_run(args.latency.split(","), args.photos)
    else:
        result = run(args.photos, args.rounds, args.rss_photos)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:<32} {value}")
        print(f"\npipeline reaches {result['overhead_ratio']:.0%} of the in-process throughput")
    return 0


if __name__ == "__main__":
    sys.exit(main())
