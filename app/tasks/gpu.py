"""GPU worker tasks (solo pool, `gpu_queue_<n>`): segment a photo, count each region in a chord.

Imported only by the GPU worker (workers/gpu.py): it loads torch and the models. The chord's
callback and everything after it run on the cpu worker and are named, not imported, here.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from celery import chord
from celery.signals import worker_shutdown
from sqlalchemy.orm import Session

from app import faults, names
from app.celery_app import app
from app.db import repository
from app.db.session import db_session
from app.deadletter import record as deadletter
from app.errors import TRANSIENT_ERRORS, Outage
from app.ml.images import decode_rgb, decode_rgb_cuda
from app.ml.pipeline import choose_regions, count_region, region_result
from app.ml.plausibility import plant_like_count
from app.ml.registry import get_registry, registry_for
from app.observability import correlation, metrics
from app.observability.logging import get_logger
from app.storage import get_storage
from app.tasks.base import FailsSessionTask, PipelineTask
from app.tasks.next_photo import next_photo
from app.tasks.progress_writer import ProgressWriter
from app.topology import running_queue

log = get_logger(__name__)


class PhotoCache:
    """The last few decoded photos of this worker process, so a photo's children don't re-read it;
    and the next photo, decoded by a background thread while the current one runs.

    Memory: at most `size` decoded photos kept, plus one being decoded in the background.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[int, np.ndarray] = OrderedDict()
        self._pending: dict[int, Future[np.ndarray]] = {}
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    def get(self, photo_id: int, storage_key: str | None = None) -> np.ndarray:
        """The photo as an (H, W, 3) uint8 RGB array, decoded at most once while it stays cached.

        `storage_key` saves the lookup of the photo's row when the caller has it."""
        with self._lock:
            if photo_id in self._items:
                self._items.move_to_end(photo_id)
                return self._items[photo_id]
            pending = self._pending.get(photo_id)
        if pending is not None:
            try:
                return pending.result()
            except Exception as exc:  # loaded again below, where the task's own retries apply
                log.info("photo prefetch failed", prefetched_photo_id=photo_id, error=str(exc))
        image = self._load(photo_id, storage_key)
        with self._lock:
            self._keep(photo_id, image)
        return image

    def prefetch(self, photo_id: int, correlation_id: str | None) -> None:
        """Start decoding `photo_id` in the background, unless it is cached, or another prefetch runs.
        `correlation_id`: the photo's own, for the lines logged meanwhile."""
        with self._lock:
            if photo_id in self._items or self._pending:
                return
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="photo-prefetch")
            future = self._executor.submit(self._load_in_context, photo_id, correlation_id)
            self._pending[photo_id] = future
        future.add_done_callback(lambda done: self._settle(photo_id, done))

    def cached(self) -> set[int]:
        """The photos decoded or being decoded now."""
        with self._lock:
            return {*self._items, *self._pending}

    def _settle(self, photo_id: int, future: Future[np.ndarray]) -> None:
        with self._lock:
            self._pending.pop(photo_id, None)
            if not future.cancelled() and future.exception() is None:
                self._keep(photo_id, future.result())

    def _keep(self, photo_id: int, image: np.ndarray) -> None:
        # Called with the lock held.
        self._items[photo_id] = image
        self._items.move_to_end(photo_id)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def _load_in_context(self, photo_id: int, correlation_id: str | None) -> np.ndarray:
        correlation.bind(correlation_id, photo_id=photo_id)
        try:
            return self._load(photo_id, None)
        finally:
            correlation.clear()

    def _load(self, photo_id: int, storage_key: str | None) -> np.ndarray:
        if storage_key is None:
            with db_session() as db:
                storage_key = repository.get_photo(db, photo_id=photo_id).storage_key
        faults.inject("storage.get", storage_key)
        data = get_storage().get(storage_key)
        with metrics.stage("decode"):
            image = decode_rgb_cuda(data) if _ON_CUDA else None
            decoder = "nvjpeg" if image is not None else "pillow"
            if image is None:
                image = decode_rgb(data)
        log.info("photo loaded", photo_id=photo_id, width=image.shape[1], height=image.shape[0], decoder=decoder)
        return image


