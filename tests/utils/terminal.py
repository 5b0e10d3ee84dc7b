"""Run a command with a pseudo-terminal as its standard output and error, as a person at a keyboard would."""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path


def run_in_terminal(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 600.0) -> tuple[int, str]:
    """(exit code, everything the command wrote to the terminal) for `argv` run under a pseudo-terminal."""
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env,
                                   cwd=cwd)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the command and its children are done with it
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = process.wait(timeout=timeout)
    finally:
        os.close(leader)
    return code, b"".join(chunks).decode(errors="replace")
