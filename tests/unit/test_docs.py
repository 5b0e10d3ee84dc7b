"""The README documents every setting the code reads, and the commands it promises exist."""

from __future__ import annotations

import re
from pathlib import Path

from app.cli import build_parser
from app.config import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented_in_the_readme() -> None:
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", README))
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in documented]
    assert missing == []


def test_the_readme_quick_start_scripts_exist_and_ci_runs_the_test_command() -> None:
    for script in ("scripts/demo.sh", "scripts/test.sh"):
        assert f"./{script}" in README
        assert (ROOT / script).stat().st_mode & 0o111
    assert "./scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_every_cli_command_in_the_readme_exists() -> None:
    subcommands = build_parser()._subparsers._group_actions[0]  # type: ignore[union-attr]
    commands = set(subcommands.choices or ())
    mentioned = set(re.findall(r"`demeter ([a-z][a-z-]*)", README))
    assert mentioned <= commands, mentioned - commands
