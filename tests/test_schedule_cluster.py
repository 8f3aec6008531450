"""Cluster sizing and the batch-queue configuration (no batch system needed)."""

from __future__ import annotations

import pytest

from mxflow.errors import BadInputError
from mxflow.schedule.cluster import load_cluster_config, local_layout, make_jobqueue_cluster


def test_local_layout_fills_cores_without_oversubscribing():
    assert local_layout(2) == (2, 1)  # default: one single-threaded DIALS worker per core
    assert local_layout(16, nproc=4) == (4, 4)
    assert local_layout(16, workers=3) == (3, 5)
    assert local_layout(2, nproc=4) == (1, 4)
    assert local_layout(8, workers=2, nproc=2) == (2, 2)


YAML = """
slurm:
  queue: mx
  account: beamline
  cores: 8
  processes: 4
  memory: 16GB
  walltime: "01:00:00"
  jobs: 3
"""

TOML = """
[pbs]
queue = "short"
cores = 4
memory = "8GB"
nproc = 2
"""


def test_config_files_yaml_and_toml(tmp_path):
    (tmp_path / "c.yaml").write_text(YAML)
    (tmp_path / "c.toml").write_text(TOML)
    assert load_cluster_config(tmp_path / "c.yaml", "slurm")["queue"] == "mx"
    assert load_cluster_config(tmp_path / "c.yaml", "sge") == {}
    assert load_cluster_config(tmp_path / "c.toml", "pbs")["nproc"] == 2
    (tmp_path / "bad.yaml").write_text("slurm: [1, 2\n")
    with pytest.raises(BadInputError, match="bad.yaml"):
        load_cluster_config(tmp_path / "bad.yaml", "slurm")
    with pytest.raises(BadInputError, match="cannot read"):
        load_cluster_config(tmp_path / "missing.yaml", "slurm")


def test_slurm_job_script_from_config(tmp_path):
    (tmp_path / "c.yaml").write_text(YAML)
    cluster, own, processes = make_jobqueue_cluster("slurm", tmp_path / "c.yaml")
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert (own["jobs"], own["nproc"], processes) == (3, 2, 4)
    assert "#SBATCH -p mx" in script and "#SBATCH -A beamline" in script
    assert "--resources dataset=1" in script  # one dataset at a time per worker
    assert "--nworkers 4" in script
