"""Loaded by every Python process of a test run that puts this folder on PYTHONPATH.

Any attempt to reach a host other than this machine is recorded in NETGUARD_LOG and
refused, so a test can prove that a whole run never touched the network.
"""

import os
import socket
from typing import Any

_LOG = os.environ.get("NETGUARD_LOG")
_LOCAL = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "", None}
_connect = socket.socket.connect
_getaddrinfo = socket.getaddrinfo


def _record(what: str) -> None:
    if _LOG:
        with open(_LOG, "a") as handle:
            handle.write(f"{os.getpid()} {what}\n")


def _is_local(host: object) -> bool:
    return host in _LOCAL or str(host).startswith("127.")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0] if isinstance(address, tuple) else address
        if not _is_local(host):
            _record(f"connect {address!r}")
            raise OSError(f"network access refused in this test: {address!r}")
    return _connect(self, address)


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if not _is_local(host):
        _record(f"getaddrinfo {host!r}")
        raise socket.gaierror(f"name resolution refused in this test: {host!r}")
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign,assignment]
socket.getaddrinfo = _guarded_getaddrinfo
