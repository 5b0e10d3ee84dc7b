"""Readiness checks: can this process reach the database, the broker and the store?

Each check is a plain blocking function that raises when its dependency is away;
`run_checks` runs them side by side in threads and reports each one.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
from sqlalchemy import text

from app import broker
from app.db.session import get_engine
from app.observability.logging import get_logger
from app.storage import get_storage

log = get_logger(__name__)

CHECK_TIMEOUT_SECONDS = 5.0


def check_database() -> None:
    with get_engine().connect() as connection:
        connection.execute(text("SELECT 1"))


def check_broker() -> None:
    from app.celery_app import app as celery

    # Reachable, and its queues declared as app/topology.py wants them (RabbitMQ refuses every upload to a
    # queue whose arguments differ: `demeter broker migrate`).
    problems = broker.check(celery, timeout=CHECK_TIMEOUT_SECONDS)
    if problems:
        raise RuntimeError("; ".join(problems))


def check_storage() -> None:
    get_storage().ping()


CHECKS: dict[str, Callable[[], None]] = {"database": check_database, "broker": check_broker, "storage": check_storage}


async def run_checks(checks: dict[str, Callable[[], None]] | None = None) -> dict[str, str]:
    """`{"database": "ok", "broker": "error: OperationalError"}`; never raises."""
    results: dict[str, str] = {}

    async def run(name: str, check: Callable[[], None]) -> None:
        try:
            with anyio.fail_after(CHECK_TIMEOUT_SECONDS + 1):
                await anyio.to_thread.run_sync(check, abandon_on_cancel=True)
            results[name] = "ok"
        except TimeoutError:
            results[name] = f"error: no answer within {CHECK_TIMEOUT_SECONDS + 1:.0f} s"
        except Exception as exc:
            # The answer names the failure's kind only: exception messages carry host names and ports,
            # which an unauthenticated probe must not reveal. The log line has the whole message.
            log.warning("readiness check failed", check=name, error=f"{type(exc).__name__}: {exc}"[:300])
            results[name] = f"error: {type(exc).__name__}"

    async with anyio.create_task_group() as group:
        for name, check in (checks or CHECKS).items():
            group.start_soon(run, name, check)
    return {name: results[name] for name in (checks or CHECKS)}
