"""Fault injection for resilience tests and chaos drills. Off unless FAULT_PLAN_FILE is set.

The plan is a small JSON file, re-read on every check so a running worker can be
told to misbehave and to recover without a restart:

    {"storage.get": {"fail_first": 2}, "db.write_counts": {"rate": 0.1, "seed": 7},
     "ml.count_region": {"delay": 2.0}}

`fail_first` fails the first N calls per key in this process, `rate` fails calls at
random, `delay` sleeps first; `keys` limits a rule to those keys (e.g. "<photo_id>:<region>").
Each failure raises the transient error of that point. Ignored in production.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from app.config import get_settings
from app.errors import DatabaseUnavailable, StorageUnavailable, TransientError

ERRORS: dict[str, type[TransientError]] = {"storage": StorageUnavailable, "db": DatabaseUnavailable}
_calls: Counter[tuple[str, str]] = Counter()
_random: dict[str, random.Random] = {}


def _plan() -> dict[str, Any]:
    settings = get_settings()
    if not settings.fault_plan_file or settings.environment == "production":
        return {}
    try:
        return dict(json.loads(Path(settings.fault_plan_file).read_text() or "{}"))
    except (OSError, ValueError):
        return {}


def inject(point: str, key: str = "") -> None:
    """Raise (or delay) here if the current plan says so."""
    rule = _plan().get(point)
    if not rule or ("keys" in rule and key not in rule["keys"]):
        return
    if rule.get("delay"):
        time.sleep(float(rule["delay"]))
    error = ERRORS.get(point.split(".")[0], TransientError)
    _calls[(point, key)] += 1
    if rule.get("fail_first") and _calls[(point, key)] <= int(rule["fail_first"]):
        raise error(f"injected fault at {point} (call {_calls[(point, key)]} for {key!r})")
    if rule.get("rate"):
        rng = _random.setdefault(point, random.Random(rule.get("seed")))
        if rng.random() < float(rule["rate"]):
            raise error(f"injected fault at {point} (random, rate {rule['rate']})")
