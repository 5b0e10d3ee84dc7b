"""Per-key rate limit on uploads (UPLOAD_RATE_LIMIT), with the `limits` library.

A moving window per API key: "60/minute" lets a key upload 60 photos in any 60 seconds.
Counters live in Redis (the broker's, unless RATE_LIMIT_STORAGE_URL names another), so every
API process shares them; with the embedded filesystem broker, in this process's memory.
If the counter store is unreachable the upload is let through: the limit protects the
workers from one client, it is not a reason to refuse every upload.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from app.config import Settings
from app.observability.logging import get_logger

log = get_logger(__name__)


class UploadRateLimiter:
    def __init__(self, rate: str, storage_url: str) -> None:
        self.item: RateLimitItem = parse(rate)
        options = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0} if storage_url.startswith("redis") else {}
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_url, key_prefix="demeter-upload",
                                                                   **options))

    @classmethod
    def from_settings(cls, settings: Settings) -> UploadRateLimiter | None:
        """None when UPLOAD_RATE_LIMIT is empty (no limit)."""
        if not settings.upload_rate_limit:
            return None
        return cls(settings.upload_rate_limit, settings.rate_limit_storage_url_resolved)

    def wait_seconds(self, key: str) -> int | None:
        """Count one upload of `key`; None if it is allowed, else whole seconds until one more would be."""
        try:
            if self.limiter.hit(self.item, key):
                return None
            reset_at = self.limiter.get_window_stats(self.item, key).reset_time
        except Exception as exc:  # the counter store is away: fail open (see the module's docstring)
            log.warning("rate limit store unavailable; upload let through", error=f"{type(exc).__name__}: {exc}")
            return None
        return max(1, math.ceil(reset_at - time.time()))
