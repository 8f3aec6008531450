"""HTML reports and the live dashboard.

Public entry points:

* :func:`write_reports` ``(out_dir) -> list[Path]`` — every report of an
  output directory (collection, datasets, one per merge);
* :func:`format_summary_table` ``(results) -> str`` — the final terminal table;
* ``mxflow report OUT`` (:mod:`mxflow.report.cli`) and ``mxflow serve OUT``
  (:mod:`mxflow.report.serve_cli`).
"""

from __future__ import annotations

from mxflow.report.terminal import format_summary_table
from mxflow.report.write import write_reports

__all__ = ["format_summary_table", "write_reports"]
