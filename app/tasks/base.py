"""The base task: outages waited out, a few retries for the task's own transient errors, the
dead-letter queue for the rest."""

from __future__ import annotations

import time
from typing import Any, NoReturn

import kombu.exceptions
import redis.exceptions
from billiard.einfo import ExceptionInfo
from celery import Task
from celery.utils.time import get_exponential_backoff_interval

from app.config import get_settings
from app.deadletter import record as deadletter
from app.errors import TRANSIENT_ERRORS, BrokerUnavailable, Outage, PermanentError
from app.observability import metrics
from app.observability.logging import get_logger
from app.observability.signals import photo_id_of

log = get_logger(__name__)
_settings = get_settings()

# Message headers that carry an outage's bookkeeping from one retry to the next.
OUTAGE_SINCE = "x_outage_since"  # epoch seconds of the first failure of the outage being waited out
OUTAGE_ATTEMPT = "x_outage_attempt"  # retries spent on that outage (the backoff's exponent)
OUTAGE_RETRIES = "x_outage_retries"  # retries spent on outages in all (not counted in TASK_MAX_RETRIES)


def outage_countdown(*, waited: float, attempt: int, deadline: int, factor: int, maximum: int,
                     jitter: bool) -> int | None:
    """Seconds before the next try during an outage, or None once `waited` (seconds since the outage's
    first failure) reached `deadline`: factor * 2**attempt capped at `maximum` (Celery's
    `get_exponential_backoff_interval`, full jitter when `jitter`). With the defaults (2, 30, 900):
    2, 4, 8, 16, 30, 30, ... s, so a task notices a recovered database within 30 s, for 15 minutes."""
    if waited >= deadline:
        return None
    return int(get_exponential_backoff_interval(factor=factor, retries=attempt, maximum=maximum,
                                                full_jitter=jitter))


# What a publish raises when the broker is away (kombu wraps the Redis client's connection errors, and
# raises them as they are on some paths); waited out like the other outages.
BROKER_ERRORS: tuple[type[BaseException], ...] = (kombu.exceptions.OperationalError, redis.exceptions.ConnectionError,
                                                  redis.exceptions.TimeoutError)


class PipelineTask(Task):
    """Outages retry until OUTAGE_DEADLINE_SECONDS; other transient errors retry TASK_MAX_RETRIES times
    with exponential backoff; permanent ones are never retried.

    A task that fails for good (a permanent error, retries exhausted, an outage past its deadline) is
    recorded in the dead-letter queue by `on_failure`, whatever pool ran it.
    """

    abstract = True
    autoretry_for = ()  # retries are decided in __call__: outages and the task's own errors apart
    max_retries = _settings.task_max_retries
    retry_backoff = _settings.retry_backoff
    retry_backoff_max = _settings.retry_backoff_max
    retry_jitter = _settings.retry_jitter
    throws = (PermanentError,)  # expected failures: logged without a traceback

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except Outage as exc:
            self.wait_out(exc)
            raise
        except BROKER_ERRORS as exc:  # a publish from the task's body (a chord, the next task) found no broker
            self.wait_out(BrokerUnavailable(f"broker unreachable: {exc}"))
            raise
        except TRANSIENT_ERRORS as exc:
            self.retry_own(exc)
            raise

    def own_retries(self) -> int:
        """Retries this task spent on its own transient errors, outages not counted."""
        return int(self.request.retries or 0) - int(self.request.get(OUTAGE_RETRIES) or 0)

    def retry_countdown(self) -> int:
        """Seconds before the next retry for the task's own error: RETRY_BACKOFF * 2**own retries, capped
        at RETRY_BACKOFF_MAX, drawn from [0, that] with RETRY_JITTER ("full jitter", Celery's
        `get_exponential_backoff_interval`)."""
        return int(get_exponential_backoff_interval(
            factor=self.retry_backoff, retries=self.own_retries(), maximum=self.retry_backoff_max,
            full_jitter=self.retry_jitter,
        ))

    def retry_own(self, exc: BaseException) -> None:
        """Retry (raises celery's Retry) unless TASK_MAX_RETRIES own retries are spent (returns)."""
        if self.own_retries() >= self.max_retries:
            return
        self._retry(exc, self.retry_countdown(), {OUTAGE_RETRIES: int(self.request.get(OUTAGE_RETRIES) or 0)})

    def wait_out(self, exc: Outage) -> None:
        """Retry through an outage (raises celery's Retry) until OUTAGE_DEADLINE_SECONDS after its first
        failure; returns once the deadline has passed, and the task fails for good."""
        now = time.time()
        since = float(self.request.get(OUTAGE_SINCE) or now)
        attempt = int(self.request.get(OUTAGE_ATTEMPT) or 0)
        countdown = outage_countdown(waited=now - since, attempt=attempt, deadline=_settings.outage_deadline_seconds,
                                     factor=self.retry_backoff, maximum=_settings.outage_backoff_max,
                                     jitter=self.retry_jitter)
        if countdown is None:
            log.error("outage outlasted its deadline", waited_s=round(now - since), error=str(exc))
            return
        self._retry(exc, countdown, {OUTAGE_SINCE: since, OUTAGE_ATTEMPT: attempt + 1,
                                     OUTAGE_RETRIES: int(self.request.get(OUTAGE_RETRIES) or 0) + 1})

    def _retry(self, exc: BaseException, countdown: int, headers: dict[str, Any]) -> NoReturn:
        # max_retries one above this try: the budgets above decided already.
        raise self.retry(exc=exc, countdown=countdown, max_retries=int(self.request.retries or 0) + 1,
                         headers=headers)

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        log.info("task started", retries=self.request.retries)

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: ExceptionInfo) -> None:
        deadletter.record(self, exc, list(args or ()), dict(kwargs or {}))
        self.after_dead_letter(exc, list(args or ()), dict(kwargs or {}))

    def after_dead_letter(self, exc: BaseException, args: list[Any], kwargs: dict[str, Any]) -> None:
        """Hook for tasks that must record the failure in their own rows too."""


class HousekeepingTask(PipelineTask):
    """A periodic task: an outage skips this run (beat sends the next one), without retries or a dead letter."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return Task.__call__(self, *args, **kwargs)
        except Outage as exc:
            log.warning("housekeeping skipped: a component is away", error=str(exc))
            return None


class FailsSessionTask(PipelineTask):
    """A task whose failure for good means its photo cannot be counted: the session is failed too."""

    def after_dead_letter(self, exc: BaseException, args: list[Any], kwargs: dict[str, Any]) -> None:
        from app.db import repository
        from app.db.session import db_session

        photo_id = photo_id_of(self, args, kwargs)
        if photo_id is None:
            return
        try:
            with db_session() as db:
                ended = repository.fail_session(db, photo_id=photo_id, reason=f"{type(exc).__name__}: {exc}",
                                                recount_model=str(kwargs.get("recount_model") or ""))
            if ended and not kwargs.get("recount_model"):
                metrics.photo_finished("failed", None, None)
        except Outage as error:  # the reconciler or sweeper will find the session (no work left for it)
            log.warning("could not mark the session failed", photo_id=photo_id, error=str(error))
