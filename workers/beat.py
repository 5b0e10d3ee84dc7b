"""Celery beat: periodic housekeeping (schedule in app.celery_app.beat_schedule).

    python -m workers.beat
"""

from __future__ import annotations

import sys

from app.celery_app import app
from app.config import get_settings


def main() -> None:
    schedule = get_settings().data_dir / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    app.start(["beat", "--loglevel=INFO", f"--schedule={schedule}", *sys.argv[1:]])


if __name__ == "__main__":
    main()
