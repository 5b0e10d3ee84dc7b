"""structlog set up once per process; stdlib and Celery logs are routed through it.

`LOG_FORMAT=auto` (the default) renders for humans (structlog's console renderer)
when ENVIRONMENT=development and stderr is a terminal, and JSON lines otherwise (one
object per line: timestamp, level, logger, event and the bound context such as
correlation_id, photo_id, task_id), so a redirected or collected log stays
machine-readable. `LOG_FORMAT=json` or `console` forces one of them.

Every process configures this before its first line: the CLI in `main`, each worker
entrypoint at the top of its `main` (and again, a no-op, from Celery's
`setup_logging` signal, which stops Celery from installing its own handlers);
prefork children inherit the handler through fork, and gevent greenlets share it.
Third-party INFO chatter (Alembic's set-up lines, kombu's "No hostname was
supplied" for the filesystem broker) is kept out unless LOG_LEVEL=DEBUG; Python
warnings (Celery's "superuser privileges") become log lines. Anything that logs between
`task_prerun` and `task_postrun` (our code, Celery's "Task ... succeeded/retry/
raised" lines, the chord callback publish) gets the task's context from the
contextvars that `merge_contextvars` copies into every line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import structlog

from app.config import LogFormat, get_settings

_configured = False
_json = True
_process_fields: dict[str, Any] = {}
NOISY_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer", "PIL", "matplotlib")
# INFO lines of these say nothing an operator needs ("setup plugin ...", "Context impl ...", "Will assume
# transactional DDL", "Running upgrade"); they stay quiet unless LOG_LEVEL=DEBUG.
CHATTY_LOGGERS = ("alembic",)
# (logger, message prefix) of warnings that are expected and harmless here: kombu warns on every
# connection to the embedded filesystem broker, whose URL has no host by design.
KNOWN_NOISE = (("kombu.connection", "No hostname was supplied"),)


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


def resolve_format(fmt: LogFormat, environment: str, stream: TextIO) -> Literal["json", "console"]:
    """'auto' is console for a person at a development terminal, JSON for everything else."""
    if fmt != "auto":
        return fmt
    return "console" if environment == "development" and stream.isatty() else "json"


class _DropKnownNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(record.name == name and str(record.msg).startswith(prefix) for name, prefix in KNOWN_NOISE)


def configure_logging(level: str = "INFO", fmt: LogFormat = "auto", environment: str = "development") -> None:
    """Idempotent: the first call in a process wins (forked children inherit it)."""
    global _configured, _json
    if _configured:
        return
    _configured = True
    _json = resolve_format(fmt, environment, sys.stderr) == "json"
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_process_fields,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    final: list[structlog.types.Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if not _json:
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
    handler.addFilter(_DropKnownNoise())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if root.level > logging.DEBUG:
        for chatty in CHATTY_LOGGERS:
            logging.getLogger(chatty).setLevel(logging.WARNING)
    logging.captureWarnings(True)


def configure_from_settings(quiet: bool = False) -> None:
    """`configure_logging` with LOG_LEVEL, LOG_FORMAT and ENVIRONMENT; every entrypoint calls it first.

    `quiet`: WARNING unless LOG_LEVEL is set, for commands that show their own progress (`demeter demo`).
    """
    settings = get_settings()
    level = "WARNING" if quiet and "log_level" not in settings.model_fields_set else settings.log_level
    configure_logging(level, settings.log_format, settings.environment)


def celery_banner_options() -> list[str]:
    """Celery's global options for a worker: `--quiet` (no ASCII banner on stdout) when lines are JSON, so that
    every line a worker prints is one JSON object; the banner stays for a person at a terminal."""
    return ["--quiet"] if _json else []


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
