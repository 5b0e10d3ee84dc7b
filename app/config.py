"""One typed settings object, read from the environment (and an optional `.env`).

Every setting is documented in README.md and `.env.example`. The defaults are the
embedded mode: SQLite database, a filesystem broker and result backend, and a local
storage directory under `DATA_DIR`, so the pipeline runs with no server at all.
Switching to Redis, PostgreSQL and S3 is only environment variables.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DuplicateAction = Literal["refuse", "flag"]  # DUPLICATE_UPLOAD_ACTION; applied by app/intake.py
CpuPriority = Literal["idle", "low", "normal"]  # BACKGROUND_CPU_PRIORITY; applied by workers/priority.py
LogFormat = Literal["auto", "json", "console"]  # LOG_FORMAT; resolved by app/observability/logging.py


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path("var")

    # Connections. Empty means "embedded default under DATA_DIR".
    database_url: str = ""
    broker_url: str = ""
    result_backend: str = ""
    broker_polling_interval: float = 0.1  # seconds; embedded filesystem broker only
    visibility_timeout: int = 3600  # seconds; must exceed the longest task plus the longest retry countdown
    result_expires_seconds: int = 3600  # task results (parent, aggregation) kept this long in the result backend
    # The longest a task is expected to run (seconds): not enforced, only checked against VISIBILITY_TIMEOUT.
    longest_task_seconds: int = 600
    # RabbitMQ only (BROKER_URL=amqp://...; app/topology.py, README "Choosing a broker").
    broker_queue_type: Literal["classic", "quorum"] = "classic"  # quorum: replicated, no priorities on 3.x
    broker_delivery_limit: int = 5  # quorum queues: deliveries of one message before RabbitMQ dead-letters it
    broker_heartbeat: float = 60.0  # seconds; AMQP heartbeat of the API and the prefork/gevent workers
    # The server's consumer_timeout (rabbitmq.conf, 30 min by default): a task, or a retry countdown held
    # by a worker, must end within it or RabbitMQ closes the channel and the task runs again.
    broker_consumer_timeout: int = 1800
    broker_publish_timeout: float = 5.0  # seconds an upload waits for the broker to confirm its task
    # RabbitMQ's management API, http://user:pw@host:15672/api/: the sweeper and reconciler read queue counts
    # there (app/inflight.py), Flower its queue lengths (unless FLOWER_BROKER_API). Empty: they cannot look.
    broker_api: str = ""
    db_pool_size: int = 5  # connections per process (and as many again in overflow); the io worker uses IO_CONCURRENCY

    # Storage.
    storage_backend: Literal["local", "s3"] = "local"
    storage_dir: Path | None = None  # default DATA_DIR/storage
    s3_bucket: str = "demeter-photos"
    s3_prefix: str = ""
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"

    # Models.
    segmentation_weights: str = str(PROJECT_ROOT / "models" / "container_seg.pt")
    detection_weights: str = str(PROJECT_ROOT / "models" / "plant_det.pt")
    # Model class name -> region class stored in the database; unmapped classes keep their name.
    segmentation_class_map: dict[str, str] = Field(default_factory=lambda: {"tray": "tray", "segment": "segment"})
    # A trained model directory (`demeter train`) by name, under TRAINED_MODELS_DIR: its weights replace
    # DETECTION_WEIGHTS and its card's threshold and slicing are used unless set here. Empty: the model chosen
    # with `demeter models use` (TRAINED_MODELS_DIR/ACTIVE), else DETECTION_WEIGHTS. Read at worker start.
    detection_model: str = ""
    trained_models_dir: Path = PROJECT_ROOT / "models" / "trained"
    # Detector classes that are counted as plants; a model may also learn e.g. `empty_cell` or `weed`.
    detection_count_classes: list[str] = Field(default_factory=lambda: ["plant"])
    device: str = "auto"  # "auto" picks cuda:0 when available, else cpu
    segmentation_imgsz: int = 512
    segmentation_confidence: float = 0.25
    detection_imgsz: int = 320
    detection_confidence: float = 0.35
    detection_batch_size: int = 16
    # Who runs the detector network over the slices; see benchmarks/README.md for the measurements.
    # "auto": openvino on a CPU (torch when openvino is not installed), torch on CUDA.
    # onnx/openvino run an export that the first load builds beside the weights (rebuilt when they change).
    detection_runtime: Literal["auto", "torch", "onnx", "openvino"] = "auto"
    # "auto": the hardware's fast native type: fp16 for torch on CUDA, bf16 for openvino on a CPU with bf16
    # instructions (AVX512_BF16/AMX), else fp32. fp32 reproduces ultralytics' numbers exactly.
    # "int8" (openvino on a CPU): a quantised model built and guarded beside the weights (app/ml/quantize.py);
    # refused (the log says why) when it counts more than 1 % apart from fp32, and then the auto precision runs.
    detection_precision: Literal["auto", "fp32", "bf16", "fp16", "int8"] = "auto"
    slice_size: int = 320  # pixels at the reference long side below
    slice_reference_side: int = 2048  # slices grow and shrink with the photo so plants keep their scale
    # false: slices never shrink below SLICE_SIZE (photos that are crops of a larger one; cards from before)
    slice_scale_down: bool = True
    slice_overlap: float = 0.2
    merge_method: Literal["GREEDYNMM", "NMS"] = "GREEDYNMM"
    merge_metric: Literal["IOS", "IOU"] = "IOS"
    merge_threshold: float = 0.5
    # Where plants are counted: "segment" finds containers (trays, beds) and counts each; "whole" counts the
    # whole photo as one region (no containers, or containers the segmenter does not know). A photo uploaded
    # with its own `region_mode` or `regions` (boxes, e.g. from a fixed bench camera) overrides this.
    region_mode: Literal["segment", "whole"] = "segment"
    region_padding: float = 0.02  # fraction of the region's size added around its box before detection
    photo_cache_size: int = 2  # decoded photos kept per worker process
    photo_prefetch: bool = True  # decode the next photo waiting on the GPU queue while a photo runs (Redis)

    # Plausibility checks (app/ml/plausibility.py): a photo past any of these limits ends `warning`, its
    # counts still written. Chosen from measurements on held-out synthetic and real photos (models/README.md).
    plausibility_min_plants: int = 5  # fewer plants than this: the share checks below stay silent
    plausibility_size_outliers: float = 0.2  # share of plants outside the card's 1st-99th percentile size
    plausibility_density_factor: float = 2.0  # times beyond the card's 1st/99th percentile plants per area
    plausibility_overlap: float = 0.1  # share of plants overlapping another more than training plants did
    plausibility_low_confidence: float = 0.1  # share of plants within 0.15 of the confidence threshold
    plausibility_not_green: float = 0.05  # share of plants whose centre is not leaf-coloured

    # Retries.
    task_max_retries: int = 3
    retry_backoff: int = 2  # seconds; delays are backoff * 2**n: 2 s, 4 s, 8 s
    retry_backoff_max: int = 600
    retry_jitter: bool = False
    # Outages (database, photo store, broker away) are waited out, not counted against TASK_MAX_RETRIES:
    # a task retries RETRY_BACKOFF * 2**n seconds apart, capped at OUTAGE_BACKOFF_MAX, until
    # OUTAGE_DEADLINE_SECONDS after its first failure of the outage, and only then fails for good.
    outage_deadline_seconds: int = 900
    outage_backoff_max: int = 30
    # The broker's `dead_letter` list (a live feed beside the table) keeps only this many newest copies.
    dead_letter_queue_max_length: int = 10_000
    stale_session_seconds: int = 1800  # the sweeper fails sessions pending/processing longer than this
    sweep_interval_seconds: float = 300.0  # how often beat sends the stale-session sweeper
    # The reconciler (beat, cpu worker) re-enqueues unfinished photos whose work is gone from the broker:
    # it looks every RECONCILE_INTERVAL_SECONDS at sessions unchanged for RECONCILE_GRACE_SECONDS, and gives
    # up on a photo (failed, dead-lettered) after RECONCILE_MAX_ATTEMPTS re-enqueues.
    reconcile_interval_seconds: float = 60.0
    reconcile_grace_seconds: int = 30
    reconcile_max_attempts: int = 3

    # Workers.
    gpu_queues: int = 1
    gpu_index: int = 0  # which GPU queue (gpu_queue_<n>) this GPU worker consumes; set per worker
    # A GPU worker holds its queue's lease while it runs (workers/handover.py): a second worker with the
    # same GPU_INDEX waits for it, and a killed worker's successor waits at most this long before it
    # requeues the dead worker's unacknowledged tasks.
    gpu_lease_seconds: int = 15
    # The solo pool ignores Celery's child limits; workers.recycling enforces these (0 = no limit).
    # A photo is 1 + regions tasks, and a restart reloads the models (seconds), so the task limit is
    # high: the memory limits are the guard.
    gpu_max_tasks_per_child: int = 5000
    gpu_max_memory_per_child_kb: int = 8_000_000
    gpu_max_cuda_memory_mb: int = 0
    # After a cold shutdown request, running tasks get this many seconds to finish (Celery soft shutdown).
    worker_soft_shutdown_timeout: float = 60.0
    cpu_concurrency: int = 0  # 0 = number of cores
    cpu_max_tasks_per_child: int = 1000
    cpu_max_memory_per_child_kb: int = 1_000_000
    io_concurrency: int = 50
    # CPU priority of the cpu and io workers, so that aggregation and image rendering take few cores from
    # a GPU worker's decoding and pre/post-processing: "idle" runs them only on cores nothing else wants
    # (Linux SCHED_IDLE), "low" is nice 19, "normal" leaves them as they are (workers/priority.py).
    # "low" by measurement (benchmarks/README.md): under "idle" a busy machine starves aggregation and a
    # grower waits for the GPU backlog to drain before the first counts; nice 19 still yields to the GPU worker.
    background_cpu_priority: CpuPriority = "low"

    # Each worker serves Prometheus metrics on this port once ready (0: not served; the API has /metrics).
    metrics_port: int = 0

    # HTTP API.
    max_upload_bytes: int = 20 * 1024 * 1024  # a larger upload is refused with 413
    # Byte-identical photos uploaded again by the same tenant within this many seconds (0 = no check)
    # are refused with 409 ("refuse") or taken in and marked with `duplicate_of` ("flag").
    duplicate_upload_window_seconds: int = 0
    duplicate_upload_action: DuplicateAction = "refuse"
    # Absolute URLs in answers (Location, status_url...) start with this, e.g. https://api.example.org;
    # empty: the request's own scheme and Host header (fine behind no proxy, or in tests).
    public_base_url: str = ""
    # Server limits (uvicorn, `demeter api`, app/api/server.py): idle keep-alive connections are closed
    # after this many seconds, and so is a connection whose request head takes longer than
    # API_HEADER_TIMEOUT_SECONDS; a request whose headers exceed API_MAX_HEADER_BYTES is refused (400); past
    # API_LIMIT_CONCURRENCY connections and requests at once, new ones get 503; a request body must
    # arrive within API_BODY_TIMEOUT_SECONDS (408); at most API_MAX_CONCURRENT_UPLOADS uploads are
    # validated and stored at once per API process (each decodes its photo: ~3 bytes a pixel), others wait.
    api_timeout_keep_alive: int = 5
    api_header_timeout_seconds: float = 10.0  # a request's head must arrive within this (else: closed)
    api_max_header_bytes: int = 64 * 1024
    api_limit_concurrency: int = 200
    api_body_timeout_seconds: float = 60.0
    api_max_concurrent_uploads: int = 4
    # The API's /metrics: 0 = on the API's port, behind a key with the `admin` scope; a port = only there, no key.
    api_metrics_port: int = 0
    # Uploads allowed per API key, in the `limits` notation ("60/minute", "1000/hour"); empty = no limit.
    # Past it: 429 with Retry-After. Counters in RATE_LIMIT_STORAGE_URL (empty: the broker's Redis, or
    # this process's memory with the embedded broker).
    upload_rate_limit: str = ""
    rate_limit_storage_url: str = ""
    # Long side / short side above which an upload is refused with 422: container segmentation runs on the
    # whole photo at SEGMENTATION_IMGSZ, so a 12:1 panorama becomes a strip a few dozen pixels high where it
    # finds nothing. Phones write 4:3, 16:9 (1.8) and 21:9 (2.3); 3 leaves room for a cropped bench.
    max_aspect_ratio: float = Field(default=3.0, ge=1.0)

    fault_plan_file: str | None = None  # resilience tests only; see app/faults.py

    log_level: str = "INFO"
    # "auto": console rendering when ENVIRONMENT=development and stderr is a terminal, JSON lines otherwise.
    log_format: LogFormat = "auto"

    # Flower (python -m workers.flower): live workers and tasks, Prometheus /metrics.
    flower_port: int = 5555
    flower_address: str = "127.0.0.1"  # loopback by default; compose sets 0.0.0.0 inside its network
    flower_basic_auth: str = ""  # "user:password[,user2:password2]"; required unless FLOWER_ALLOW_NO_AUTH=true
    flower_allow_no_auth: bool = False  # local use only; never honoured when ENVIRONMENT=production
    flower_db: Path | None = None  # persistent state file; default DATA_DIR/flower/flower.db
    # RabbitMQ management API Flower reads queue lengths from, http://user:pw@host:15672/api/ (kept out of argv).
    flower_broker_api: str = ""
    flower_state_save_interval_ms: int = 60_000  # also saved on shutdown; a crash loses at most this much

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        return value.resolve()

    @field_validator("upload_rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str) -> str:
        if value:
            from limits import parse

            parse(value)  # ValueError names the bad notation
        return value

    @property
    def rate_limit_storage_url_resolved(self) -> str:
        if self.rate_limit_storage_url:
            return self.rate_limit_storage_url
        broker = self.broker_url_resolved
        return broker if broker.startswith(("redis://", "rediss://")) else "memory://"
    @model_validator(mode="after")
    def _no_setting_that_loses_or_doubles_work(self) -> Settings:
        """Refuse, in every process at start-up, combinations that run a task twice or give up on live work."""
        problems = settings_problems(self)
        if problems:
            raise ValueError("settings that would lose or double work: " + "; ".join(problems))
        return self

    @property
    def longest_retry_countdown(self) -> int:
        """The longest a retry waits in a worker (seconds): the last of TASK_MAX_RETRIES own retries, or an
        outage retry (app/tasks/base.py)."""
        own = min(self.retry_backoff * 2 ** max(0, self.task_max_retries - 1), self.retry_backoff_max)
        outage = min(self.outage_backoff_max, self.outage_deadline_seconds)
        return max(own if self.task_max_retries > 0 else 0, outage)

    @property
    def database_url_resolved(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'demeter.sqlite3'}"

    @property
    def broker_url_resolved(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def result_backend_resolved(self) -> str:
        return self.result_backend or f"file://{self.data_dir / 'results'}"

    @property
    def broker_folder(self) -> Path:
        return self.data_dir / "broker"

    @property
    def storage_dir_resolved(self) -> Path:
        return (self.storage_dir or self.data_dir / "storage").resolve()

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url_resolved.startswith("filesystem://")


def settings_problems(settings: Settings) -> list[str]:
    """What is wrong with these settings' combination, one sentence per problem naming the variables."""
    problems = []
    # Redis gives an unacknowledged task to another worker after VISIBILITY_TIMEOUT. A task is unacknowledged
    # while it runs and while its retry waits for its countdown in the worker (tasks are acknowledged late).
    held = settings.longest_task_seconds + settings.longest_retry_countdown
    if settings.visibility_timeout <= held:
        problems.append(
            f"VISIBILITY_TIMEOUT ({settings.visibility_timeout} s) must exceed LONGEST_TASK_SECONDS "
            f"({settings.longest_task_seconds} s) plus the longest retry countdown ({settings.longest_retry_countdown}"
            " s, from RETRY_BACKOFF, TASK_MAX_RETRIES, RETRY_BACKOFF_MAX and OUTAGE_BACKOFF_MAX), or a task runs twice")
    # The sweeper fails a session unchanged this long when the broker cannot be scanned (the embedded
    # filesystem broker): it must outlast a running task, or it fails photos that are being counted.
    if settings.stale_session_seconds <= settings.longest_task_seconds:
        problems.append(
            f"STALE_SESSION_SECONDS ({settings.stale_session_seconds} s) must exceed LONGEST_TASK_SECONDS "
            f"({settings.longest_task_seconds} s), or photos still being counted are failed")
    if settings.gpu_lease_seconds < 3:
        problems.append(f"GPU_LEASE_SECONDS ({settings.gpu_lease_seconds}) must be at least 3: it is renewed "
                        "every third of it")
    return problems


@lru_cache
def get_settings() -> Settings:
    return Settings()
