"""The embedded broker's messages appear whole: a worker never takes a file that is still being written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from app import embedded_broker
from app.celery_app import celery_config
from app.config import Settings


def _connection(folder: Path) -> Connection:
    return Connection("filesystem://", transport=embedded_broker.Transport, transport_options={
        "data_folder_in": str(folder), "data_folder_out": str(folder), "control_folder": str(folder / "control")})


def test_a_message_has_no_name_a_worker_takes_until_it_is_written_whole(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    seen_while_writing: list[list[str]] = []
    dumps = embedded_broker.dumps

    def dumps_and_look(payload: Any) -> str:
        seen_while_writing.append([name for name in os.listdir(tmp_path) if name.endswith(".cpu.msg")])
        return str(dumps(payload))

    with _connection(tmp_path) as connection:
        queue = connection.SimpleQueue("cpu")
        monkeypatch.setattr(embedded_broker, "dumps", dumps_and_look)
        queue.put({"photo_id": 7})
        monkeypatch.undo()
        message = queue.get(timeout=5)
        message.ack()
        queue.close()

    # kombu's own _put shows the empty file under its final name here.
    assert seen_while_writing and all(names == [] for names in seen_while_writing), seen_while_writing
    assert message.payload == {"photo_id": 7}
    assert [name for name in os.listdir(tmp_path) if name.endswith(embedded_broker.PARTIAL_SUFFIX)] == []


def test_celery_uses_it_for_the_embedded_broker_only(tmp_path: Path) -> None:
    embedded = celery_config(Settings(data_dir=tmp_path, broker_url=""))
    redis = celery_config(Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:6379/0"))

    assert embedded["broker_transport"] == "app.embedded_broker:Transport"
    assert redis["broker_transport"] is None
