"""mxflow.hitmap: raster-scan spot finding and hit maps (the SHIKA of mxflow).

Public API: :func:`hitmap` (a scan → hitmap.json / .png / .html),
:func:`find_spots` (one frame → :class:`Spots`), :class:`SpotFinderParams`,
:class:`SpotFilter`.
"""

from mxflow.hitmap.run import Grid, SpotFilter, frame_summary, hitmap
from mxflow.hitmap.spotfinder import SpotFinderParams, Spots, Workspace, find_spots

__all__ = [
    "Grid",
    "SpotFilter",
    "SpotFinderParams",
    "Spots",
    "Workspace",
    "find_spots",
    "frame_summary",
    "hitmap",
]
