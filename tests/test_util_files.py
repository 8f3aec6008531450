"""mxflow.util.files: JSON-ready values and safe file names."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from mxflow.util.files import json_ready, read_json, safe_name, write_json


def test_json_ready_nan_inf_numpy_path_and_keys():
    value = {
        "nan": math.nan,
        "inf": [math.inf, -math.inf, 1.5],
        "nested": {"t": (1, np.float64(math.nan)), 3: np.int64(7)},
        "np": np.float32(0.25),
        "path": Path("/a/b.mtz"),
        "keep": ["x", None, True, 0],
    }
    got = json_ready(value)
    assert got == {
        "nan": None,
        "inf": [None, None, 1.5],
        "nested": {"t": [1, None], "3": 7},
        "np": 0.25,
        "path": "/a/b.mtz",
        "keep": ["x", None, True, 0],
    }
    assert type(got["nested"]["3"]) is int and type(got["np"]) is float
    json.dumps(got, allow_nan=False)  # strictly valid JSON


def test_write_json_uses_json_ready(tmp_path):
    write_json(tmp_path / "x.json", {"d": np.float64(math.nan), "p": tmp_path})
    assert read_json(tmp_path / "x.json") == {"d": None, "p": str(tmp_path)}
    assert "NaN" not in (tmp_path / "x.json").read_text()


def test_safe_name():
    assert safe_name("CPS1012-06/data00") == "CPS1012-06_data00"
    assert safe_name("lyso zyme (A)+1.5") == "lyso_zyme_A_+1.5"
    assert safe_name("..hidden_") == "hidden"
    assert safe_name("///") == "dataset"
    assert safe_name("", default="sample") == "sample"
