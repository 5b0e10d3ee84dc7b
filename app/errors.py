"""The one error tree. Retries and the dead-letter queue decide by it alone.

A `TransientError` may succeed if tried again later (a store or database that is
briefly away); a `PermanentError` never will (a corrupt photo, an unknown id), so
it goes straight to the dead-letter queue without wasting retries.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class of every error this service raises on purpose."""


class TransientError(PipelineError):
    """Worth retrying with backoff."""


class PermanentError(PipelineError):
    """Never worth retrying: dead-letter it at once."""


class Outage(TransientError):
    """A component the task needs is away (database, photo store, broker): waited out until
    OUTAGE_DEADLINE_SECONDS, separately from the TASK_MAX_RETRIES a task gets for its own errors."""


class StorageUnavailable(Outage):
    """The photo store could not be reached."""


class DatabaseUnavailable(Outage):
    """The database refused or dropped the connection."""


class ObjectMissing(PermanentError):
    """The store answered, and holds nothing under that key."""


class InvalidImage(PermanentError):
    """The bytes are not a supported, decodable image (or are too large)."""


class UnknownPhoto(PermanentError):
    """No photo with that id."""


class InvalidRegion(PermanentError):
    """A region's geometry does not fit its photo."""


class ModelUnavailable(PermanentError):
    """The configured weights cannot be found or loaded."""


class BrokerUnavailable(Outage):
    """The task queue could not be reached (nothing was queued)."""


class ReplayRefused(PipelineError):
    """This dead letter cannot (or need not) be replayed."""


# What the retry machinery retries: the database session helper (app/db/session.py) turns a dropped or
# refused database connection into DatabaseUnavailable, so this tree is the only thing to match.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (TransientError,)
