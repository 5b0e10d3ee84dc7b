"""A worker running the probe tasks in the pool named on its command line.

    python -m tests.utils.probe_worker solo|prefork|gevent QUEUE

gevent is set up the way workers/io.py does it: patched before anything else is imported.
"""

from __future__ import annotations

import sys

CONCURRENCY = {"solo": 1, "prefork": 2, "gevent": 20}


def main() -> None:
    pool, queue = sys.argv[1], sys.argv[2]
    if pool == "gevent":
        from gevent import monkey

        monkey.patch_all()
        from psycogreen.gevent import patch_psycopg

        patch_psycopg()
    from app.celery_app import app
    from tests.utils import probe_tasks  # noqa: F401  (registers the probe tasks)

    app.worker_main([
        "worker", f"--pool={pool}", f"--concurrency={CONCURRENCY[pool]}", f"--queues={queue}", "-E",
        f"--hostname=probe-{pool}@%h", "--loglevel=INFO",
    ])


if __name__ == "__main__":
    main()
