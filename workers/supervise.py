"""A small supervisor for local runs: restart a worker that exits, stop it on SIGTERM.

    python -m workers.supervise python -m workers.gpu

In production docker compose does this (`restart: unless-stopped`). A worker that
recycles itself exits with code 0 and is restarted at once; one that crashes is
restarted after a growing pause, so a broken worker does not spin.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from types import FrameType

from app.observability.logging import configure_from_settings, get_logger

log = get_logger("workers.supervise")


class Supervisor:
    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self.restarts = 0

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._forward)
        signal.signal(signal.SIGINT, self._forward)
        crash_pause = 1.0
        while True:
            started = time.monotonic()
            self.child = subprocess.Popen(self.command)
            code = self.child.wait()
            if self.stopping:
                return code
            self.restarts += 1
            if code == 0:
                log.info("worker exited to recycle; restarting", restarts=self.restarts)
                crash_pause = 1.0
                continue
            if time.monotonic() - started > 60:
                crash_pause = 1.0
            log.error("worker crashed; restarting", exit_code=code, restarts=self.restarts, pause_s=crash_pause)
            time.sleep(crash_pause)
            crash_pause = min(crash_pause * 2, 60.0)


def main() -> None:
    configure_from_settings()
    command = sys.argv[1:]
    if not command:
        sys.exit("usage: python -m workers.supervise COMMAND...")
    sys.exit(Supervisor(command).run())


if __name__ == "__main__":
    main()
