"""Taking a photo in: validate, store, create its session, enqueue its processing.

Used by the HTTP API and by the CLI alike. Rows are committed before the task is
published (a worker never races its row), and a failed publish removes the rows and
the stored file again, so a broker outage leaves no half-created session. On RabbitMQ a publish
that timed out may still be delivered: its rows are kept instead (app/topology.py, publish_options).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery import Celery
from sqlalchemy.exc import IntegrityError

from app import names, topology
from app.config import DuplicateAction, Settings, get_settings
from app.db import repository
from app.db.models import DEFAULT_TENANT, utcnow
from app.db.session import db_session
from app.errors import BrokerUnavailable, PermanentError
from app.ml.images import inspect_image
from app.observability import correlation, metrics
from app.observability.logging import get_logger
from app.records import validate_bbox
from app.storage import get_storage, new_key

log = get_logger(__name__)


class IdempotencyKeyTaken(PermanentError):
    """Another upload of this tenant already holds this idempotency key (a concurrent twin)."""


class DuplicatePhoto(PermanentError):
    """The same bytes were uploaded by this tenant within DUPLICATE_UPLOAD_WINDOW_SECONDS."""

    def __init__(self, existing_uuid: str) -> None:
        super().__init__(f"the same photo was uploaded recently as {existing_uuid}")
        self.existing_uuid = existing_uuid


@dataclass(frozen=True)
class DuplicatePolicy:
    """What to do with a byte-identical photo of the same tenant within `window_seconds` (0: nothing)."""

    window_seconds: int = 0
    action: DuplicateAction = "refuse"

    @classmethod
    def from_settings(cls, settings: Settings) -> DuplicatePolicy:
        return cls(settings.duplicate_upload_window_seconds, settings.duplicate_upload_action)


@dataclass(frozen=True)
class Submission:
    photo_id: int
    photo_uuid: str
    session_id: str
    task_id: str
    correlation_id: str
    queue: str
    duplicate_of: str | None = None


class GpuQueuePicker:
    """Spread photos over the GPU queues that have a live consumer.

    Policy: round-robin by photo id over the queues some worker consumes now (asked
    over the broker, remembered for LIVE_QUEUES_TTL seconds); when no worker answers,
    over all configured queues, so the photo waits for the first GPU worker to come.
    A photo's children later follow its parent's queue (see ml_parent_task).
    """

    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        self._live: tuple[float, list[str]] | None = None

    def configured(self, celery: Celery) -> list[str]:
        return sorted(q.name for q in celery.conf.task_queues if names.is_gpu_queue(q.name))

    def live(self, celery: Celery) -> list[str]:
        now = time.monotonic()
        if self._live is None or now - self._live[0] > self.ttl:
            try:
                replies = celery.control.inspect(timeout=0.5).active_queues() or {}
            except Exception:
                replies = {}
            consumed = {q["name"] for queues in replies.values() for q in queues}
            self._live = (now, sorted(consumed & set(self.configured(celery))))
        return self._live[1]

    def pick(self, photo_id: int, celery: Celery) -> str:
        queues = self.configured(celery)
        if len(queues) > 1:
            queues = self.live(celery) or queues
        return queues[photo_id % len(queues)]


gpu_queue_picker = GpuQueuePicker()


def choose_gpu_queue(photo_id: int, celery: Celery | None = None) -> str:
    from app.celery_app import app as default_app

    return gpu_queue_picker.pick(photo_id, celery or default_app)


def submit_photo(
    data: bytes,
    *,
    filename: str | None = None,
    correlation_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    celery: Celery | None = None,
    tenant: str = DEFAULT_TENANT,
    idempotency_key: str | None = None,
    request_sha256: str | None = None,
    duplicates: DuplicatePolicy | None = None,
) -> Submission:
    """Validate (raises InvalidImage), store, record and enqueue one photo of `tenant`.

    `celery` is the app to publish with (default: the service's own). `idempotency_key` is
    stored with `request_sha256` (the request's fingerprint); a second photo of the tenant with
    the same key raises IdempotencyKeyTaken and keeps nothing. A byte-identical photo of the
    tenant within the policy's window raises DuplicatePhoto, or is taken in and flagged
    (`duplicate_of`), as the policy says (default: DUPLICATE_UPLOAD_* from the settings).
    """
    settings = get_settings()
    policy = duplicates or DuplicatePolicy.from_settings(settings)
    info = inspect_image(data, max_aspect_ratio=settings.max_aspect_ratio)
    for box in (metadata or {}).get("regions") or []:
        validate_bbox(box, info.width, info.height)
    cid = correlation.sanitize(correlation_id or correlation.correlation_id.get())
    content_sha256 = hashlib.sha256(data).hexdigest()
    duplicate_of = find_recent_duplicate(tenant, content_sha256, policy.window_seconds)
    if duplicate_of is not None and policy.action == "refuse":
        raise DuplicatePhoto(duplicate_of)
    key = new_key("original", info.extension)
    storage = get_storage()
    storage.put(key, data, info.content_type)
    try:
        with db_session() as db:
            photo, session = repository.create_photo(
                db, storage_key=key, content_type=info.content_type, width=info.width, height=info.height,
                size_bytes=len(data), original_filename=filename, correlation_id=cid, metadata=metadata,
                tenant=tenant, idempotency_key=idempotency_key, request_sha256=request_sha256,
                content_sha256=content_sha256, duplicate_of=duplicate_of,
            )
            photo_id, photo_uuid, session_uuid = photo.id, str(photo.uuid), str(session.uuid)
    except IntegrityError as exc:
        storage.delete(key)
        if idempotency_key is not None:
            raise IdempotencyKeyTaken(f"idempotency key {idempotency_key!r} is taken") from exc
        raise
    except Exception:
        storage.delete(key)
        raise
    queue = choose_gpu_queue(photo_id, celery)
    try:
        task_id = enqueue(photo_id, cid, queue, celery, photo_uuid)
    except Exception as exc:
        if not _outcome_unknown(exc, celery):
            _forget(photo_id, key)
            raise BrokerUnavailable(f"could not queue photo {photo_id}: {exc}") from exc
        # The task may still arrive (RabbitMQ let the blocked publish through later): keep the rows, so it
        # never runs for a deleted photo; the session stays pending without a task id until it does.
        log.warning("photo publish outcome unknown; rows kept", photo_id=photo_id, queue=queue, error=str(exc))
        raise BrokerUnavailable(f"photo {photo_id} may not be queued: {exc}") from exc
    metrics.PHOTOS_SUBMITTED.inc()
    log.info("photo submitted", photo_id=photo_id, photo_uuid=photo_uuid, task_id=task_id, queue=queue,
             correlation_id=cid, duplicate_of=duplicate_of)
    return Submission(photo_id, photo_uuid, session_uuid, task_id, cid, queue, duplicate_of)


def find_recent_duplicate(tenant: str, content_sha256: str, window: int) -> str | None:
    """The UUID of the tenant's latest photo with these bytes within `window` seconds (0: no check)."""
    if window <= 0:
        return None
    with db_session() as db:
        return repository.recent_duplicate(db, tenant=tenant, content_sha256=content_sha256,
                                           since=utcnow() - timedelta(seconds=window))


def enqueue(photo_id: int, cid: str, queue: str, celery: Celery | None = None, photo_uuid: str | None = None,
            recount_model: str = "") -> str:
    """Publish ml_parent_task for a stored photo and note the task id on its session (with
    `recount_model`: on its recount session by that model, the kwarg passed on to the task).

    The message carries the photo's UUID as the `photo_uuid` kwarg (looked up when not given), so
    Flower's task page and the dead letter name the photo by its public id."""
    from app.celery_app import app as default_app

    if photo_uuid is None:
        with db_session() as db:
            photo_uuid = repository.photo_uuid(db, photo_id=photo_id)
    app = celery or default_app
    settings = _settings_of(app)
    kwargs: dict[str, Any] = {"correlation_id": cid, "photo_uuid": photo_uuid}
    if recount_model:
        kwargs["recount_model"] = recount_model
    options: dict[str, Any] = {"args": [photo_id], "kwargs": kwargs, "queue": queue,
                               "headers": {correlation.MESSAGE_HEADER: cid}, **topology.publish_options(settings)}
    if topology.broker_kind(settings.broker_url_resolved) == "amqp":
        result = _send_on_own_connection(app, options)
    else:
        result = app.send_task(names.PARENT_TASK, **options)
    with db_session() as db:
        repository.get_session(db, photo_id=photo_id, recount_model=recount_model).task_id = result.id
    return str(result.id)


def _send_on_own_connection(app: Celery, options: dict[str, Any]) -> Any:
    """Publish the photo task on a connection of its own (RabbitMQ). A failed publish drops its connection
    without the closing handshake, which a broker that blocks publishers (a memory alarm) never answers,
    and which may still receive the late confirm of this message."""
    connection = app.connection_for_write()
    try:
        result = app.send_task(names.PARENT_TASK, connection=connection, **options)
    except BaseException:
        connection.collect()
        raise
    connection.release()
    return result


def _outcome_unknown(exc: BaseException, celery: Celery | None) -> bool:
    """Whether the failed publish may still be delivered (a RabbitMQ publish that timed out)."""
    from app.celery_app import app as default_app

    return topology.publish_outcome_unknown(exc, _settings_of(celery or default_app))


def _settings_of(app: Celery) -> Settings:
    """The settings, with the broker of `app` (a test or tool may publish through another broker)."""
    return get_settings().model_copy(update={"broker_url": str(app.conf.broker_url)})


def _forget(photo_id: int, key: str) -> None:
    with db_session() as db:
        repository.delete_photo(db, photo_id=photo_id)
    get_storage().delete(key)
