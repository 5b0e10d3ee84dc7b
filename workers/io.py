"""I/O worker: gevent pool for uploads, annotated images and notifications.

    python -m workers.io

Celery monkey-patches for gevent only when `-P gevent` is on its command line, so
this entrypoint hands the pool choice to Celery's own command line. psycopg2 is made
cooperative with psycogreen, and the database pool is sized to the concurrency.
"""

from __future__ import annotations

import os
import sys

from gevent import monkey

monkey.patch_all()

from psycogreen.gevent import patch_psycopg  # noqa: E402

patch_psycopg()

from app.config import get_settings  # noqa: E402
from app.names import IO_QUEUE  # noqa: E402
from app.observability.logging import celery_banner_options, configure_from_settings  # noqa: E402
from workers.metrics import install as install_metrics  # noqa: E402
from workers.priority import lower_priority  # noqa: E402


def argv(extra: list[str]) -> list[str]:
    concurrency = get_settings().io_concurrency
    return [
        "worker",
        "-P",
        "gevent",
        f"--concurrency={concurrency}",
        f"--queues={IO_QUEUE}",
        "-E",
        "--hostname=io@%h",
        "--loglevel=INFO",
        *extra,
    ]


def main() -> None:
    configure_from_settings()
    install_metrics("io")
    # Every greenlet may hold a database connection: unless DB_POOL_SIZE says otherwise, the pool is as
    # large as the concurrency (read again below, so the settings object sees it).
    os.environ.setdefault("DB_POOL_SIZE", str(get_settings().io_concurrency))
    get_settings.cache_clear()
    lower_priority(get_settings().background_cpu_priority)
    from app.celery_app import app  # boto3 and the database driver are imported after patching
    from app.topology import gevent_worker_options
    from workers.queues import import_tasks_for

    app.conf.update(gevent_worker_options(get_settings()))  # RabbitMQ: confirms would stall the gevent pool
    args = argv(sys.argv[1:])
    import_tasks_for(app, args)
    app.worker_main([*celery_banner_options(), *args])


if __name__ == "__main__":
    main()
