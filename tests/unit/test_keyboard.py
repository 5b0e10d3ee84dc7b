"""What a person at the keyboard sees: log format choice, one-line errors, help, settings, progress."""

from __future__ import annotations

import argparse
import io
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from app import exits
from app.cli import build_parser
from app.config import Settings
from app.errors import DatabaseUnavailable, InvalidImage
from app.observability.logging import _DropKnownNoise, resolve_format
from app.progress import ProgressDisplay, Step, eta_seconds, plain_line
from app.runner import confirm_servers, new_run_dir
from app.settings_view import effective, mask_url


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(("fmt", "environment", "tty", "expected"), [
    ("auto", "development", True, "console"),
    ("auto", "development", False, "json"),
    ("auto", "production", True, "json"),
    ("auto", "test", True, "json"),
    ("json", "development", True, "json"),
    ("console", "production", False, "console"),
])
def test_log_format_is_console_only_for_a_person_at_a_development_terminal(
        fmt: str, environment: str, tty: bool, expected: str) -> None:
    assert resolve_format(fmt, environment, _Stream(tty)) == expected  # type: ignore[arg-type]


def test_kombus_hostname_warning_is_dropped_and_its_other_warnings_are_not() -> None:
    def record(name: str, message: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.WARNING, __file__, 1, message, None, None)

    noise = _DropKnownNoise()
    assert not noise.filter(record("kombu.connection", "No hostname was supplied. Reverting to default 'localhost'"))
    assert noise.filter(record("kombu.connection", "Connection lost"))
    assert noise.filter(record("app.intake", "No hostname was supplied"))


def _operational(message: str) -> OperationalError:
    return OperationalError("SELECT 1", {}, Exception(message))


@pytest.mark.parametrize(("error", "code", "words"), [
    (FileNotFoundError(2, "No such file or directory", "missing.jpg"), exits.BAD_INPUT, "missing.jpg"),
    (InvalidImage("notanimage.jpg: not a readable image"), exits.BAD_INPUT, "not a readable image"),
    (_operational('connection failed: FATAL:  database "x" does not exist\n(details)'), exits.UNAVAILABLE,
     'database "x" does not exist'),
    (_operational("no such table: dead_letters"), exits.UNAVAILABLE, "demeter migrate"),
    (exits.TimedOut("2 of 3 photos not finished after 5 s"), exits.TIMEOUT, "timeout: 2 of 3"),
    (ValueError("something odd\nsecond line"), exits.INTERNAL, "--debug"),
])
def test_each_failure_class_is_one_line_with_its_exit_code(error: Exception, code: int, words: str) -> None:
    classified = exits.classify(error)
    line = exits.one_line(classified, debug=False)
    assert classified.exit_code == code
    assert words in line and "\n" not in line and line.startswith("demeter: ")


def test_a_database_error_reports_the_drivers_words_not_the_wrapper() -> None:
    try:
        try:
            raise _operational("connection to server failed: Connection refused")
        except OperationalError as exc:
            raise DatabaseUnavailable(f"database unreachable: {exc}") from exc
    except DatabaseUnavailable as wrapped:
        classified = exits.classify(wrapped)
    assert classified.exit_code == exits.UNAVAILABLE
    assert str(classified) == "database unreachable: connection to server failed: Connection refused"


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found += _subparsers(child)
    return found


def test_every_option_of_every_command_has_help_and_shows_its_default() -> None:
    for parser in _subparsers(build_parser()):
        text = parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
                continue
            assert action.help, f"{parser.prog}: {action.dest} has no help"
            if action.default not in (None, False, argparse.SUPPRESS):
                assert f"(default: {action.default})" in " ".join(text.split()), f"{parser.prog}: {action.dest}"


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("demeter ")


