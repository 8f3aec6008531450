"""mxflow.simulate: the ground-truth simulator and scoring against its truth.

from mxflow.simulate import SimulationConfig, simulate, score
result = simulate("out", SimulationConfig(n_crystals=3, frames=60, seed=1))
score("merged.mtz", result.truth_dir)["cc_overall"]
"""

from mxflow.simulate.config import SimulationConfig, SimulationResult
from mxflow.simulate.core import simulate
from mxflow.simulate.score import score

__all__ = ["SimulationConfig", "SimulationResult", "simulate", "score"]
