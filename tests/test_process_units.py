"""mxflow.process pieces that need no DIALS: preflight checks, names, summary table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mxflow.errors import BadInputError
from mxflow.images.write_cbf import write_minicbf
from mxflow.model import Dataset, DatasetResult, ImageSweep, MergingStats, ShellStats, StepRecord
from mxflow.process.cli import dataset_name, datasets_from_sweeps, relative_to_out, summary_table
from mxflow.process.pipeline import process_dataset
from mxflow.process.preflight import check_cbf_complete, check_frames
from process_fixtures import header, truncate


def make_sweep(directory: Path, n: int = 4, missing: list[int] | None = None) -> ImageSweep:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(1, n + 1):
        data = rng.poisson(2.0, size=(40, 30)).astype(np.int32)
        write_minicbf(directory / f"x_{i:04d}.cbf", data, header(float(i - 1)))
    return ImageSweep(
        template=str(directory / "x_####.cbf"),
        format="cbf",
        first=1,
        last=n,
        wavelength=1.0,
        distance=100.0,
        beam_center=(15.0, 20.0),
        pixel_size=(0.172, 0.172),
        image_size=(30, 40),
        osc_start=0.0,
        osc_width=1.0,
        missing=missing or [],
    )


def test_preflight_good_truncated_missing(tmp_path):
    sweep = make_sweep(tmp_path / "d")
    ds = Dataset(name="x", sweep=sweep)
    assert len(check_frames(ds)) == 4
    check_cbf_complete(tmp_path / "d" / "x_0002.cbf")
    truncate(tmp_path / "d" / "x_0003.cbf", 0.7)
    with pytest.raises(BadInputError, match=r"x_0003\.cbf.*truncated"):
        check_frames(ds)
    # a wedge that avoids the broken frame is fine
    assert len(check_frames(Dataset(name="w", sweep=sweep, wedge=(1, 2)))) == 2
    (tmp_path / "d" / "x_0002.cbf").unlink()
    with pytest.raises(BadInputError, match=r"x_0002\.cbf"):
        check_frames(Dataset(name="w", sweep=sweep, wedge=(1, 2)))
    listed = Dataset(name="m", sweep=make_sweep(tmp_path / "e", missing=[3]))
    with pytest.raises(BadInputError, match=r"x_0003\.cbf.*missing"):
        check_frames(listed)
    other = make_sweep(tmp_path / "f")
    (tmp_path / "f" / "x_0001.cbf").write_text("not an image")
    with pytest.raises(BadInputError, match=r"x_0001\.cbf"):
        check_frames(Dataset(name="n", sweep=other))


def test_process_dataset_never_raises(tmp_path):
    sweep = make_sweep(tmp_path / "d")
    truncate(tmp_path / "d" / "x_0002.cbf", 0.5)
    result = process_dataset(Dataset(name="x", sweep=sweep), tmp_path / "work")
    assert result.status == "failed"
    assert "x_0002.cbf" in result.reason and "truncated" in result.reason
    assert result.wall_s >= 0 and result.steps == []


def test_names_and_table(tmp_path):
    assert dataset_name("/d/th_1_#####.cbf") == "th_1"
    assert dataset_name("/d/sim_01_######.cbf.bz2") == "sim_01"
    assert dataset_name("/d/prot_master.h5") == "prot"
    assert dataset_name("/d/we ird;$x_####.cbf") == "we_ird_x"
    s1 = make_sweep(tmp_path / "a")
    s2 = make_sweep(tmp_path / "b")
    names = [d.name for d in datasets_from_sweeps([s1, s2])]
    assert names == ["x", "x_2"]
    r = DatasetResult(
        name="x",
        path=s1.template,
        status="ok",
        space_group="P 21 21 21",
        unit_cell=[54, 62, 71, 90, 90, 90],
        d_min=1.9,
        stats=MergingStats.one_shell(
            ShellStats(40.0, 1.9, completeness=0.9, multiplicity=3.0, cc_half=0.99, r_meas=0.05)
        ),
        unmerged_mtz="scaled.mtz",
        workdir=".",
        steps=[StepRecord(name="import", command=["dials.import"], log="import.out")],
    )
    out = tmp_path / "OUT"
    entry = relative_to_out(r, out / "x", out)
    assert entry["unmerged_mtz"] == "x/scaled.mtz" and entry["workdir"] == "x"
    assert entry["steps"][0]["log"] == "x/import.out"
    failed = relative_to_out(
        DatasetResult(name="y", path="p", status="failed", reason="indexing failed: no lattice"),
        out / "y",
        out,
    )
    text = summary_table([entry, failed])
    assert "P 21 21 21" in text and "90.0" in text and "reason: indexing failed" in text


def test_sample_sheet_settings_complete_the_command_line():
    """A dataset's sheet values (space group, cell, anomalous) are used unless the command line gives its own."""
    from mxflow.model import ProcessingOptions
    from mxflow.process.pipeline import dataset_options
    from mxflow.schedule.fake import fake_sweep

    sweep = fake_sweep("/d/x_#####.cbf")
    ds = Dataset(
        "x", sweep, "selmet", "multi", anomalous=True, space_group="P 21 21 21",
        unit_cell=(54, 62, 71, 90, 90, 90),
    )  # fmt: skip
    o = dataset_options(ds, ProcessingOptions())
    assert (o.space_group, o.unit_cell, o.anomalous) == (
        "P 21 21 21",
        (54, 62, 71, 90, 90, 90),
        True,
    )
    o = dataset_options(ds, ProcessingOptions(space_group="P 2 2 2", nproc=3))
    assert o.space_group == "P 2 2 2" and o.nproc == 3 and o.anomalous
    plain = Dataset("y", sweep, "s", "single")
    o = dataset_options(plain, ProcessingOptions())
    assert (o.space_group, o.unit_cell, o.anomalous) == (None, None, False)
