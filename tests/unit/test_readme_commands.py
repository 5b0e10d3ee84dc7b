"""Every `demeter` command line in the README's and docs/operations.md's code blocks is one the command accepts."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from app.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", ROOT / "docs" / "operations.md"]


def command_lines(text: str) -> list[str]:
    """The `demeter ...` commands inside fenced code blocks, split at `&&`, `|` and `;`."""
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.DOTALL)
    commands = []
    for line in "\n".join(blocks).splitlines():
        line = line.split(" #", 1)[0]
        for part in re.split(r"&&|\||;", line):
            words = part.strip()
            if words.startswith("demeter "):
                commands.append(words)
    return commands


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_documented_command_lines_parse(document: Path) -> None:
    commands = command_lines(document.read_text())
    assert commands, f"no demeter command line in {document.name}"
    for command in commands:
        try:
            build_parser().parse_args(shlex.split(command)[1:])
        except SystemExit as exc:
            raise AssertionError(f"{document.name}: `{command}` is refused by the parser") from exc
