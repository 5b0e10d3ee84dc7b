"""`demeter recount` refuses what it cannot do before it touches the database or the broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.cli import main
from app.config import get_settings


@pytest.fixture
def trained_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("TRAINED_MODELS_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_an_unknown_model_or_no_photos_is_a_usage_error(trained_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recount", "--model", "nope", "0b7c6d1e-0000-4000-8000-000000000000"]) == 2
    assert "no model 'nope'" in capsys.readouterr().err
    assert main(["recount", "--model", "shipped"]) == 2
    assert "--since" in capsys.readouterr().err


def test_since_takes_an_iso_date() -> None:
    with pytest.raises(SystemExit):
        main(["recount", "--model", "shipped", "--since", "last tuesday"])
