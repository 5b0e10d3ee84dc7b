"""The Grafana dashboard in docs/ asks only for metrics the service exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

from app.observability import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"


def _exported_names() -> set[str]:
    names = {sample_name for collector in list(REGISTRY._collector_to_names)  # every sample a metric exposes
             for sample_name in REGISTRY._collector_to_names[collector] if sample_name.startswith("demeter_")}
    return names | {"demeter_queue_depth"}  # collected at scrape time by QueueDepthCollector


def test_every_dashboard_query_uses_exported_metrics() -> None:
    assert metrics.PHOTOS_FINISHED is not None  # the module registers its metrics on import
    panels = json.loads(DASHBOARD.read_text())["panels"]
    used = {name for panel in panels for target in panel["targets"]
            for name in re.findall(r"demeter_[a-z_]+", target["expr"])}
    assert used and used <= _exported_names(), used - _exported_names()
    assert len(panels) >= 7