def test_config_masks_passwords_and_keeps_the_rest() -> None:
    settings = Settings(database_url="postgresql+psycopg2://demeter:s3cret@db/demeter",
                        broker_url="redis://:hunter2@redis:6379/0", flower_basic_auth="admin:pw,ops:pw2",
                        result_backend="", data_dir=Path("/srv/data"))
    shown = effective(settings)
    assert shown["DATABASE_URL"] == "postgresql+psycopg2://demeter:***@db/demeter"
    assert shown["BROKER_URL"] == "redis://:***@redis:6379/0"
    assert shown["FLOWER_BASIC_AUTH"] == "admin:***,ops:***"
    assert shown["RESULT_BACKEND"] == "file:///srv/data/results"  # empty: shown as what it resolves to
    assert shown["DATA_DIR"] == "/srv/data"
    assert "s3cret" not in str(shown) and "hunter2" not in str(shown) and "pw2" not in str(shown)
    assert mask_url("sqlite:////srv/data/demeter.sqlite3") == "sqlite:////srv/data/demeter.sqlite3"


def test_progress_estimate_and_plain_line() -> None:
    step = Step(done=1, total=3, regions_done=5, regions_total=12, partial=0.5)
    assert eta_seconds(step, elapsed=30.0) == pytest.approx(30.0)  # 1.5 photos in 30 s, 1.5 to go
    assert eta_seconds(Step(0, 3), elapsed=30.0) is None
    assert plain_line("counting", "photos", step, 30.0) == \
        "counting: 1/3 photos, regions 5/12, elapsed 30 s, about 30 s left"


def test_progress_on_a_pipe_is_plain_lines_only_when_a_photo_finishes_or_rarely() -> None:
    stream = _Stream(tty=False)
    with ProgressDisplay("counting", 2, "photos", stream=stream) as progress:
        progress.update(Step(0, 2))
        progress.update(Step(0, 2))  # nothing moved
        progress.update(Step(0, 2, 1, 4, 0.25))  # regions moved, within PLAIN_INTERVAL: held back
        progress.update(Step(1, 2, 4, 4))
        progress.update(Step(2, 2, 6, 6))
    lines = stream.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == ["counting: 0/2 photos", "counting: 1/2 photos",
                                                      "counting: 2/2 photos"]
    assert "\x1b" not in stream.getvalue()


def test_progress_on_a_terminal_is_a_live_bar_and_none_with_json() -> None:
    terminal = _Stream(tty=True)
    with ProgressDisplay("counting", 2, "photos", stream=terminal) as progress:
        progress.update(Step(1, 2, 3, 5))
    assert "1/2 photos" in terminal.getvalue() and "regions 3/5" in terminal.getvalue()
    silent = _Stream(tty=True)
    with ProgressDisplay("counting", 2, "photos", stream=silent, enabled=False) as progress:
        progress.update(Step(1, 2))
        progress.note("run folder: x")
    assert silent.getvalue() == ""


def test_every_run_gets_its_own_folder(tmp_path: Path) -> None:
    now = datetime(2026, 11, 30, 12, 0, 5, tzinfo=UTC)
    first, second = new_run_dir(tmp_path, now), new_run_dir(tmp_path, now)
    assert first == tmp_path / "runs" / "20261130-120005"
    assert second == tmp_path / "runs" / "20261130-120005-2"
    assert first.is_dir() and second.is_dir()


def test_the_demo_asks_before_writing_to_configured_servers() -> None:
    embedded = Settings(database_url="", broker_url="", result_backend="", storage_backend="local")
    confirm_servers(embedded, photos=3, yes=False)  # nothing to confirm
    servers = embedded.model_copy(update={"database_url": "postgresql+psycopg2://u:pw@db/prod",
                                          "broker_url": "redis://redis:6379/0"})
    confirm_servers(servers, photos=3, yes=True)
    with pytest.raises(exits.NeedsConfirmation) as refused:
        confirm_servers(servers, photos=3, yes=False)
    message = str(refused.value)
    assert "3 synthetic photos" in message and "postgresql+psycopg2://u:***@db/prod" in message
    assert "BROKER_URL=redis://redis:6379/0" in message and "--yes" in message and ":pw@" not in message
    assert refused.value.exit_code == exits.USAGE
