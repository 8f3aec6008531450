"""mxflow.merge: multi-crystal merging of one sample (the KAMO multi_merge / xia2.multiplex stage).

Entry point: :func:`mxflow.merge.pipeline.merge_sample` (inputs, workdir,
:class:`~mxflow.merge.pipeline.MergeOptions`) → merge_summary dict; command
line ``mxflow merge`` (:mod:`mxflow.merge.cli`).  Modules:

* ``inputs``   — what can be merged (mxflow outputs, DIALS files, directories), wavelength groups;
* ``pipeline`` — cell grouping → symmetry / indexing → clustering → run_01 … run_03 → resolution;
* ``analysis`` — ΔCC½, Tukey fences, the tanh CC½ fit (pure functions);
* ``steps``    — the DIALS programs of a merge and reading their outputs.

Imported lazily by ``mxflow run`` (:mod:`mxflow.schedule.post`).
"""
