"""Shared pytest fixtures: paths to real test data and the DIALS check."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the repository (real detector frames); skip if absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA}")
    return SHARED_DATA


def have_dials() -> bool:
    return shutil.which("dials.version") is not None


requires_dials = pytest.mark.skipif(not have_dials(), reason="DIALS programs not on PATH")


@pytest.fixture(scope="session")
def real_merge(tmp_path_factory) -> Path:
    """A directory holding a real merge of the l-cysteine sweeps (``merge/lcys/merge_cc_*``),
    written by mxflow's merge pipeline with DIALS (about a minute; see merge_fixtures).

    Developers: MXFLOW_TEST_REPORT_MERGE=DIR keeps it in DIR between runs.
    Skips when DIALS or the shared data is missing.
    """
    import os

    import merge_fixtures

    if not have_dials() or shutil.which("dials.scale") is None:
        pytest.skip("DIALS programs not on PATH")
    if not merge_fixtures.have_data():
        pytest.skip(f"l-cysteine data not found at {merge_fixtures.LCYS}")
    keep = os.environ.get("MXFLOW_TEST_REPORT_MERGE")
    root = Path(keep) if keep else tmp_path_factory.mktemp("report_merge")
    return merge_fixtures.run_real_merge(root)
