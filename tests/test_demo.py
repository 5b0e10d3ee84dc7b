"""The embedded default: `demeter demo` on a machine with no server, and no network either."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.utils.processes import PROJECT_ROOT

GUARD = Path(__file__).parent / "utils" / "netguard"
CONNECTION_VARIABLES = ("DATABASE_URL", "BROKER_URL", "RESULT_BACKEND", "STORAGE_BACKEND")


def test_demo_counts_photos_on_the_embedded_default_without_network(tmp_path: Path) -> None:
    attempts = tmp_path / "network-attempts.log"
    env = {k: v for k, v in os.environ.items() if k not in CONNECTION_VARIABLES}
    env.update({
        "DATA_DIR": str(tmp_path / "demo"),
        "PYTHONPATH": os.pathsep.join([str(GUARD), str(PROJECT_ROOT)]),
        "NETGUARD_LOG": str(attempts),
        "YOLO_CONFIG_DIR": str(tmp_path / "ultralytics"),  # a fresh one: no font or settings cached
    })

    done = subprocess.run([sys.executable, "-m", "app", "demo", "--photos", "2", "--json"], env=env,
                          capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT)

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["all_completed"] is True
    assert len(report["photos"]) == 2
    for photo in report["photos"]:
        assert photo["status"] == "completed"
        assert photo["doubts"] == []
        assert photo["model_cards"]["detection"].startswith("plant_det@")  # provenance
        assert photo["model_cards"]["segmentation"].startswith("container_seg@")
        assert photo["regions"] >= 1
        assert abs(photo["counted"] - photo["true_count"]) <= 0.08 * photo["true_count"]
    # SQLite and the filesystem broker were used, under DATA_DIR: no server was needed.
    assert (tmp_path / "demo" / "demeter.sqlite3").exists()
    assert (tmp_path / "demo" / "broker" / "messages").is_dir()
    # And no process of the run (CLI, workers, ultralytics inside them) tried to reach the network.
    assert not attempts.exists() or attempts.read_text() == "", attempts.read_text()


def test_the_network_guard_catches_ultralytics_when_it_is_not_told_to_stay_offline(tmp_path: Path) -> None:
    """The check above can fail: plain `import ultralytics` probes DNS, and the guard sees it."""
    attempts = tmp_path / "network-attempts.log"
    env = {**os.environ, "PYTHONPATH": str(GUARD), "NETGUARD_LOG": str(attempts),
           "YOLO_CONFIG_DIR": str(tmp_path / "ultralytics")}
    env.pop("YOLO_OFFLINE", None)

    subprocess.run([sys.executable, "-c", "import ultralytics"], env=env, timeout=120, check=True)

    assert "getaddrinfo" in attempts.read_text()


def test_process_reports_a_bad_photo_as_one_failed_row_and_counts_the_others(tmp_path: Path) -> None:
    from tests.utils.photos import synthetic_jpeg

    good, bad = tmp_path / "good.jpg", tmp_path / "bad.jpg"
    good.write_bytes(synthetic_jpeg(9590, width=1024, height=768))
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    env = {k: v for k, v in os.environ.items() if k not in CONNECTION_VARIABLES}
    env.update({"DATA_DIR": str(tmp_path / "process"), "PYTHONPATH": str(PROJECT_ROOT)})

    done = subprocess.run([sys.executable, "-m", "app", "process", str(good), str(bad), "--json"], env=env,
                          capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT)

    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-3000:]  # not all completed
    assert "Traceback" not in done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)["photos"]}
    assert rows["good.jpg"]["status"] == "completed"
    assert rows["bad.jpg"]["status"] == "failed" and rows["bad.jpg"]["error"].startswith("InvalidImage")
