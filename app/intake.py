"""Taking a photo in: validate, store, create its session, enqueue its processing.

Used by the HTTP API and by the CLI alike. Rows are committed before the task is
published (a worker never races its row), and a failed publish removes the rows and
the stored file again, so a broker outage leaves no half-created session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery import Celery

from app.config import get_settings
from app.db import repository
from app.db.models import Photo
from app.db.session import db_session
from app.errors import TransientError
from app.ml.images import inspect_image
from app.observability import correlation
from app.observability.logging import get_logger
from app.storage import get_storage, new_key

log = get_logger(__name__)


class BrokerUnavailable(TransientError):
    """The task could not be queued."""


@dataclass(frozen=True)
class Submission:
    photo_id: int
    photo_uuid: str
    session_id: str
    task_id: str
    correlation_id: str
    queue: str


def choose_gpu_queue(photo_id: int) -> str:
    """Spread photos over the GPU queues round-robin by photo id (one queue per GPU worker)."""
    from app.celery_app import gpu_queues

    queues = gpu_queues(get_settings())
    return queues[photo_id % len(queues)]


def submit_photo(
    data: bytes,
    *,
    filename: str | None = None,
    correlation_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    celery: Celery | None = None,
) -> Submission:
    """Validate (raises InvalidImage), store, record and enqueue one photo.

    `celery` is the app to publish with (default: the service's own).
    """
    info = inspect_image(data)
    cid = correlation.sanitize(correlation_id or correlation.correlation_id.get())
    key = new_key("original", info.extension)
    storage = get_storage()
    storage.put(key, data, info.content_type)
    try:
        with db_session() as db:
            photo, session = repository.create_photo(
                db, storage_key=key, content_type=info.content_type, width=info.width, height=info.height,
                size_bytes=len(data), original_filename=filename, correlation_id=cid, metadata=metadata,
            )
            photo_id, photo_uuid, session_uuid = photo.id, str(photo.uuid), str(session.uuid)
    except Exception:
        storage.delete(key)
        raise
    queue = choose_gpu_queue(photo_id)
    try:
        task_id = enqueue(photo_id, cid, queue, celery)
    except Exception as exc:
        _forget(photo_id, key)
        raise BrokerUnavailable(f"could not queue photo {photo_id}: {exc}") from exc
    log.info("photo submitted", photo_id=photo_id, task_id=task_id, queue=queue, correlation_id=cid)
    return Submission(photo_id, photo_uuid, session_uuid, task_id, cid, queue)


def enqueue(photo_id: int, cid: str, queue: str, celery: Celery | None = None) -> str:
    """Publish ml_parent_task for a stored photo and note the task id on its session."""
    from app.celery_app import app as default_app

    result = (celery or default_app).send_task(
        "app.tasks.ml.ml_parent_task", args=[photo_id], kwargs={"correlation_id": cid}, queue=queue,
        headers={correlation.MESSAGE_HEADER: cid}, retry=True,
        retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
    )
    with db_session() as db:
        repository.get_session(db, photo_id=photo_id).task_id = result.id
    return str(result.id)


def _forget(photo_id: int, key: str) -> None:
    with db_session() as db:
        photo = db.get(Photo, photo_id)
        if photo is not None:
            db.delete(photo.session)
            db.delete(photo)
    get_storage().delete(key)
