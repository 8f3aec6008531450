"""mxflow.discover: finding sweeps on disk and collections (ZOO trees, sample sheets, wedges).

* :func:`find_sweeps` (``mxflow.discover.sweeps``): sweeps and problems under paths.
* :func:`discover_collection` (``mxflow.discover.collection``): datasets, wedges,
  raster scans and incomplete datasets of a beamline session.
"""

from mxflow.discover.collection import (
    Collection,
    SampleEntry,
    discover_collection,
    make_wedges,
    read_sample_sheet,
    wedge_ranges,
)
from mxflow.discover.sweeps import DiscoveryResult, find_sweeps

__all__ = [
    "Collection",
    "DiscoveryResult",
    "SampleEntry",
    "discover_collection",
    "find_sweeps",
    "make_wedges",
    "read_sample_sheet",
    "wedge_ranges",
]
