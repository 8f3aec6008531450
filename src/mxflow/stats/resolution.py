"""Resolution decisions from CC½ (the per-dataset cut KAMO makes at CC½ = 0.5).

The fit itself (CC½(s²) = ½[1 − tanh((s² − d0)/r)], binned σ-τ CC½) lives
in :mod:`mxflow.merge.analysis`; this module applies it to one unmerged MTZ.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from mxflow.cluster.intensity import pack_hkl
from mxflow.merge.analysis import estimate_d_min
from mxflow.stats.merging import read_unmerged_mtz


def cc_half_d_min(
    unmerged_mtz: str | Path, target: float = 0.5
) -> tuple[float | None, dict[str, Any]]:
    """d_min (Å) where the fitted CC½ of a scaled unmerged MTZ falls to ``target``.

    Friedel mates are merged (non-anomalous CC½).  Returns (d_min, details);
    d_min is the data limit when CC½ stays above ``target`` to the edge, and
    None when there are too few bins for a fit.
    """
    obs = read_unmerged_mtz(unmerged_mtz)
    keys = pack_hkl(obs.hkl)
    s2 = obs.cell.calculate_1_d2_array(obs.hkl.astype(np.int32))
    d_min, info = estimate_d_min(keys, obs.i, np.asarray(s2), target=target)
    info["target"] = target
    if d_min is not None and not math.isfinite(d_min):
        d_min = None
    return d_min, info
