"""mxflow: automated processing of multi-crystal MX rotation data on top of DIALS.

The pipeline packages mirror the stages: ``discover`` → ``process`` (the DIALS
``engine``) → ``cluster`` → ``merge`` → ``report``, plus ``hitmap``,
``catalog``, ``schedule``, ``simulate`` and ``stats``.  The shared data model
is in :mod:`mxflow.model`.
"""

__version__ = "0.1.0"
