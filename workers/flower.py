"""Flower: the operators' live view of workers and tasks, and Prometheus `/metrics`.

    FLOWER_BASIC_AUTH=admin:secret python -m workers.flower [more flower options]

Serves on FLOWER_ADDRESS:FLOWER_PORT (127.0.0.1:5555 by default). It refuses to start
without basic auth unless FLOWER_ALLOW_NO_AUTH=true, and never without it in
production: Flower can revoke tasks and shut workers down. Worker and task state is
kept in DATA_DIR/flower/flower.db, so a restart does not forget recent history.
Flower serves `/metrics` and `/healthcheck` without auth; see docs/operations.md.
"""

from __future__ import annotations

import os
import sys

from app.config import Settings, get_settings
from app.observability.logging import configure_from_settings, get_logger

log = get_logger("workers.flower")


class FlowerConfigError(Exception):
    """The settings would serve Flower unsafely or cannot be used."""


def credentials(settings: Settings) -> list[str]:
    """The basic-auth `user:password` pairs; empty only when running open was explicitly allowed."""
    pairs = [pair.strip() for pair in settings.flower_basic_auth.split(",") if pair.strip()]
    for pair in pairs:
        user, colon, password = pair.partition(":")
        if not (user and colon and password):
            raise FlowerConfigError("FLOWER_BASIC_AUTH must be user:password (several separated by commas)")
    if pairs:
        return pairs
    if settings.environment == "production":
        raise FlowerConfigError("FLOWER_BASIC_AUTH is required in production (FLOWER_ALLOW_NO_AUTH is ignored there)")
    if not settings.flower_allow_no_auth:
        raise FlowerConfigError(
            "FLOWER_BASIC_AUTH is not set: refusing to serve Flower without authentication. "
            "Set FLOWER_BASIC_AUTH=user:password, or FLOWER_ALLOW_NO_AUTH=true for local use."
        )
    return []


def state_file(settings: Settings) -> str:
    path = settings.flower_db or settings.data_dir / "flower" / "flower.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(path)


def argv(settings: Settings, extra: list[str]) -> list[str]:
    """Flower's command line; the credentials travel in the environment, not here (ps shows argv)."""
    return [
        "flower",
        f"--port={settings.flower_port}",
        f"--address={settings.flower_address}",
        "--persistent=True",
        f"--db={state_file(settings)}",
        f"--state_save_interval={settings.flower_state_save_interval_ms}",
        *extra,
    ]


def main() -> None:
    configure_from_settings()
    settings = get_settings()
    try:
        pairs = credentials(settings)
    except FlowerConfigError as exc:
        log.critical("flower not started", reason=str(exc))
        raise SystemExit(2) from exc
    if pairs:
        os.environ["FLOWER_BASIC_AUTH"] = ",".join(pairs)  # Flower reads FLOWER_* options from the environment
    else:
        os.environ.pop("FLOWER_BASIC_AUTH", None)
        log.warning("flower runs WITHOUT authentication (FLOWER_ALLOW_NO_AUTH=true); local use only")
    broker_api = settings.flower_broker_api or settings.broker_api
    if broker_api:  # RabbitMQ's management API: queue lengths (Redis is asked directly)
        os.environ["FLOWER_BROKER_API"] = broker_api
    from app.celery_app import app

    app.start(argv(settings, sys.argv[1:]))


if __name__ == "__main__":
    main()
