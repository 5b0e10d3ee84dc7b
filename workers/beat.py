"""Celery beat: periodic housekeeping (schedule in app.celery_app.beat_schedule).

    python -m workers.beat
"""

from __future__ import annotations

import sys

from app.celery_app import app
from app.config import get_settings
from app.observability.logging import celery_banner_options, configure_from_settings


def main() -> None:
    configure_from_settings()
    schedule = get_settings().data_dir / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    app.start([*celery_banner_options(), "beat", "--loglevel=INFO", f"--schedule={schedule}", *sys.argv[1:]])


if __name__ == "__main__":
    main()
