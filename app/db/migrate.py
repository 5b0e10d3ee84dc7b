"""Run Alembic migrations from code (the CLI, workers' start-up, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from app.config import get_settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url or get_settings().database_url_resolved)
    return config


def upgrade_database(url: str | None = None) -> None:
    """Bring the database to the newest schema; a no-op when it is already there."""
    settings = get_settings()
    if (url or settings.database_url_resolved).startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), "head")
