"""The README's command table lists every registered command (issue 16, item 6)."""

from __future__ import annotations

import re
from pathlib import Path

from mxflow.cli import COMMANDS

README = Path(__file__).resolve().parents[1] / "README.md"


def _table_commands() -> set[str]:
    """Commands named (``mxflow NAME``) in the first column of the table under ## Commands."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Commands", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            first = line.split("|")[1]
            names.update(re.findall(r"mxflow ([a-z]+)", first))
    return names


def test_every_registered_command_is_in_the_readme_table():
    missing = sorted(set(COMMANDS) - _table_commands())
    assert not missing, f"README's command table omits: {missing}"


def test_readme_gives_the_demo_run_time_on_two_cores():
    text = README.read_text(encoding="utf-8")
    assert re.search(r"about \d+ minutes on 2 idle cores \(measured \d+ min \d+ s", text)
