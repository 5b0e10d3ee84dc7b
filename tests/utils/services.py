"""Helpers for the real services the tests use."""

from __future__ import annotations

import redis
from sqlalchemy import create_engine, text


def create_database(server_url: str, name: str) -> None:
    engine = create_engine(f"{server_url}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()


def drop_database(server_url: str, name: str) -> None:
    engine = create_engine(f"{server_url}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def flush_redis(server_url: str, *databases: int) -> None:
    for number in databases:
        client = redis.Redis.from_url(f"{server_url}/{number}")
        client.flushdb()
        client.close()
