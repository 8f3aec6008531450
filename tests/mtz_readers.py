"""Reading an MTZ the way users' other programs do: cctbx/iotbx (Debian's python3-cctbx).

mxflow never imports cctbx; the second reader runs in DIALS's own Python
(``/usr/bin/python3`` with Debian's DIALS) as a separate process and
reports what it read as JSON.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

_SCRIPT = r"""
import json, sys
import iotbx.mtz
o = iotbx.mtz.object(sys.argv[1])
cols = [c.label() for c in o.columns()]
out = {
    "space_group": str(o.space_group_info().type().lookup_symbol()),
    "cell": list(o.crystals()[-1].unit_cell().parameters()),
    "columns": cols,
    "n_refl": o.n_reflections(),
}
if "FreeR_flag" in cols:
    flags = o.get_column("FreeR_flag").extract_values()
    out["free_values"] = sorted(set(int(x) for x in flags))
    out["n_free"] = sum(1 for x in flags if int(x) == 0)
print(json.dumps(out))
"""


def cctbx_python() -> str | None:
    """A Python that has iotbx (DIALS's), or None."""
    for exe in ("/usr/bin/python3", shutil.which("dials.python")):
        if exe and Path(exe).exists():
            ok = subprocess.run([exe, "-c", "import iotbx.mtz"], capture_output=True)
            if ok.returncode == 0:
                return exe
    return None


def _run(script: str, path: Path) -> dict:
    """Run ``script`` on ``path`` in a Python that has cctbx; its JSON answer."""
    exe = cctbx_python()
    if exe is None:
        pytest.skip("no Python with cctbx/iotbx (Debian's python3-cctbx)")
    done = subprocess.run([exe, "-c", script, str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def read_with_cctbx(path: Path) -> dict:
    """What iotbx.mtz reads from ``path``: space group, cell, columns, free-set values."""
    return _run(_SCRIPT, path)


_CIF_SCRIPT = r"""
import json, sys
import iotbx.cif
arrays = iotbx.cif.reader(file_path=sys.argv[1]).build_miller_arrays()
block = next(iter(arrays.values()))
a = next(iter(block.values()))
print(json.dumps({"n": a.size(), "space_group": str(a.space_group_info()),
                  "cell": list(a.unit_cell().parameters())}))
"""


def read_cif_with_cctbx(path: Path) -> dict:
    """What iotbx.cif reads from an unmerged mmCIF: observations, space group, cell."""
    return _run(_CIF_SCRIPT, path)
