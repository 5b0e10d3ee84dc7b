"""What the `demeter` command tells a person when something goes wrong: one line and an exit code.

Exit codes (documented in README.md, "Command line"), one per class of failure so a
script can tell them apart; the numbers follow BSD's sysexits.h and GNU timeout:

    0    done, and every photo completed
    1    done, but not everything succeeded (a photo failed, no matching log line, ...)
    2    wrong usage (argparse: unknown option, missing argument), or a confirmation such as
         `demeter demo --yes` is needed
    65   bad input: a file that does not exist or cannot be read, bytes that are not an image (EX_DATAERR)
    69   a service is unreachable: database, broker or storage refused, or a database that does not
         exist (EX_UNAVAILABLE)
    70   an unexpected error inside demeter (EX_SOFTWARE); `--debug` shows the traceback
    124  timeout: the photos were not finished in time (as GNU timeout)
    130  interrupted with Ctrl-C
    141  standard output was closed early (`demeter config | head`), as a shell reports SIGPIPE
"""

from __future__ import annotations

from typing import ClassVar

from app.errors import (
    BrokerUnavailable,
    DatabaseUnavailable,
    InvalidImage,
    ObjectMissing,
    StorageUnavailable,
    TransientError,
)

OK = 0
NOT_ALL_DONE = 1
USAGE = 2
BAD_INPUT = 65
UNAVAILABLE = 69
INTERNAL = 70
TIMEOUT = 124
INTERRUPTED = 130
BROKEN_PIPE = 141


class CommandError(Exception):
    """A failure the command line reports as one line with this class's exit code."""

    exit_code: ClassVar[int] = INTERNAL
    kind: ClassVar[str] = "error"


class BadInput(CommandError):
    """The input a person gave cannot be used (missing file, not an image)."""

    exit_code = BAD_INPUT
    kind = "bad input"


class ServiceUnavailable(CommandError):
    """The database, the broker or the storage could not be reached."""

    exit_code = UNAVAILABLE
    kind = "unavailable"


class NeedsConfirmation(CommandError):
    """The command would write somewhere a person may not expect; it needs an explicit `--yes`."""

    exit_code = USAGE
    kind = "refused"


class TimedOut(CommandError):
    """The work did not finish within the time the person allowed."""

    exit_code = TIMEOUT
    kind = "timeout"


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def _driver_message(exc: BaseException) -> str:
    """A database driver's own first line (psycopg2's 'connection ... failed: FATAL: database "x" does not
    exist'), without SQLAlchemy's SQL and documentation link."""
    orig = getattr(exc, "orig", None)
    return _first_line(str(orig if orig is not None else exc))


def _no_schema(message: str) -> bool:
    """SQLite's and PostgreSQL's words for a table that was never created."""
    return "no such table" in message or ("relation" in message and "does not exist" in message)


def classify(exc: BaseException) -> CommandError:
    """The command-line class of any exception; unknown ones are INTERNAL errors."""
    from sqlalchemy.exc import InterfaceError, OperationalError, ProgrammingError

    if isinstance(exc, CommandError):
        return exc
    if isinstance(exc, DatabaseUnavailable) and exc.__cause__ is not None:
        return classify(exc.__cause__)  # the driver's own words
    if isinstance(exc, FileNotFoundError | IsADirectoryError | PermissionError | NotADirectoryError):
        name = exc.filename if exc.filename is not None else ""
        return BadInput(f"{name}: {exc.strerror or exc}".lstrip(": "))
    if isinstance(exc, InvalidImage | ObjectMissing):
        return BadInput(_first_line(str(exc)))
    if isinstance(exc, OperationalError | ProgrammingError) and _no_schema(_driver_message(exc)):
        return ServiceUnavailable(f"the database has no tables yet (run `demeter migrate`): {_driver_message(exc)}")
    if isinstance(exc, OperationalError | InterfaceError):
        return ServiceUnavailable(f"database unreachable: {_driver_message(exc)}")
    if isinstance(exc, DatabaseUnavailable | BrokerUnavailable | StorageUnavailable | TransientError):
        return ServiceUnavailable(_first_line(str(exc)))
    if isinstance(exc, ConnectionError | TimeoutError) or type(exc).__module__.split(".")[0] in ("kombu", "redis"):
        return ServiceUnavailable(f"broker unreachable: {_first_line(str(exc)) or type(exc).__name__}")
    error = CommandError(f"{type(exc).__name__}: {_first_line(str(exc))}")
    return error


def one_line(error: CommandError, debug: bool) -> str:
    """What goes to stderr: 'demeter: <kind>: <message>', with a hint towards --debug for internal errors."""
    line = f"demeter: {error.kind}: {_first_line(str(error)) or type(error).__name__}"
    if error.exit_code == INTERNAL and not debug:
        line += " (run with --debug for the traceback)"
    return line
