"""mxflow.merge: multi-crystal merging of one sample (the KAMO multi_merge / xia2.multiplex stage).

Entry point: :func:`merge_sample` (inputs, workdir,
:class:`~mxflow.model.MergeOptions`) → :class:`~mxflow.model.MergeSummary`,
also written as ``merge_summary.json``; command line ``mxflow merge``
(:mod:`mxflow.merge.cli`).  Modules, in pipeline order:

* ``inputs``       — what can be merged (mxflow outputs, DIALS files, directories), wavelength groups;
* ``observations`` — reading the multi-experiment MTZ files of the DIALS steps;
* ``stages``       — cell grouping, symmetry / indexing ambiguity, CC matrix, clustering, cluster choice;
* ``runs``         — one cluster: run_01 → run_02 → run_03, resolution cut, statistics;
* ``analysis``     — ΔCC½, Tukey fences, bad image groups and datasets, Wilson B (pure functions);
* ``outputs``      — merge_summary.json, dendrograms, CC table, KAMO's cluster_summary.dat;
* ``pipeline``     — :func:`merge_sample`, the stages in order.

The DIALS programs are the Steps of :mod:`mxflow.engine.merge_steps`.
"""

from mxflow.merge.pipeline import merge_sample

__all__ = ["merge_sample"]