_ON_CUDA = get_registry().device.startswith("cuda")
photo_cache = PhotoCache(get_registry().settings.photo_cache_size)
progress_writer = ProgressWriter(capacity=256)


@worker_shutdown.connect
def _write_queued_progress(**_: Any) -> None:
    """A warm shutdown writes the progress still queued (a crash loses only those values)."""
    progress_writer.close(timeout=10.0)


@app.task(bind=True, base=FailsSessionTask, name=names.PARENT_TASK)
def ml_parent_task(self: FailsSessionTask, photo_id: int, correlation_id: str | None = None,
                   photo_uuid: str | None = None, recount_model: str = "") -> dict[str, Any]:
    """Segment the photo into regions, then start the chord that counts every region and aggregates.

    With `recount_model` (`demeter recount`) the photo's recount session by that model runs instead: the
    regions of its count are reused (not segmented again), counted with that model, and aggregation writes
    `recount` movements. Only then is the kwarg in the messages: a count's messages are as they were.

    `photo_uuid` is only there to be seen: Flower shows a task's kwargs, so an operator finds a photo's
    tasks by the UUID the API gave; the logging context binds it (app/observability/signals.py). Messages
    published without it (before it existed, or replayed from older dead letters) run the same.

    The chord is published, not returned through `self.replace`: replacing raises `Ignore`, whose
    traceback Celery formats on every photo (~7 ms of the GPU worker's time), and it hid the
    parent's own run from Flower behind its callback's.

    The database work is one transaction (a redelivered parent redoes all of it), committed before the
    chord is published: its children find their regions. Once published, the next photo waiting on this
    queue is decoded in the background while the children run.
    """
    with db_session() as db:
        region_docs = (_recount_regions(db, photo_id, recount_model, self.request.id) if recount_model
                       else _segment(db, photo_id, self.request.id))
    recount = {"recount_model": recount_model} if recount_model else {}
    callback = app.signature(names.AGGREGATE_TASK, args=(photo_id,), kwargs=recount)
    queue = running_queue(self)
    if region_docs:
        # Children stay on the queue (and so the GPU worker) that ran the parent: its photo cache is warm.
        header = [ml_child_task.s(doc, photo_id, **recount).set(queue=queue) for doc in region_docs]
        aggregation = chord(header, callback).apply_async()
    else:
        aggregation = callback.apply_async(args=([],))
    _prefetch_next(queue)
    return {"photo_id": photo_id, "regions": len(region_docs), "aggregate_task_id": aggregation.id}


def _segment(db: Session, photo_id: int, task_id: str | None) -> list[dict[str, Any]]:
    """Mark the session processing, find (REGION_MODE, or the upload's own `region_mode`/`regions`) and
    save the photo's regions, in the caller's transaction; their JSON documents for the chord."""
    registry = get_registry()
    photo = repository.get_photo(db, photo_id=photo_id)
    metadata = photo.metadata_json or {}
    mode = metadata.get("region_mode") or registry.settings.region_mode
    image = photo_cache.get(photo_id, photo.storage_key)
    session = repository.mark_processing(db, photo_id=photo_id, task_id=task_id)
    with metrics.stage("segmentation"):  # or the regions the upload supplied: then only checked
        proposals, found_by = choose_regions(image, registry, mode, metadata.get("regions"))
    regions = repository.save_regions(db, photo_id=photo_id, proposals=proposals, region_mode=found_by,
                                      session=session)
    region_docs = [{"index": r.region_index, "bbox": list(r.bbox), "class_name": r.class_name} for r in regions]
    log.info("photo segmented", regions=len(region_docs), classes=[r["class_name"] for r in region_docs],
             region_mode=found_by)
    return region_docs


