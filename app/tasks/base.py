"""The base task: retries for transient errors, the dead-letter queue for the rest."""

from __future__ import annotations

from typing import Any

from billiard.einfo import ExceptionInfo
from celery import Task
from sqlalchemy.exc import InterfaceError, OperationalError

from app import deadletter
from app.config import get_settings
from app.errors import PermanentError, TransientError
from app.observability.logging import get_logger

log = get_logger(__name__)
_settings = get_settings()

# A database that restarts or refuses connections is a transient fault.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (TransientError, OperationalError, InterfaceError)


def backoff_delay(retries: int) -> int:
    """Seconds before retry number `retries + 1`: RETRY_BACKOFF * 2**retries, capped (2 s, 4 s, 8 s by default)."""
    return int(min(_settings.retry_backoff_max, _settings.retry_backoff * 2**retries))


class PipelineTask(Task):
    """Transient errors retry with exponential backoff; permanent ones are never retried.

    A task that fails for good (a permanent error, or retries exhausted) is recorded
    in the dead-letter queue by `on_failure`, whatever pool ran it.
    """

    abstract = True
    autoretry_for = TRANSIENT_ERRORS
    max_retries = _settings.task_max_retries
    retry_backoff = _settings.retry_backoff
    retry_backoff_max = _settings.retry_backoff_max
    retry_jitter = _settings.retry_jitter
    throws = (PermanentError,)  # expected failures: logged without a traceback

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        log.info("task started", retries=self.request.retries)

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: ExceptionInfo) -> None:
        deadletter.record(self, exc, list(args or ()), dict(kwargs or {}))
        self.after_dead_letter(exc, list(args or ()), dict(kwargs or {}))

    def after_dead_letter(self, exc: BaseException, args: list[Any], kwargs: dict[str, Any]) -> None:
        """Hook for tasks that must record the failure in their own rows too."""
