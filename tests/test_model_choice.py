"""Workers load the chosen detector when they start, and again after recycling (`demeter models use`)."""

from __future__ import annotations

import sys
from pathlib import Path

from app.config import Settings
from app.ml import catalog
from tests.utils.logs import wait_for_lines
from tests.utils.processes import IsolatedBroker
from tests.utils.trained import trained_model

PROCESS_INFO = "app.tasks.maintenance.process_info"


def test_a_recycled_worker_loads_the_newly_chosen_model(isolated_broker: IsolatedBroker, tmp_path: Path) -> None:
    trained = tmp_path / "trained"
    weights = trained_model(trained, "bench-a", threshold=0.3)
    settings = Settings(trained_models_dir=trained)
    catalog.use_model(settings, "bench-a")
    workers = isolated_broker.workers
    workers.start("gpu", ["-m", "workers.supervise", sys.executable, "-m", "workers.gpu"],
                  env={"GPU_MAX_TASKS_PER_CHILD": "1", "TRAINED_MODELS_DIR": str(trained),
                       "DETECTION_RUNTIME": "torch"})
    isolated_broker.wait_ready(["gpu0"])

    isolated_broker.send(PROCESS_INFO, "gpu_queue_0").get(timeout=120)
    catalog.use_model(settings, catalog.SHIPPED)  # while the first worker process is recycling
    isolated_broker.send(PROCESS_INFO, "gpu_queue_0").get(timeout=240)

    loaded = wait_for_lines(lambda: workers.logs("gpu"),
                            lambda line: line.get("event") == "models loaded and warmed up", count=2, timeout=60)
    assert (loaded[0]["detection_weights"], loaded[0]["detection_confidence"]) == (str(weights), 0.3)
    assert (loaded[1]["detection_weights"], loaded[1]["detection_confidence"]) == (Settings().detection_weights, 0.35)
