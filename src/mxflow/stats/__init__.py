"""mxflow.stats: merging statistics per resolution shell (the XDS CORRECT.LP / KAMO table).

from mxflow.stats import stats_from_mtz, format_table
print(format_table(stats_from_mtz("scaled.mtz")))
"""

from mxflow.stats.merging import (
    format_table,
    merging_stats,
    read_unmerged_mtz,
    stats_from_mtz,
    stats_to_json,
)

__all__ = ["format_table", "merging_stats", "read_unmerged_mtz", "stats_from_mtz", "stats_to_json"]
