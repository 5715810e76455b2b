"""Data sources (`data.source`) and the in-memory Dataset they load."""

from . import csv, idx, npy, parquet, patterns, ts  # noqa: F401  (registration)
from .base import DATA_SOURCES, SPLITS, DataInfo, Dataset, DataSource, Rows, Split, load_progress

__all__ = ["DATA_SOURCES", "SPLITS", "DataInfo", "DataSource", "Dataset", "Rows", "Split", "load_progress"]
