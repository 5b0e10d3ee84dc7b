"""The base task: retries for transient errors, the dead-letter queue for the rest."""

from __future__ import annotations

from typing import Any

from billiard.einfo import ExceptionInfo
from celery import Task
from celery.utils.time import get_exponential_backoff_interval

from app.config import get_settings
from app.deadletter import record as deadletter
from app.errors import TRANSIENT_ERRORS, PermanentError
from app.observability import metrics
from app.observability.logging import get_logger
from app.observability.signals import photo_id_of

log = get_logger(__name__)
_settings = get_settings()


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

    def retry_countdown(self) -> int:
        """Seconds before the next retry, as Celery's autoretry computes them for every other task:
        RETRY_BACKOFF * 2**retries, capped at RETRY_BACKOFF_MAX, drawn from [0, that] with RETRY_JITTER
        ("full jitter", Celery's `get_exponential_backoff_interval`)."""
        return get_exponential_backoff_interval(
            factor=self.retry_backoff, retries=self.request.retries, maximum=self.retry_backoff_max,
            full_jitter=self.retry_jitter,
        )

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        log.info("task started", retries=self.request.retries)

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: ExceptionInfo) -> None:
        deadletter.record(self, exc, list(args or ()), dict(kwargs or {}))
        self.after_dead_letter(exc, list(args or ()), dict(kwargs or {}))

    def after_dead_letter(self, exc: BaseException, args: list[Any], kwargs: dict[str, Any]) -> None:
        """Hook for tasks that must record the failure in their own rows too."""


class FailsSessionTask(PipelineTask):
    """A task whose failure for good means its photo cannot be counted: the session is failed too."""

    def after_dead_letter(self, exc: BaseException, args: list[Any], kwargs: dict[str, Any]) -> None:
        from app.db import repository
        from app.db.session import db_session

        photo_id = photo_id_of(self, args, kwargs)
        if photo_id is not None:
            with db_session() as db:
                ended = repository.fail_session(db, photo_id=photo_id, reason=f"{type(exc).__name__}: {exc}")
            if ended:
                metrics.photo_finished("failed", None, None)
