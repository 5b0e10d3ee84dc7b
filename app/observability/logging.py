"""structlog set up once per process; stdlib and Celery logs are routed through it.

JSON lines by default (one object per line: timestamp, level, logger, event and
the bound context such as correlation_id, photo_id, task_id); `LOG_FORMAT=console`
renders for humans when stderr is a terminal (JSON otherwise, so a redirected log
stays machine-readable).

Workers call this from Celery's `setup_logging` signal (see signals.py), which
stops Celery from installing its own handlers; prefork children inherit the
handler through fork, and gevent greenlets share it. Anything that logs between
`task_prerun` and `task_postrun` (our code, Celery's "Task ... succeeded/retry/
raised" lines, the chord callback publish) gets the task's context from the
contextvars that `merge_contextvars` copies into every line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_configured = False
_process_fields: dict[str, Any] = {}
NOISY_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer", "PIL", "matplotlib")


def set_process_fields(**fields: Any) -> None:
    """Fields every line of this process carries from now on, e.g. the worker's name (forked children inherit them)."""
    _process_fields.update(fields)


def add_process_fields(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in _process_fields.items():
        event_dict.setdefault(key, value)
    return event_dict


def add_celery_task_fields(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Give Celery's own lines logged outside a task ("Task x[id] received") the task id as a field.

    Celery passes the id in the record's `data` extra; with it, `demeter logs` can
    join such lines to the correlation id of the task they belong to.
    """
    record = event_dict.get("_record")
    data = getattr(record, "data", None)
    if isinstance(data, dict) and "task_id" not in event_dict:
        if data.get("id"):
            event_dict["task_id"] = data["id"]
        if data.get("name"):
            event_dict.setdefault("task_name", data["name"])
    return event_dict


def use_console(fmt: str) -> bool:
    """Human rendering only when asked for and a person is watching the terminal."""
    return fmt == "console" and sys.stderr.isatty()


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Idempotent: the first call in a process wins (forked children inherit it)."""
    global _configured
    if _configured:
        return
    _configured = True
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_process_fields,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    final: list[structlog.types.Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if use_console(fmt):
        final.append(structlog.dev.ConsoleRenderer())  # renders tracebacks itself
    else:
        final += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, add_celery_task_fields],
        processors=final,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
