"""`pip install .` gives the `app` and `workers` packages, the migrations and the `demeter` command."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _source_copy(destination: Path) -> Path:
    """What the images copy into their builder (setuptools writes build/ and *.egg-info beside the source)."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, destination / name)
    for package in ("app", "workers"):
        shutil.copytree(ROOT / package, destination / package, ignore=shutil.ignore_patterns("__pycache__"))
    return destination


def test_the_wheel_holds_app_workers_migrations_and_the_command(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    source = _source_copy(tmp_path / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("demeter_pipeline-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {"app/cli.py", "workers/gpu.py", "workers/cpu.py", "workers/io.py", "workers/supervise.py",
            "app/db/migrations/versions/0001_initial_schema.py", "app/db/migrations/script.py.mako"} <= set(names)
    assert not any(name.startswith(("tests/", "benchmarks/", "scripts/")) for name in names)
    entry_points = next(name for name in names if name.endswith("entry_points.txt"))
    assert "demeter = app.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    # Installed elsewhere, the worker modules import from any directory (no checkout on the path).
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    code = "import workers.supervise, app.cli; print(workers.supervise.__file__)"
    done = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(target))
