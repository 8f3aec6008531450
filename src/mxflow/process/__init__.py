"""mxflow.process: the per-dataset DIALS pipeline (``process_dataset``) and ``mxflow process``."""

from mxflow.process.pipeline import process_dataset

__all__ = ["process_dataset"]
