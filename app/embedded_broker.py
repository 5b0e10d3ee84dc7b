"""The embedded broker: kombu's filesystem transport, each message written whole before a consumer sees it.

kombu's own `_put` creates the message file under its final name and then writes it; a worker listing
the folder in between takes the empty or partial file, fails to parse it and stops ("Unrecoverable
error: JSONDecodeError", celery/kombu#1551). Here a message is written under a name no consumer takes
(`.part` after `<queue>.msg`) and renamed into place: rename(2) within one file system is atomic
(POSIX), so a consumer sees either no message or all of it. Celery uses this transport through
`broker_transport` when BROKER_URL is the embedded `filesystem://` (app/celery_app.py).
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

PARTIAL_SUFFIX = ".part"  # consumers take only names ending in `.<queue>.msg`


class Channel(filesystem.Channel):
    # kombu's own two bases disagree on this signature (queue, message) / (queue, payload, **kwargs).
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Write `payload` as `<ms>_<uuid>.<queue>.msg` in the outgoing folder, whole (kombu's naming, so
        the consumers' order by name is kombu's). Raises ChannelError when the folder cannot be written."""
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + PARTIAL_SUFFIX
        try:
            with open(partial, "wb") as file:
                file.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
