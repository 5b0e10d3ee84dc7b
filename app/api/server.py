"""`demeter api`: uvicorn with the limits an exposed server needs.

uvicorn bounds the idle time between requests (keep-alive) but not the time a client takes
to send a request's head: a client that opens connections and sends a few bytes, or none,
holds each one for ever (measured: still open after 40 s). `HeadTimeoutH11Protocol` closes a
connection whose request head has not fully arrived within API_HEADER_TIMEOUT_SECONDS of the
connection (or of the previous response). h11, not httptools: only h11 bounds the head's size.
"""

from __future__ import annotations

import asyncio

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from app.config import Settings


class HeadTimeoutH11Protocol(H11Protocol):
    head_timeout: float = 10.0  # seconds; set from the settings by serve()

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.DONE:  # a new request starts on a kept-alive connection
            self._arm_head_timer()
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the head has arrived
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_head_timer()  # the next request's head gets its own deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state in (h11.IDLE, h11.DONE) and self.cycle_idle() and not self.transport.is_closing():
            self.transport.close()

    def cycle_idle(self) -> bool:
        """No request of this connection is being answered."""
        return self.cycle is None or self.cycle.response_complete


def serve(settings: Settings, host: str, port: int) -> None:
    """Run the API until interrupted; with API_METRICS_PORT set, /metrics is served on that port (same host,
    no key) from a background thread, and not on the API's port."""
    if settings.api_metrics_port:
        from prometheus_client import start_http_server

        from app.api.routes.metrics import scrape_registry

        start_http_server(settings.api_metrics_port, addr=host,
                          registry=scrape_registry(settings.broker_url_resolved, settings.gpu_queues))
    HeadTimeoutH11Protocol.head_timeout = settings.api_header_timeout_seconds
    uvicorn.run("app.api.main:app", host=host, port=port, log_config=None, http=HeadTimeoutH11Protocol,
                timeout_keep_alive=settings.api_timeout_keep_alive,
                h11_max_incomplete_event_size=settings.api_max_header_bytes,
                limit_concurrency=settings.api_limit_concurrency)
