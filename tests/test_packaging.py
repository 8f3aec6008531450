"""pyproject.toml builds without setuptools' deprecation warning for the license table."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_license_is_an_spdx_string_and_the_backend_understands_it():
    doc = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert doc["project"]["license"] == "BSD-3-Clause"  # PEP 639, not {text = ...}
    (req,) = [r for r in doc["build-system"]["requires"] if r.startswith("setuptools")]
    minimum = re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", req.replace(" ", ""))
    assert minimum and int(minimum.group(1)) >= 77, req  # the first to read the SPDX string


def test_building_the_metadata_prints_no_deprecation_warning(tmp_path):
    """What `pip install -e .` (make install) printed on every install: the build backend's
    "`project.license` as a TOML table is deprecated".  Builds the metadata of a copy of
    pyproject.toml (with a stub package) as pip does, in an isolated build environment."""
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    shutil.copy(REPO / "README.md", tmp_path)
    (tmp_path / "src" / "mxflow").mkdir(parents=True)
    (tmp_path / "src" / "mxflow" / "__init__.py").write_text('__version__ = "0"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--dry-run", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 and re.search(
        r"No matching distribution|Could not find a version", out
    ):
        pytest.skip("no package index to fetch the build backend from")
    assert proc.returncode == 0, out
    assert "Would install mxflow" in out
    assert "deprecated" not in out.lower(), out
    assert "BuildBackendWarning" not in out, out
