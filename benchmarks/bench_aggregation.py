"""One photo's aggregation on PostgreSQL: SQL statements, wall ms and CPU ms of `aggregate_results`.

    .venv/bin/python benchmarks/bench_aggregation.py [--photos 20] [--regions 4] [--plants 250]

Creates --photos photos, each with a session in `processing` and --regions regions (as the GPU
worker's parent leaves them), then calls the cpu worker's `aggregate_results` in this process on
results of --plants random detections a region, one photo after the other, and reports per photo:
the statements SQLAlchemy sends by kind (each a round trip to the server; an executemany that is not
a multi-row INSERT counts once a row, as psycopg2 sends it), the COPYs of detections
(sent on the raw connection, so counted apart), and the median wall and CPU ms of the call; then
the statements of a second delivery of the first photo's results (idempotency: reads only).

Needs the local PostgreSQL and Redis (the render task it queues goes to BENCH_REDIS_URL's
database BENCH_REDIS_DB). The PostgreSQL database BENCH_DATABASE_AGGREGATION is recreated at
every run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

POSTGRES = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432")
DATABASE = os.environ.get("BENCH_DATABASE_AGGREGATION", "demeter_bench_aggregation")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "2"))


def prepare(n_photos: int, n_regions: int) -> list[int]:
    """A fresh database with photos whose regions are saved and whose sessions are `processing`; their ids."""
    from app.db import repository
    from app.db.migrate import upgrade_database
    from app.db.session import db_session
    from app.records import RegionProposal
    from tests.utils.services import create_database

    create_database(POSTGRES, DATABASE)
    upgrade_database()
    photo_ids = []
    for index in range(n_photos):
        with db_session() as db:
            photo, _ = repository.create_photo(db, storage_key=f"bench/{index}.jpg", content_type="image/jpeg",
                                               width=2048, height=1536, size_bytes=1)
            repository.mark_processing(db, photo_id=photo.id, task_id="bench")
            boxes = [(r * 500, 0, r * 500 + 400, 1400) for r in range(n_regions)]
            proposals = [RegionProposal("tray", 0.9, (x1, y1, x2, y2),
                                        [[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
                         for x1, y1, x2, y2 in boxes]
            repository.save_regions(db, photo_id=photo.id, proposals=proposals)
            photo_ids.append(photo.id)
    return photo_ids


def region_results(rng: np.random.Generator, n_regions: int, n_plants: int) -> list[dict[str, Any]]:
    """The chord's results for one photo, as the region tasks return them."""
    from app.records import encode_detections

    results = []
    for index in range(n_regions):
        corners = rng.uniform(0, 380, (n_plants, 2)).astype(np.float32) + np.float32(index * 500)
        boxes = np.column_stack([corners, corners + 20]).astype(np.float32)
        scores = rng.uniform(0.3, 0.9, n_plants).astype(np.float32)
        results.append({"region_index": index, "count": n_plants, "mean_confidence": float(scores.mean()),
                        "detections": encode_detections(boxes, scores), "plant_like": None})
    return results


def run(n_photos: int, n_regions: int, n_plants: int) -> dict[str, Any]:
    from sqlalchemy import event
    from sqlalchemy.engine.interfaces import ExecuteStyle

    import app.db.repository as repository
    from app.db.session import get_engine
    from app.tasks.aggregation import aggregate_results

    photo_ids = prepare(n_photos, n_regions)
    rng = np.random.default_rng(0)
    payloads = [region_results(rng, n_regions, n_plants) for _ in photo_ids]
    statements: Counter[str] = Counter()

    def count(_conn: Any, _cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        kind = statement.split()[0]
        if not executemany:
            statements[kind] += 1
        elif context.execute_style is ExecuteStyle.INSERTMANYVALUES:  # the rows go in one statement
            statements[f"{kind} (many rows, one statement)"] += 1
        else:  # psycopg2's executemany sends one statement a row
            statements[f"{kind} (executemany, one a row)"] += len(parameters)

    event.listen(get_engine(), "before_cursor_execute", count)
    insert_detections = repository._insert_detections

    def counted_copy(*args: Any, **kwargs: Any) -> None:  # COPY goes by the raw connection, past the events
        statements["COPY"] += 1
        insert_detections(*args, **kwargs)

    repository._insert_detections = counted_copy
    wall, cpu = [], []
    for photo_id, results in zip(photo_ids, payloads, strict=True):
        started, cpu_started = time.perf_counter(), time.process_time()
        aggregate_results(results, photo_id)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    per_photo = {kind: round(number / n_photos, 2) for kind, number in sorted(statements.items())}
    statements.clear()
    aggregate_results(payloads[0], photo_ids[0])
    return {
        "photos": n_photos, "regions_per_photo": n_regions, "plants_per_region": n_plants,
        "statements_per_photo": per_photo,
        "round_trips_per_photo": round(sum(per_photo.values()), 2),
        "wall_ms_per_photo": round(median(wall) * 1000, 1),
        "cpu_ms_per_photo": round(median(cpu) * 1000, 1),
        "statements_second_delivery": dict(sorted(statements.items())),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=20)
    parser.add_argument("--regions", type=int, default=4, help="regions per photo")
    parser.add_argument("--plants", type=int, default=250, help="detections per region")
    args = parser.parse_args()
    os.environ.update({
        "DATABASE_URL": f"{POSTGRES}/{DATABASE}",
        "BROKER_URL": f"{REDIS}/{REDIS_DB}",
        "RESULT_BACKEND": f"{REDIS}/{REDIS_DB + 1}",
        "DATA_DIR": tempfile.mkdtemp(prefix="demeter-bench-aggregation-"),
        "STORAGE_BACKEND": "local",
    })
    from app.observability.logging import configure_logging

    configure_logging("ERROR")  # the doubts the random plants raise are not the point here
    print(json.dumps(run(args.photos, args.regions, args.plants), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
