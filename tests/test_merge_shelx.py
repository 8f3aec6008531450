"""SHELX HKLF 4 files from merged MTZ files (merge.shelx, #13 item 5)."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import gemmi
import numpy as np
import pytest

from mtz_readers import cctbx_python
from mxflow.errors import BadInputError
from mxflow.merge.shelx import F82_MAX, F82_MIN, is_f82, read_hklf4, write_hklf4

NAN = math.nan
# h k l, I(+) SIGI(+) I(-) SIGI(-), IMEAN SIGIMEAN  (P 21 21 21: 0kl, h0l, hk0 are centric)
ROWS = [
    (1, 2, 3, 100.0, 5.0, 80.0, 4.0, 90.0, 3.2),
    (0, 2, 3, 50.0, 2.0, 50.0, 2.0, 50.0, 2.0),  # centric: I(+) only
    (2, 3, 4, NAN, NAN, 30.0, 3.0, 30.0, 3.0),  # I(+) not measured
    (1, 1, 1, -5.5, 1.5, NAN, NAN, -5.5, 1.5),  # I(-) not measured
    (3, 1, 2, 7.0, 0.0, 6.0, 1.0, 6.5, 0.7),  # σ(+) = 0: left out
]


def _mtz(path: Path, rows, anomalous: bool = True, mean: bool = True) -> Path:
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup("P 21 21 21")
    mtz.set_cell_for_all(gemmi.UnitCell(40, 50, 60, 90, 90, 90))
    mtz.add_dataset("x").wavelength = 1.282
    cols = [0, 1, 2]
    if anomalous:
        for label, kind in zip(("I(+)", "SIGI(+)", "I(-)", "SIGI(-)"), "KMKM", strict=True):
            mtz.add_column(label, kind)
        cols += [3, 4, 5, 6]
    if mean:
        mtz.add_column("IMEAN", "J")
        mtz.add_column("SIGIMEAN", "Q")
        cols += [7, 8]
    mtz.set_data(np.array(rows, dtype=np.float32)[:, cols])
    mtz.write_to_file(str(path))
    return path


def test_anomalous_mtz_gives_one_line_per_measured_bijvoet_mate(tmp_path):
    n = write_hklf4(_mtz(tmp_path / "m.mtz", ROWS), tmp_path / "m.hkl")
    assert (tmp_path / "m.hkl").read_text() == (
        "   1   2   3  100.00    5.00\n"
        "  -1  -2  -3   80.00    4.00\n"
        "   0   2   3   50.00    2.00\n"
        "  -2  -3  -4   30.00    3.00\n"
        "   1   1   1   -5.50    1.50\n"
        "  -3  -1  -2    6.00    1.00\n"
        "   0   0   0    0.00    0.00\n"
    )
    assert n == 6


def test_without_anomalous_columns_imean_is_written(tmp_path):
    n = write_hklf4(_mtz(tmp_path / "m.mtz", ROWS, anomalous=False), tmp_path / "m.hkl")
    lines = (tmp_path / "m.hkl").read_text().splitlines()
    assert lines[0] == "   1   2   3   90.00    3.20"
    assert lines[-1] == "   0   0   0    0.00    0.00"
    assert n == len(ROWS) == len(lines) - 1


def test_no_intensity_columns_is_a_clear_error(tmp_path):
    path = _mtz(tmp_path / "m.mtz", ROWS, anomalous=False, mean=False)
    with pytest.raises(BadInputError, match="no I\\(\\+\\)/SIGI\\(\\+\\)/I\\(-\\)/SIGI\\(-\\)"):
        write_hklf4(path, tmp_path / "m.hkl")
    assert not (tmp_path / "m.hkl").exists()


@pytest.mark.parametrize(
    "big,limit",
    [(250000.0, F82_MAX), (-20000.0, F82_MIN)],
)
def test_intensities_scaled_down_to_fit_f82(tmp_path, big, limit):
    rows = [(1, 2, 3, big, 50.0, 100.0, 10.0, 0.0, 1.0), *ROWS[1:3]]
    write_hklf4(_mtz(tmp_path / "m.mtz", rows), tmp_path / "m.hkl")
    text = (tmp_path / "m.hkl").read_text()
    assert all(len(line) == 28 for line in text.splitlines())
    back = read_hklf4(tmp_path / "m.hkl")
    scale = limit / big
    assert back.i[0] == pytest.approx(limit, abs=0.01)
    # one factor for every intensity and σ
    assert back.sigma[0] == pytest.approx(50.0 * scale, abs=0.006)
    assert back.i[1] == pytest.approx(100.0 * scale, abs=0.006)
    assert back.i[2] == pytest.approx(50.0 * scale, abs=0.006)  # the centric one
    assert back.i[3] == pytest.approx(30.0 * scale, abs=0.006)
    assert text.endswith("   0   0   0    0.00    0.00\n")


def test_small_intensities_are_not_scaled_up(tmp_path):
    rows = [(1, 2, 3, 0.5, 0.1, 0.25, 0.1, 0.4, 0.07)]
    write_hklf4(_mtz(tmp_path / "m.mtz", rows), tmp_path / "m.hkl")
    assert read_hklf4(tmp_path / "m.hkl").i.tolist() == [0.5, 0.25]


def _random_rows(n: int, seed: int = 3):
    rng = np.random.default_rng(seed)
    hkl = np.array(gemmi.make_miller_array(gemmi.UnitCell(40, 50, 60, 90, 90, 90),
                                           gemmi.SpaceGroup("P 21 21 21"), 4.0))  # fmt: skip
    hkl = hkl[rng.choice(len(hkl), n, replace=False)]
    ip, im = rng.gamma(1.0, 3000.0, n), rng.gamma(1.0, 3000.0, n)
    sp, sm = np.sqrt(ip) + 1, np.sqrt(im) + 1
    return [
        (*h, a, b, c, d, (a + c) / 2, 1.0)
        for h, a, b, c, d in zip(hkl, ip, sp, im, sm, strict=True)
    ]


def test_reading_back_recovers_the_values(tmp_path):
    rows = _random_rows(200)
    n = write_hklf4(_mtz(tmp_path / "m.mtz", rows), tmp_path / "m.hkl")
    back = read_hklf4(tmp_path / "m.hkl")
    got = {tuple(h): (i, s) for h, i, s in zip(back.hkl.tolist(), back.i, back.sigma, strict=True)}
    assert len(got) == n == len(back.i)
    ops = gemmi.SpaceGroup("P 21 21 21").operations()
    for h, k, l, ip, sp, im, sm, *_ in rows:  # noqa: E741
        assert got[(h, k, l)] == pytest.approx((ip, sp), abs=0.006)
        if ops.is_reflection_centric([h, k, l]):
            assert (-h, -k, -l) not in got
        else:
            assert got[(-h, -k, -l)] == pytest.approx((im, sm), abs=0.006)
    assert all(is_f82(v) for v in [*back.i, *back.sigma])


def test_cctbx_reads_the_file_as_shelx_does(tmp_path):
    """An independent HKLF 4 reader (iotbx, in DIALS's Python) finds the same reflections."""
    exe = cctbx_python()
    if exe is None:
        pytest.skip("no Python with cctbx/iotbx")
    rows = _random_rows(50, seed=5)
    write_hklf4(_mtz(tmp_path / "m.mtz", rows), tmp_path / "m.hkl")
    script = (
        "import json, sys\n"
        "from iotbx.reflection_file_reader import any_reflection_file\n"
        "a = any_reflection_file(sys.argv[1] + '=hklf4').as_miller_arrays()[0]\n"
        "print(json.dumps([[list(h), d, s] for h, d, s in zip(a.indices(), a.data(), a.sigmas())]))\n"
    )
    done = subprocess.run(
        [exe, "-c", script, str(tmp_path / "m.hkl")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    theirs = {tuple(h): (d, s) for h, d, s in json.loads(done.stdout)}
    ours = read_hklf4(tmp_path / "m.hkl")
    assert set(theirs) == {tuple(h) for h in ours.hkl.tolist()}
    for h, i, s in zip(ours.hkl.tolist(), ours.i, ours.sigma, strict=True):
        assert theirs[tuple(h)] == pytest.approx((i, s), abs=1e-6)
