"""Data sources (`data.source`) and the in-memory Dataset they load."""

from . import csv, idx, patterns, ts  # noqa: F401  (registration)
from .base import DATA_SOURCES, SPLITS, DataInfo, Dataset, DataSource, Split

__all__ = ["DATA_SOURCES", "SPLITS", "DataInfo", "DataSource", "Dataset", "Split"]