def _recount_regions(db: Session, photo_id: int, recount_model: str, task_id: str | None) -> list[dict[str, Any]]:
    """Mark the recount session processing and copy the counted regions into it, in the caller's
    transaction; their JSON documents for the chord."""
    repository.mark_processing(db, photo_id=photo_id, task_id=task_id, recount_model=recount_model)
    regions = repository.copy_regions(db, photo_id=photo_id, recount_model=recount_model)
    region_docs = [{"index": r.region_index, "bbox": list(r.bbox), "class_name": r.class_name} for r in regions]
    log.info("photo regions reused for a recount", regions=len(region_docs), recount_model=recount_model)
    return region_docs


def _prefetch_next(queue: str) -> None:
    """Decode the next photo waiting on `queue` in the background (PHOTO_PREFETCH; Redis brokers only)."""
    settings = get_registry().settings
    if not settings.photo_prefetch or photo_cache.size < 2:  # with room for one photo, its children would lose it
        return
    waiting = next_photo(settings.broker_url_resolved, queue, skip=photo_cache.cached())
    if waiting is not None:
        photo_cache.prefetch(waiting.photo_id, waiting.correlation_id)


# On a Redis result backend a region's result (~7 KiB of detections) reaches the chord through the chord's
# list (`on_chord_part_return` runs whether or not the result is stored), deleted once the callback has run;
# stored under its task id as well, it would stay RESULT_EXPIRES_SECONDS for nobody. Other backends (the
# embedded file backend) join a chord by polling the stored results (`celery.chord_unlock`): kept there.
_REGION_RESULTS_STORED = not get_registry().settings.result_backend_resolved.startswith(("redis://", "rediss://"))


@app.task(bind=True, base=PipelineTask, autoretry_for=(), ignore_result=not _REGION_RESULTS_STORED,
          name=names.CHILD_TASK)
def ml_child_task(self: PipelineTask, region: dict[str, Any], photo_id: int,
                  recount_model: str = "") -> dict[str, Any]:
    """Count the plants of one region (with the model `recount_model` for a recount, app.ml.registry.registry_for).
    Fails soft: a region that fails for good is dead-lettered and reported as failed, so the chord's
    callback still runs."""
    index = int(region["index"])
    try:
        faults.inject("ml.count_region", f"{photo_id}:{index}")
        image = photo_cache.get(photo_id)
        with metrics.stage("detection"):
            detections = count_region(image, tuple(region["bbox"]), registry_for(recount_model))
        result = region_result(index, detections, plant_like_count(image, detections.boxes))
        # Written by a background thread (app/tasks/progress_writer.py): the next region need not wait.
        progress_writer.put(photo_id, index, result["count"], result["mean_confidence"], recount_model)
        log.info("region counted", region_index=index, count=result["count"])
        return result
    except Outage as exc:
        self.wait_out(exc)  # raises Retry until the outage's deadline
        return _region_failed(self, exc, region, photo_id, recount_model)
    except TRANSIENT_ERRORS as exc:
        self.retry_own(exc)  # raises Retry until TASK_MAX_RETRIES
        return _region_failed(self, exc, region, photo_id, recount_model)
    except Exception as exc:  # permanent, or a bug: either way the chord must still reach its callback
        return _region_failed(self, exc, region, photo_id, recount_model)


def _region_failed(task: PipelineTask, exc: BaseException, region: dict[str, Any], photo_id: int,
                   recount_model: str) -> dict[str, Any]:
    """The region's result as failed; never raises, so a region that fails for good never breaks its chord
    (recording the dead letter does not need the database: app/deadletter/record.py spools it)."""
    try:
        deadletter.record(task, exc, [region, photo_id], {"recount_model": recount_model} if recount_model else {})
    except Exception as error:  # a bug in recording must not cost the photo its other regions
        log.error("could not record the region's dead letter", region_index=region.get("index"), error=str(error))
    return {"region_index": int(region["index"]), "failed": True, "error": f"{type(exc).__name__}: {exc}"}
