"""The outage schedule: capped exponential backoff until a deadline (no service needed)."""

from __future__ import annotations

from app.tasks.base import outage_countdown


def _schedule(deadline: int, maximum: int = 30) -> list[int]:
    """The countdowns of an outage that never ends, as a task sees them one retry after the other."""
    waited, delays = 0.0, list[int]()
    while (countdown := outage_countdown(waited=waited, attempt=len(delays), deadline=deadline, factor=2,
                                         maximum=maximum, jitter=False)) is not None:
        delays.append(countdown)
        waited += countdown
    return delays


def test_outages_back_off_to_the_cap_and_stop_at_the_deadline() -> None:
    delays = _schedule(deadline=900)
    assert delays[:6] == [2, 4, 8, 16, 30, 30]
    assert max(delays) == 30
    assert 900 <= sum(delays) < 900 + 30  # tried until the deadline, not a retry count
    assert _schedule(deadline=0) == []


def test_jitter_stays_under_the_cap() -> None:
    draws = {outage_countdown(waited=0, attempt=9, deadline=900, factor=2, maximum=30, jitter=True)
             for _ in range(200)}
    assert all(d is not None and 0 <= d <= 30 for d in draws) and len(draws) > 5
