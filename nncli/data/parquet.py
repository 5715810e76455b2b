"""Tabular data from a Parquet file (pyarrow, the optional extra `nncli[parquet]`): columns by name like the
csv source, numeric features, a class column whose labels keep their type (strings stay strings), or
numeric targets for a regression. Read row group by row group into preallocated float64 columns."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import DataError
from ..registry import Fraction, NonNegativeInt, PositiveInt
from .base import DATA_SOURCES, PROGRESS_MIN_BYTES, ProgressMeter, existing
from .tabular import TabularSource, check_fits, merge_labels, number_labels

INSTALL_HINT = "pip install 'nncli[parquet]' (pyarrow)"


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None, None
    return pa, pq


class _ParquetTable:
    """A Parquet file's columns (see nncli.data.tabular for the interface); rows are numbered from 1."""

    def __init__(self, path: str, with_target: bool = True):
        p = existing(path, "Parquet file")
        if p.is_dir():
            raise DataError(f"{path}: is a folder; data.source: parquet needs a Parquet file")
        pa, pq = _pyarrow()
        if pa is None:
            raise DataError(f"{path}: data.source: parquet needs pyarrow: {INSTALL_HINT}")
        self.pa, self.path = pa, path
        try:
            self.file = pq.ParquetFile(p)
            schema = self.file.schema_arrow
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise DataError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
        self.header = [str(name) for name in schema.names]
        self.types = {name: schema.field(name).type for name in self.header}
        if len(set(self.header)) != len(self.header):
            dup = next(n for n in self.header if self.header.count(n) > 1)
            raise DataError(f"{path}: column '{dup}' appears twice")
        if len(self.header) < 2 and with_target:
            raise DataError(f"{path}: need at least one feature column and a target column")
        self.n = self.file.metadata.num_rows
        if self.n == 0:
            raise DataError(f"{path}: has columns but no rows")
        self.size = p.stat().st_size

    def __len__(self) -> int:
        return self.n

    def where(self, row: int) -> str:
        return f"{self.path}: row {int(row) + 1}"

    def names(self) -> list[str]:
        name = Path(self.path).name
        return [f"{name}:{i}" for i in range(1, self.n + 1)]

    def release(self) -> None:
        pass

    def _groups(self, names: list[str]):
        """(first row, {name: pyarrow array}) per row group, with progress for a large file."""
        meter = ProgressMeter(f"reading {Path(self.path).name}", self.n) if self.size >= PROGRESS_MIN_BYTES else None
        start = 0
        for g in range(self.file.num_row_groups):
            try:
                table = self.file.read_row_group(g, columns=names)
            except (self.pa.ArrowException, OSError, ValueError) as exc:
                raise DataError(f"{self.path}: cannot read row group {g} ({str(exc).splitlines()[0]})") from None
            yield start, {name: table.column(name).combine_chunks() for name in names}
            start += table.num_rows
            if meter is not None:
                meter.advance(table.num_rows)
        if meter is not None:
            meter.finish()

    def numbers(self, columns: list[int]) -> np.ndarray:
        pa = self.pa
        names = [self.header[c] for c in columns]
        for name in names:
            kind = self.types[name]
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
                raise DataError(f"{self.path}: column '{name}' holds {kind}, not numbers")
        check_fits(self.path, self.n, len(columns), 20 * len(columns) + 8)  # float64 columns + their float32 copy
        out = np.empty((self.n, len(columns)), np.float64)
        for start, arrays in self._groups(names):
            for j, name in enumerate(names):
                array = arrays[name]
                if array.null_count:
                    row = start + int(np.flatnonzero(~array.is_valid().to_numpy(zero_copy_only=False))[0])
                    raise DataError(f"{self.where(row)}: column '{name}': value is missing")
                values = array.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
                bad = ~np.isfinite(values)
                if bad.any():
                    r = int(np.flatnonzero(bad)[0])
                    what = "is missing" if np.isnan(values[r]) else f"'{values[r]:g}' is not a finite number"
                    raise DataError(f"{self.where(start + r)}: column '{name}': value {what}")
                out[start : start + len(values), j] = values
        return out

    def labels(self, column: int) -> tuple[list, np.ndarray]:
        pa = self.pa
        name = self.header[column]
        kind = self.types[name]
        parts = [arrays[name] for _, arrays in self._groups([name])]
        array = pa.chunked_array(parts, type=kind).combine_chunks() if parts else pa.array([], type=kind)
        if array.null_count:
            row = int(np.flatnonzero(~array.is_valid().to_numpy(zero_copy_only=False))[0])
            raise DataError(f"{self.where(row)}: column '{name}': class label is missing")
        if pa.types.is_integer(kind) or pa.types.is_floating(kind):
            converted, codes, missing = number_labels(array.to_numpy(zero_copy_only=False))
        elif pa.types.is_boolean(kind):
            converted, codes, missing = number_labels(array.to_numpy(zero_copy_only=False).astype(np.int64))
            converted = [bool(v) for v in converted]
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind):
            encoded = array.dictionary_encode() if not pa.types.is_dictionary(kind) else array
            converted = [str(v) for v in encoded.dictionary.to_pylist()]
            codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), np.int64)
            missing = np.zeros(len(converted), bool)
        else:
            raise DataError(f"{self.path}: column '{name}' holds {kind}; class labels are numbers or strings")
        if missing.any():
            row = int(np.flatnonzero(missing[codes])[0])
            raise DataError(f"{self.where(row)}: column '{name}': class label is missing")
        return merge_labels(converted, codes)


@DATA_SOURCES.register("parquet")
class ParquetSource(TabularSource):
    """A Parquet file (needs the `parquet` extra, pyarrow): numeric feature columns and a target column of class labels, numbers or strings (or numeric targets: task regression).

    Options:
    path: the Parquet file (relative to the current directory)
    task: classification (the target holds class labels) or regression (the target column(s) hold numbers)
    target: the class column, by name or 0-based index (-1: the last column); a regression may list several target columns
    test_split: fraction held out as the test split (stratified by class, seeded; a seeded permutation for a regression)
    validation_split: fraction of the remaining rows held out for validation
    standardize: scale features to zero mean, unit variance with training-part statistics
    standardize_target: regression: scale each target to zero mean, unit variance with training-part statistics (null: true for a regression); metrics are reported in the target's own units
    limit: use a seeded, stratified subset of this many training rows
    split_seed: seeds the splits and limit; null uses the run seed. Fix it to give every `--seeds` run one split (an ensemble)
    """

    kind = "parquet"

    def __init__(
        self,
        path: str,
        task: Literal["classification", "regression"] = "classification",
        target: str | int | list[str | int] = -1,
        test_split: Fraction = 0.2,
        validation_split: Fraction = 0.1,
        standardize: bool = True,
        standardize_target: bool | None = None,
        limit: PositiveInt | None = None,
        split_seed: NonNegativeInt | None = None,
    ):
        self._check(task, target, standardize_target)
        self.path = path
        self.task = task
        self.target = target
        self.test_split = test_split
        self.validation_split = validation_split
        self.standardize = standardize
        self.standardize_target = standardize_target
        self.limit = limit
        self.split_seed = split_seed

    def _table(self, path: str, with_target: bool = True):
        return _ParquetTable(path, with_target)
