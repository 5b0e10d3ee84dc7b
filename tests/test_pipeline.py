"""Photo in, rows out: the spine on the real broker (Redis or RabbitMQ), PostgreSQL and worker processes."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import func, select

from app import names
from app.celery_app import app as celery
from app.config import get_settings
from app.db import repository
from app.db.models import Detection, Region, SessionStatus, StockBatch, StockMovement, utcnow
from app.db.session import db_session
from app.intake import submit_photo
from app.ml.registry import get_registry
from app.topology import priority_for
from tests.utils.photos import blank_jpeg, synthetic, synthetic_jpeg, wait_final
from tests.utils.processes import WorkerSet

pytestmark = pytest.mark.broker

# Priorities on every broker the tests run except RabbitMQ's quorum queues (README, "Choosing a broker").
QUEUES_HAVE_PRIORITIES = priority_for(names.CHILD_TASK, get_settings()) is not None

COUNT_TOLERANCE = 0.08  # a single photo may be off by at most 8% (the models' target)


def _rows(session_id: int) -> dict[str, int]:
    with db_session() as db:
        regions = db.scalars(select(Region).where(Region.session_id == session_id)).all()
        region_ids = [r.id for r in regions]
        batches = db.scalars(select(StockBatch).where(StockBatch.session_id == session_id)).all()
        movements = db.scalar(
            select(func.count()).select_from(StockMovement).where(StockMovement.batch_id.in_([b.id for b in batches]))
        )
        detections = db.scalar(select(func.count()).select_from(Detection).where(Detection.region_id.in_(region_ids)))
        return {
            "regions": len(regions),
            "batches": len(batches),
            "movements": int(movements or 0),
            "detections": int(detections or 0),
            "batch_total": sum(b.quantity for b in batches),
            "region_total": sum(r.plant_count or 0 for r in regions),
        }


def test_photo_goes_through_segmentation_chord_and_aggregation(workers: WorkerSet) -> None:
    truth = synthetic(9100)
    submission = submit_photo(synthetic_jpeg(9100), filename="bench.jpg", correlation_id="spine-test-1")

    session = wait_final(submission.photo_id)

    assert session.status == "completed", (session.error, session.doubts)
    assert session.doubts == []
    assert session.model_cards == {"segmentation": get_registry().segmentation_card().id,
                                   "detection": get_registry().detection_card().id}
    assert session.model_cards["detection"].startswith("plant_det@")
    rows = _rows(session.id)
    assert session.regions_total == rows["regions"] == len(truth.containers)
    assert rows["batches"] == rows["movements"] == rows["regions"]
    assert rows["batch_total"] == rows["region_total"] == rows["detections"] == session.total_count
    assert abs(session.total_count - truth.true_count) <= COUNT_TOLERANCE * truth.true_count
    # The photo was decoded once by the GPU worker, not once per region.
    loads = [line for line in workers.logs("gpu") if line.get("event") == "photo loaded"
             and line.get("photo_id") == submission.photo_id]
    assert len(loads) == 1


def test_a_photo_is_finished_before_the_next_one_starts(workers: WorkerSet) -> None:
    # Submitted together, the photos wait on the GPU queue; region tasks go ahead of them (priority),
    # so each photo's regions are counted from the worker's cache right after its segmentation.
    photo_ids = [submit_photo(synthetic_jpeg(seed), filename="bench.jpg").photo_id for seed in (9102, 9103, 9104)]
    for photo_id in photo_ids:
        assert wait_final(photo_id).status == "completed"

    steps = [(line["event"], line["photo_id"]) for line in workers.logs("gpu")
             if line.get("photo_id") in photo_ids and line.get("event") in ("photo segmented", "region counted")]
    order = [photo_id for event, photo_id in steps if event == "photo segmented"]
    assert sorted(order) == sorted(photo_ids)
    if not QUEUES_HAVE_PRIORITIES:
        # RabbitMQ quorum queues (3.x) have no priorities: a FIFO queue, each photo's regions behind the
        # photos queued before them (and a photo may be decoded again once the cache has moved on).
        for photo_id in photo_ids:
            regions = [i for i, step in enumerate(steps) if step == ("region counted", photo_id)]
            assert all(i > steps.index(("photo segmented", photo_id)) for i in regions)
        return
    assert [photo_id for _, photo_id in steps] == sorted((p for _, p in steps), key=order.index)
    loads = [line["photo_id"] for line in workers.logs("gpu") if line.get("event") == "photo loaded"
             and line.get("photo_id") in photo_ids]
    assert sorted(loads) == sorted(photo_ids)


def test_photo_without_containers_is_a_warning_not_a_silent_zero(workers: WorkerSet) -> None:
    submission = submit_photo(blank_jpeg(), filename="empty-bench.jpg")

    session = wait_final(submission.photo_id)

    assert session.status == "warning"
    assert [d["check"] for d in session.doubts] == ["no_regions"]
    assert "no containers found" in session.doubts[0]["message"]
    assert session.regions_total == 0
    assert session.total_count == 0
    assert _rows(session.id)["movements"] == 0


def test_running_the_callback_again_writes_no_second_movement(workers: WorkerSet) -> None:
    from app.tasks.aggregation import aggregate_results

    submission = submit_photo(synthetic_jpeg(9101), filename="bench.jpg")
    session = wait_final(submission.photo_id)
    before = _rows(session.id)
    with db_session() as db:
        regions = db.scalars(select(Region).where(Region.session_id == session.id)).all()
        replayed = [{"region_index": r.region_index, "count": 5, "mean_confidence": 0.9, "detections": ""}
                    for r in regions]

    summary = aggregate_results.apply_async(args=[replayed, submission.photo_id]).get(timeout=60)

    assert summary["total_count"] == session.total_count
    assert _rows(session.id) == before


def test_a_photo_is_aggregated_in_eight_round_trips_and_a_second_delivery_in_one_read(
        workers: WorkerSet) -> None:
    """The statements of one photo's aggregation, whatever its number of regions (each a round trip to
    PostgreSQL; psycopg2 sends an executemany UPDATE once a row): the locked session, the photo, the
    regions; one UPDATE of the regions, one DELETE of their plants (and one COPY of them, on the raw
    connection), one INSERT of the batches, the session's UPDATE, one INSERT of the movements. A second
    delivery reads the locked session, finds it final, and neither judges nor writes anything."""
    import numpy as np
    from sqlalchemy import event
    from sqlalchemy.engine.interfaces import ExecuteStyle, ExecutionContext

    from app.db import repository
    from app.db.session import get_engine
    from app.records import RegionProposal, encode_detections
    from app.storage import get_storage, new_key
    from app.tasks.aggregation import aggregate_results

    key = new_key("photos", "jpg")
    get_storage().put(key, blank_jpeg(1024, 768), "image/jpeg")  # the render queued after the counts draws on it
    with db_session() as db:
        photo, session = repository.create_photo(db, storage_key=key, content_type="image/jpeg", width=1024,
                                                 height=768, size_bytes=1)
        repository.mark_processing(db, photo_id=photo.id, task_id="test")
        repository.save_regions(db, photo_id=photo.id, proposals=[
            RegionProposal("tray", 0.9, (x, 0, x + 200, 700), [[x, 0], [x + 200, 0], [x + 200, 700], [x, 700]])
            for x in (0, 250, 500, 750)])
        photo_id, session_id = photo.id, session.id
    boxes = np.array([[10, 10, 40, 40], [60, 60, 90, 90]], np.float32)
    results = [{"region_index": index, "count": 2, "mean_confidence": None if index == 3 else 0.5 + index / 10,
                "detections": encode_detections(boxes + np.float32(index * 250), np.array([0.6, 0.4], np.float32))}
               for index in range(4)]
    kinds: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, parameters: list[object], context: ExecutionContext,
              executemany: bool) -> None:
        rows = len(parameters) if executemany and context.execute_style is not ExecuteStyle.INSERTMANYVALUES else 1
        kinds.extend([statement.split()[0]] * rows)

    event.listen(get_engine(), "before_cursor_execute", count)
    try:
        first = aggregate_results(results, photo_id)
        first_kinds, kinds[:] = list(kinds), []
        second = aggregate_results(results, photo_id)
    finally:
        event.remove(get_engine(), "before_cursor_execute", count)

    assert sorted(first_kinds) == ["DELETE", "INSERT", "INSERT", "SELECT", "SELECT", "SELECT", "UPDATE", "UPDATE"]
    assert kinds == ["SELECT"]
    assert first["total_count"] == second["total_count"] == 8
    rows = _rows(session_id)
    assert rows["batches"] == rows["movements"] == 4
    assert rows["batch_total"] == rows["region_total"] == rows["detections"] == 8
    with db_session() as db:
        stored = db.execute(select(Region.region_index, Region.plant_count, Region.mean_confidence)
                            .where(Region.session_id == session_id).order_by(Region.region_index)).all()
    assert [tuple(row) for row in stored] == [(0, 2, 0.5), (1, 2, 0.6), (2, 2, 0.7), (3, 2, None)]


def test_failing_a_session_waits_for_the_aggregation_that_holds_it(database: str) -> None:
    # A dead letter fails its photo's session in a transaction of its own, possibly while an aggregation
    # is writing that photo's counts under the session's lock: the counted photo must stay counted.
    with db_session() as db:
        photo, _ = repository.create_photo(db, storage_key=f"original/test/{uuid.uuid4()}.jpg",
                                           content_type="image/jpeg", width=640, height=480, size_bytes=1)
        photo_id = photo.id
    ended: list[bool] = []

    def fail_from_a_dead_letter() -> None:
        with db_session() as db:
            ended.append(repository.fail_session(db, photo_id=photo_id, reason="a region failed for good"))

    with db_session() as db:  # the aggregation: lock, write, commit
        session = repository.get_session(db, photo_id=photo_id, lock=True)
        session.status, session.finished_at = SessionStatus.COMPLETED, utcnow()
        db.flush()
        failing = threading.Thread(target=fail_from_a_dead_letter)
        failing.start()
        failing.join(timeout=1.0)
        assert failing.is_alive(), "failing the session did not wait for the aggregation's lock"
    failing.join(timeout=30)

    assert ended == [False]
    with db_session() as db:
        assert repository.get_session(db, photo_id=photo_id).status == SessionStatus.COMPLETED


def test_late_results_in_which_every_region_failed_leave_the_dead_letters_replayable(database: str) -> None:
    from app.db.models import DeadLetter
    from app.records import RegionProposal
    from app.tasks.aggregation import aggregate_results

    with db_session() as db:
        photo, _ = repository.create_photo(db, storage_key=f"original/test/{uuid.uuid4()}.jpg",
                                           content_type="image/jpeg", width=640, height=480, size_bytes=1)
        repository.mark_processing(db, photo_id=photo.id, task_id="test")
        repository.save_regions(db, photo_id=photo.id, proposals=[
            RegionProposal("tray", 0.9, (x, 0, x + 200, 400), []) for x in (0, 300)])
        repository.fail_session(db, photo_id=photo.id, reason="stale: no progress")
        db.add(DeadLetter(task_name=names.CHILD_TASK, task_id=str(uuid.uuid4()), args=[photo.id, 0],
                          exception_type="RuntimeError", exception_message="region failed", photo_id=photo.id))
        photo_id = photo.id

    aggregate_results([{"region_index": 0, "failed": True}, {"region_index": 1, "failed": True}], photo_id)

    with db_session() as db:
        session = repository.get_session(db, photo_id=photo_id)
        letters = db.scalars(select(DeadLetter).where(DeadLetter.photo_id == photo_id)).all()
        assert (session.status, session.error) == (SessionStatus.FAILED, "stale: no progress")
        assert [letter.replayed_at for letter in letters] == [None]


def test_each_task_is_routed_to_its_queue() -> None:
    router = celery.amqp.router
    assert router.route({}, "app.tasks.ml.ml_parent_task")["queue"].name == "gpu_queue_0"
    assert router.route({}, "app.tasks.ml.ml_child_task")["queue"].name == "gpu_queue_0"
    assert router.route({}, "app.tasks.ml.aggregate_results")["queue"].name == "cpu"
    assert router.route({}, "app.tasks.io.render_annotated")["queue"].name == "io"
    assert router.route({}, "app.tasks.maintenance.sweep_stale_sessions")["queue"].name == "cpu"
    assert celery.conf.task_serializer == "json" and celery.conf.accept_content == ["json"]


def test_workers_consume_only_their_queues(workers: WorkerSet) -> None:
    active = celery.control.inspect(timeout=3).active_queues() or {}
    queues = {host.split("@")[0]: sorted(q["name"] for q in qs) for host, qs in active.items()}
    assert queues["gpu0"] == ["gpu_queue_0"]
    assert queues["cpu"] == ["cpu", "io"]


def test_whole_mode_counts_the_photo_as_one_region(workers: WorkerSet) -> None:
    truth = synthetic(9105)
    submission = submit_photo(synthetic_jpeg(9105), filename="bench.jpg", metadata={"region_mode": "whole"})

    session = wait_final(submission.photo_id)

    assert session.status == "completed", (session.error, session.doubts)
    assert session.region_mode == "whole"
    with db_session() as db:
        regions = db.scalars(select(Region).where(Region.session_id == session.id)).all()
        assert [(r.class_name, r.bbox) for r in regions] == [("whole", (0, 0, 2048, 1536))]
    assert session.total_count is not None
    assert abs(session.total_count - truth.true_count) <= COUNT_TOLERANCE * truth.true_count


def test_regions_supplied_with_the_upload_replace_segmentation(workers: WorkerSet) -> None:
    boxes = [[0, 0, 1024, 1536], [1024, 0, 2048, 1536]]
    submission = submit_photo(synthetic_jpeg(9106), filename="bench.jpg", metadata={"regions": boxes})

    session = wait_final(submission.photo_id)

    assert session.region_mode == "supplied"
    with db_session() as db:
        regions = db.scalars(select(Region).where(Region.session_id == session.id)
                             .order_by(Region.region_index)).all()
        assert [list(r.bbox) for r in regions] == boxes
        assert session.total_count is not None and session.total_count > 0
        assert sum(r.plant_count or 0 for r in regions) == session.total_count


def test_a_bare_photo_in_whole_mode_is_a_warning_with_no_plants(workers: WorkerSet) -> None:
    submission = submit_photo(blank_jpeg(), filename="bare.jpg", metadata={"region_mode": "whole"})

    session = wait_final(submission.photo_id)

    assert session.status == "warning"
    assert [d["check"] for d in session.doubts] == ["no_plants"]
