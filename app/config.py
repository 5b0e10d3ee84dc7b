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

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

CpuPriority = Literal["idle", "low", "normal"]  # BACKGROUND_CPU_PRIORITY; applied by workers/priority.py


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path("var")

    # Connections. Empty means "embedded default under DATA_DIR".
    database_url: str = ""
    broker_url: str = ""
    result_backend: str = ""
    broker_polling_interval: float = 0.1  # seconds; embedded filesystem broker only
    visibility_timeout: int = 3600  # seconds; must exceed the longest task
    # RabbitMQ only (BROKER_URL=amqp://...; app/topology.py, README "Choosing a broker").
    broker_queue_type: Literal["classic", "quorum"] = "classic"  # quorum: replicated, no priorities on 3.x
    broker_delivery_limit: int = 5  # quorum queues: deliveries of one message before RabbitMQ dead-letters it
    broker_heartbeat: float = 60.0  # seconds; AMQP heartbeat of the API and the prefork/gevent workers
    # The server's consumer_timeout (rabbitmq.conf, 30 min by default): a task, or a retry countdown held
    # by a worker, must end within it or RabbitMQ closes the channel and the task runs again.
    broker_consumer_timeout: int = 1800
    longest_task_seconds: int = 600  # the longest a task (a photo of the largest size) runs; checked against it
    broker_publish_timeout: float = 5.0  # seconds an upload waits for the broker to confirm its task
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
    detection_precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    slice_size: int = 320  # pixels at the reference long side below
    slice_reference_side: int = 2048  # slices grow with the photo so plants keep their scale
    slice_overlap: float = 0.2
    merge_method: Literal["GREEDYNMM", "NMS"] = "GREEDYNMM"
    merge_metric: Literal["IOS", "IOU"] = "IOS"
    merge_threshold: float = 0.5
    region_padding: float = 0.02  # fraction of the region's size added around its box before detection
    photo_cache_size: int = 2  # decoded photos kept per worker process

    # Retries.
    task_max_retries: int = 3
    retry_backoff: int = 2  # seconds; delays are backoff * 2**n: 2 s, 4 s, 8 s
    retry_backoff_max: int = 600
    retry_jitter: bool = False
    stale_session_seconds: int = 1800  # the sweeper fails sessions pending/processing longer than this
    sweep_interval_seconds: float = 300.0  # how often beat sends the stale-session sweeper

    # Workers.
    gpu_queues: int = 1
    gpu_index: int = 0  # which GPU queue (gpu_queue_<n>) this GPU worker consumes; set per worker
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
    # CPU priority of the cpu and io workers, so that aggregation and image rendering never take cores
    # from a GPU worker's decoding and pre/post-processing: "idle" runs them only on cores nothing else
    # wants (Linux SCHED_IDLE), "low" is nice 19, "normal" leaves them as they are (workers/priority.py).
    background_cpu_priority: CpuPriority = "idle"

    # HTTP API.
    max_upload_bytes: int = 20 * 1024 * 1024  # a larger upload is refused with 413

    fault_plan_file: str | None = None  # resilience tests only; see app/faults.py

    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"  # "console" renders for humans only when stderr is a terminal

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


@lru_cache
def get_settings() -> Settings:
    return Settings()
