"""mxflow.engine: thin wrappers around the DIALS programs, and readers of their files.

* :mod:`mxflow.engine.runner` — run one program (argument list, log, exit status, wall time);
* :mod:`mxflow.engine.steps` — resumable steps with done records;
* :mod:`mxflow.engine.sweep_steps` — the Steps of the DIALS single-sweep sequence;
* :mod:`mxflow.engine.expt` — read ``.expt`` experiment lists (cell, space group, A, scan, geometry);
* :mod:`mxflow.engine.refl` — read ``.refl`` msgpack reflection tables into numpy columns.
"""
