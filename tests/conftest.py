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
