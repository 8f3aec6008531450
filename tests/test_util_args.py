"""mxflow.util.args: unit cells and space groups as users type them, and the commands that take them."""

from __future__ import annotations

import argparse

import pytest

from mxflow.cli import main
from mxflow.util.args import (
    canonical_space_group,
    parse_unit_cell,
    space_group_arg,
    unit_cell_arg,
)

TYPO = "P 21 21 2 1x"


@pytest.mark.parametrize(
    "text,want",
    [
        ("P212121", "P 21 21 21"),
        ("p 21 21 21", "P 21 21 21"),
        ("19", "P 21 21 21"),
        ("P 2ac 2ab", "P 21 21 21"),  # Hall symbol
        ("P21", "P 1 21 1"),
        ("C2", "C 1 2 1"),
        ("H3", "R 3"),
        ("R 3:R", "R 3:R"),  # a setting .hm alone would lose
        (" P4 ", "P 4"),
    ],
)
def test_space_group_names(text, want):
    assert canonical_space_group(text) == want
    assert space_group_arg(text) == want


@pytest.mark.parametrize("text", [TYPO, "Q1", "P 7", "0", "231", ""])
def test_unknown_space_group(text):
    with pytest.raises(ValueError, match=f"unknown space group {text!r}"):
        canonical_space_group(text)
    with pytest.raises(argparse.ArgumentTypeError, match=f"unknown space group {text!r}"):
        space_group_arg(text)


@pytest.mark.parametrize(
    "text",
    ["54,62,71,90,90,90", "54 62 71 90 90 90", "(54, 62, 71, 90, 90, 90)", "54;62;71;90;90;90"],
)
def test_unit_cell_spellings(text):
    assert parse_unit_cell(text) == (54.0, 62.0, 71.0, 90.0, 90.0, 90.0)
    assert unit_cell_arg(text) == (54.0, 62.0, 71.0, 90.0, 90.0, 90.0)


@pytest.mark.parametrize(
    "text,message",
    [
        ("54,62,71,90,90", "must be six numbers.*got 5"),
        ("54,62,x,90,90,90", "is not six numbers"),
        ("54,62,-71,90,90,90", "above 0"),
        ("54,62,71,90,90,180", "between 0 and 180"),
        ("nan,62,71,90,90,90", "above 0"),
    ],
)
def test_bad_unit_cells(text, message):
    with pytest.raises(ValueError, match=f"unit cell '{text}' .*{message}"):
        parse_unit_cell(text)
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        unit_cell_arg(text)


def _usage_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["process", "IMAGES", "--workdir", "OUT"],
        ["run", "ROOT", "--workdir", "OUT"],
        ["watch", "ROOT", "--workdir", "OUT"],
        ["simulate", "OUT"],
    ],
    ids=["process", "run", "watch", "simulate"],
)
def test_space_group_typo_is_a_usage_error(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = _usage_error([*argv, "--space-group", TYPO], capsys)
    assert f"argument --space-group: unknown space group '{TYPO}'" in err
    assert list(tmp_path.iterdir()) == []  # nothing was started


@pytest.mark.parametrize(
    "argv",
    [
        ["process", "IMAGES", "--workdir", "OUT"],
        ["run", "ROOT", "--workdir", "OUT"],
        ["simulate", "OUT"],
    ],
    ids=["process", "run", "simulate"],
)
def test_unit_cell_typo_is_a_usage_error(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = _usage_error([*argv, "--unit-cell", "54,62,71,90,90"], capsys)
    assert "argument --unit-cell: unit cell '54,62,71,90,90' must be six numbers" in err
    assert list(tmp_path.iterdir()) == []


def test_process_gets_the_canonical_name():
    from mxflow.cli import build_parser

    args = build_parser("process").parse_args(
        [
            "process",
            "IMAGES",
            "--workdir",
            "OUT",
            "--space-group",
            "19",
            "--unit-cell",
            "1 2 3 90 90 90",
        ]
    )
    assert args.space_group == "P 21 21 21"
    assert args.unit_cell == (1.0, 2.0, 3.0, 90.0, 90.0, 90.0)
