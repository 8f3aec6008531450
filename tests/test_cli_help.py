"""Every option of every mxflow command says what it does, and the defaults it states are
the ones it has.  The commands are whatever src/mxflow/cli.py registers, so a new command
is checked as soon as it is added."""

from __future__ import annotations

import argparse
import re

import pytest

from mxflow import cli
from mxflow.model import MergeOptions


def command_parser(command: str) -> argparse.ArgumentParser:
    parser = cli.build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert command in sub.choices, f"'{command}' is in COMMANDS but not registered (SUMMARIES)"
    return sub.choices[command]


def options(command: str) -> list[argparse.Action]:
    """The command's arguments, -h left out; hidden developer options (help=SUPPRESS)
    are hidden on purpose and left out too."""
    return [
        a
        for a in command_parser(command)._actions
        if not isinstance(a, argparse._HelpAction) and a.help != argparse.SUPPRESS
    ]


def label(action: argparse.Action) -> str:
    return "/".join(action.option_strings) or action.dest


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_option_has_a_help_text(command):
    missing = [label(a) for a in options(command) if not (a.help or "").strip()]
    assert not missing, f"mxflow {command}: options without a help text: {missing}"
    assert cli.SUMMARIES.get(command), f"mxflow {command} has no one-line summary"


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_stated_defaults_are_the_defaults(command):
    """A help text that says "default: N" has N as the option's default."""
    wrong = []
    for a in options(command):
        m = re.search(r"default:?\s*(-?[0-9][0-9.e+-]*)", a.help or "")
        numeric = isinstance(a.default, int | float) and not isinstance(a.default, bool)
        if m and numeric and float(m.group(1).rstrip(".")) != float(a.default):
            wrong.append(f"{label(a)}: help says {m.group(1)}, default is {a.default}")
    assert not wrong, f"mxflow {command}: {wrong}"


def test_merge_cc_half_help_names_the_real_default():
    """The issue: --cc-half said 0.3 was the default, but it is MergeOptions' 0.5."""
    (cc,) = [a for a in options("merge") if "--cc-half" in a.option_strings]
    target = MergeOptions().cc_half_target
    assert cc.default == target
    assert f"default: {target:g}" in cc.help


def test_report_help_names_paths_that_exist():
    """`mxflow report --help` named OUT/merge_*/report.html, which `mxflow run` never writes
    (its merges are OUT/merge/<sample>/merge_*/): the help names where they are."""
    text = command_parser("report").format_help()
    assert "OUT/merge/<sample>/merge_*/" in text
    assert "OUT/merge_*/report.html" not in text
