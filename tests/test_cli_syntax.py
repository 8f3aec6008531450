"""One unit-cell syntax and one raster-grid syntax in every command (issue 16, item 6).

Every option that takes a cell reads ``a,b,c,al,be,ga`` and the older quoted
``'a b c al be ga'`` as the same cell and shows ``a,b,c,al,be,ga`` in its --help;
every option that takes a raster grid reads ``ROWS,COLS`` (rows first, as
SimulationConfig.raster_grid) and the older ``COLSxROWS`` as the same grid and
shows ``ROWS,COLS``.  The sample sheet reads the cell in the same forms.
"""

from __future__ import annotations

import argparse

import pytest

from mxflow.cli import COMMANDS, build_parser
from mxflow.discover.collection import read_sample_sheet
from mxflow.util.args import GRID_METAVAR, UNIT_CELL_METAVAR, parse_grid

CELL = (78.0, 78.0, 37.0, 90.0, 90.0, 90.0)


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def _options(dests: set[str]) -> dict[str, argparse.Action]:
    """command -> its action for one of ``dests``, for every registered command."""
    found = {}
    for command in COMMANDS:
        for action in _subparser(command)._actions:
            if action.dest in dests:
                found[command] = action
    return found


def _parse(command: str, option: str, value: str) -> argparse.Namespace:
    """Parse ``command ... option value`` with placeholders for what the command requires."""
    argv = [command]
    for action in _subparser(command)._actions:
        if not action.option_strings and action.dest != "help":
            argv.append("x")  # a positional (PATH, ROOT, OUT ...)
        elif action.required:
            argv += [action.option_strings[0], "x"]
    return build_parser(command).parse_args([*argv, option, value])


def test_every_cell_option_reads_both_forms_and_shows_one():
    options = _options({"unit_cell"})
    assert set(options) == {"process", "simulate", "run", "watch"}
    for command, action in options.items():
        assert action.metavar == UNIT_CELL_METAVAR, command
        assert UNIT_CELL_METAVAR in _subparser(command).format_help(), command
        option = action.option_strings[0]
        new = _parse(command, option, "78,78,37,90,90,90").unit_cell
        old = _parse(command, option, "78 78 37 90 90 90").unit_cell
        assert new == old == CELL, command


def test_every_grid_option_reads_both_forms_and_shows_one():
    options = _options({"raster", "grid"})
    assert set(options) == {"simulate", "hitmap"}
    for command, action in options.items():
        assert action.metavar == GRID_METAVAR, command
        help_text = _subparser(command).format_help()
        assert GRID_METAVAR in help_text and "COLSxROWS" in help_text, command  # old form named
        option = action.option_strings[0]
        new = getattr(_parse(command, option, "3,4"), action.dest)
        old = getattr(_parse(command, option, "4x3"), action.dest)
        assert new == old == (3, 4), command  # 3 rows of 4 frames


def test_grid_syntax():
    assert parse_grid("10,20") == (10, 20)
    assert parse_grid("20x10") == parse_grid("20×10") == (10, 20)  # old COLSxROWS
    for bad in ("10", "10,20,30", "0,4", "ax3", "20by10"):
        with pytest.raises(ValueError, match="raster grid"):
            parse_grid(bad)


def test_hitmap_passes_columns_and_rows_in_its_own_order(monkeypatch, tmp_path):
    import mxflow.hitmap.cli as hitmap_cli

    seen = {}

    def fake_hitmap(paths, workdir, grid=None, **kw):
        seen["grid"] = grid
        return {"frames": [], "errors": [], "timing": {"wall_s": 0.0, "frames_per_s": 0.0}}

    monkeypatch.setattr(hitmap_cli, "hitmap", fake_hitmap)
    for value in ("3,4", "4x3"):
        args = build_parser("hitmap").parse_args(
            ["hitmap", str(tmp_path), "--workdir", str(tmp_path), "--grid", value]
        )
        hitmap_cli.run(args)
        assert seen["grid"] == (4, 3)  # hitmap() takes (cols, rows)


def test_sample_sheet_reads_the_cell_in_every_form(tmp_path):
    sheet = tmp_path / "s.csv"
    sheet.write_text(
        "puck,pin,name,unit_cell\n"
        'CPS1,1,a,"78,78,37,90,90,90"\n'
        "CPS1,2,b,78 78 37 90 90 90\n"
        "CPS1,3,c,78,78,37,90,90,90\n"  # unquoted: six fields
    )
    assert [e.unit_cell for e in read_sample_sheet(sheet)] == [CELL, CELL, CELL]
    sheet.write_text("puck,unit_cell,pin,name\nCPS1,78,78,37,90,90,90,4,d\n")
    (entry,) = read_sample_sheet(sheet)
    assert (entry.unit_cell, entry.pin, entry.name) == (CELL, "CPS1-4", "d")
