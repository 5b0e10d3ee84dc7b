"""`demeter recount` on real workers: a stored photo counted again with trained models, through the
parent/region/aggregation tasks, its difference written once per region and model as `recount` movements."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app import recount
from app.db.listings import StockFilters, list_movements
from app.db.models import ProcessingSession, Region, StockBatch, StockMovement
from app.db.session import db_session
from app.intake import submit_photo
from tests.utils.photos import synthetic_jpeg, wait_final
from tests.utils.processes import IsolatedBroker
from tests.utils.trained import trained_model


def _region_counts(photo_id: int, recount_model: str) -> dict[int, int]:
    with db_session() as db:
        rows = db.execute(select(Region.region_index, Region.plant_count)
                          .join(ProcessingSession, ProcessingSession.id == Region.session_id)
                          .where(ProcessingSession.photo_id == photo_id,
                                 ProcessingSession.recount_model == recount_model)).tuples().all()
    return {int(index): int(count) for index, count in rows if count is not None}


def _movements(photo_id: int) -> list[tuple[int, str, str, int]]:
    """(region index, movement type, recount model, quantity) of every movement of the photo."""
    with db_session() as db:
        rows = db.execute(select(Region.region_index, StockMovement.movement_type, StockMovement.recount_model,
                                 StockMovement.quantity)
                          .join(StockBatch, StockBatch.id == StockMovement.batch_id)
                          .join(Region, Region.id == StockBatch.region_id)
                          .join(ProcessingSession, ProcessingSession.id == StockBatch.session_id)
                          .where(ProcessingSession.photo_id == photo_id)).tuples().all()
    return sorted((int(i), t, m, int(q)) for i, t, m, q in rows)


def _recount(photo_id: int, model: str, isolated_broker: IsolatedBroker) -> bool:
    sent = recount.start_recount(photo_id, model, isolated_broker.app)
    assert recount.wait_for_recounts([photo_id], model, deadline=time.monotonic() + 300)
    return sent


@pytest.mark.timeout(900)
def test_a_recount_writes_each_regions_difference_once(isolated_broker: IsolatedBroker, tmp_path: Path) -> None:
    trained = tmp_path / "trained"
    trained_model(trained, "strict-a", threshold=0.8)  # fewer plants than the shipped 0.35: a difference to write
    trained_model(trained, "middle-b", threshold=0.5)
    env = {"TRAINED_MODELS_DIR": str(trained), "DETECTION_RUNTIME": "torch"}
    workers = isolated_broker.workers
    workers.start("gpu", ["-m", "workers.supervise", sys.executable, "-m", "workers.gpu"], env=env)
    workers.start("cpu", ["-m", "workers.cpu", "--queues=cpu,io", "--concurrency=1"], env=env)
    isolated_broker.wait_ready(["gpu0", "cpu"])
    photo_id = submit_photo(synthetic_jpeg(9500, 1280, 960), filename="bench.jpg",
                            celery=isolated_broker.app).photo_id
    assert wait_final(photo_id).status in ("completed", "warning")
    counted = _region_counts(photo_id, "")
    assert counted

    assert _recount(photo_id, "strict-a", isolated_broker) is True

    with db_session() as db:
        session = db.scalars(select(ProcessingSession).where(ProcessingSession.photo_id == photo_id,
                                                             ProcessingSession.recount_model == "strict-a")).one()
        assert session.status in ("completed", "warning"), session.error
        assert session.model_cards["recount_model"] == "strict-a"
        assert session.model_cards["detection"].startswith("strict-a@")
    strict = _region_counts(photo_id, "strict-a")
    assert strict.keys() == counted.keys()
    assert sum(strict.values()) < sum(counted.values())  # the stricter threshold found fewer plants
    differences = {i: q for i, t, m, q in _movements(photo_id) if t == "recount" and m == "strict-a"}
    assert differences == {i: strict[i] - counted[i] for i in counted}

    # Again: nothing is sent, nothing more written; the database refuses a second movement or session.
    before = _movements(photo_id)
    assert _recount(photo_id, "strict-a", isolated_broker) is False
    assert _movements(photo_id) == before
    report = recount.report(photo_id, "strict-a", already_done=True)
    assert [(r.region_index, r.counted, r.recounted, r.difference) for r in report.regions] == [
        (i, counted[i], strict[i], strict[i] - counted[i]) for i in sorted(counted)]
    with pytest.raises(IntegrityError), db_session() as db:
        batch_id = db.scalars(select(StockMovement.batch_id).where(StockMovement.recount_model == "strict-a")
                              .limit(1)).one()
        db.add(StockMovement(batch_id=batch_id, movement_type="recount", quantity=1, recount_model="strict-a",
                             idempotency_key=f"another-{uuid.uuid4()}"))
    with pytest.raises(IntegrityError), db_session() as db:
        db.add(ProcessingSession(photo_id=photo_id, recount_model="strict-a", status="pending"))

    # A second model's difference is taken from what the regions hold now (the count and strict-a's difference).
    assert _recount(photo_id, "middle-b", isolated_broker) is True
    middle = _region_counts(photo_id, "middle-b")
    second = {i: q for i, t, m, q in _movements(photo_id) if t == "recount" and m == "middle-b"}
    assert second == {i: middle[i] - strict[i] for i in counted}

    # The API's stock listing shows them beside the count's movements.
    with db_session() as db:
        filters = StockFilters(tenant=None, photo_uuid=uuid.UUID(report.photo_uuid), movement_type="recount")
        rows, (movements, quantity) = list_movements(db, filters=filters, limit=50, cursor=None)
    assert movements == 2 * len(counted) and {r.movement.movement_type for r in rows} == {"recount"}
    assert quantity == sum(middle.values()) - sum(counted.values())
