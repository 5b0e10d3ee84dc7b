"""Helpers for the real services the tests use."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


def rabbitmqctl(*args: str) -> str:
    """Run `rabbitmqctl` (root on the test machine, or a member of the rabbitmq group); its stdout."""
    done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def create_vhost(name: str, user: str = "guest") -> None:
    """A fresh RabbitMQ virtual host `name` that `user` may use fully (an old one is deleted first)."""
    delete_vhost(name)
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*")


def delete_vhost(name: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], capture_output=True, timeout=60)


def empty_vhost(broker_url: str, queues: list[str]) -> None:
    """Delete `queues` and Celery's delayed-delivery queues in the vhost of `broker_url`, so the next test
    starts empty and declares them with its own arguments (faster than a new vhost with rabbitmqctl)."""
    from kombu import Connection

    delayed = [f"celery_delayed_{level}" for level in range(28)]
    with Connection(broker_url) as connection:
        for name in [*queues, *delayed]:
            channel = connection.channel()
            try:
                channel.queue_delete(name)
            finally:
                channel.close()


def amqp_queue_messages(vhost: str, queue: str) -> int:
    """Messages in `queue` of `vhost`, ready or delivered but not yet acknowledged (0 when it does not exist)."""
    for line in rabbitmqctl("list_queues", "-p", vhost, "name", "messages").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == queue:
            return int(parts[1])
    return 0


@contextmanager
def rabbitmq_memory_alarm(timeout: float = 15.0) -> Iterator[None]:
    """Raise a memory alarm on the whole RabbitMQ node (it blocks every publishing connection), and restore
    the node's watermark on the way out, whatever happens. Keep the block short: other users share the node."""
    previous = rabbitmqctl("eval", "vm_memory_monitor:get_vm_memory_high_watermark().").strip()
    try:
        rabbitmqctl("set_vm_memory_high_watermark", "0.0000001")
        deadline = time.monotonic() + timeout
        while "memory" not in rabbitmqctl("eval", "rabbit_alarm:get_alarms()."):
            if time.monotonic() > deadline:
                raise TimeoutError("RabbitMQ raised no memory alarm")
            time.sleep(0.2)
        yield
    finally:
        if previous.startswith("{absolute,"):
            rabbitmqctl("set_vm_memory_high_watermark", "absolute", previous.strip("{}").split(",")[1])
        else:
            rabbitmqctl("set_vm_memory_high_watermark", previous or "0.4")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server of a test's own on loopback, which the test may crash or shut down and restart.

    `persistent=True` keeps an append-only file in `folder` (a clean shutdown and restart keeps the
    queued messages); otherwise nothing is ever written and a restart starts empty.
    """

    def __init__(self, folder: Path, *, persistent: bool) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(folder),
                        "--save", "", "--appendonly", "yes" if persistent else "no"]
        self.process = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL)
        for _ in range(50):
            if subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        return process

    def restart(self, down_for: float, *, crash: bool) -> None:
        """Stop (SIGKILL when `crash`, else a clean SHUTDOWN), stay down `down_for` seconds, start again."""
        if crash:
            self.process.kill()
        else:
            subprocess.run(["redis-cli", "-p", str(self.port), "shutdown"], capture_output=True)
        self.process.wait(timeout=10)
        time.sleep(down_for)
        self.process = self._start()

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
