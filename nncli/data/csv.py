"""Tabular data from a CSV file with a header row: numeric features and a class column (or, for a regression, numeric target columns).

Two readers with one meaning. The fast one (`_FastTable`) reads the header and the first data row
with the csv module, then the whole file through numpy's C parser (`np.loadtxt`, one pass, float64
columns, object columns for string labels): ~1 s and ~2x the final arrays for a million rows. It
cannot say where a bad cell is, so anything it does not take cleanly (a bad or missing value, a
ragged row, an odd line ending, text that is not UTF-8) hands the file to the exact reader
(`_Table`, the csv module row by row), which finds the line, column and value for the error
message, or reads the file as it always has when it is good after all (blank rows of empty cells).
numpy's parser rather than a columnar reader (pyarrow.csv): it is already a dependency, and
within 1.5x of the fastest on the data nncli trains on.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import DataError
from ..memory import human_bytes
from ..registry import Fraction, NonNegativeInt, PositiveInt
from .base import DATA_SOURCES, PROGRESS_MIN_BYTES, ProgressMeter, existing, read_text
from .tabular import TabularSource, check_fits, merge_labels, number_labels

_MISSING = {"", "na", "n/a", "nan", "null", "none", "?", "-"}
_SAMPLE = 1 << 20  # bytes read to find the header and the first data row, and to estimate the row count


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value


def _label_value(text: str):
    """Class labels keep their meaning: '1' -> 1, '2.5' -> 2.5, 'tested_positive' -> itself."""
    value = _number(text)
    if value is None or not math.isfinite(value):
        return text
    return int(value) if value.is_integer() else value


def _check_header(path: str, header: list[str], with_target: bool) -> None:
    if all(_number(name) is not None for name in header):
        raise DataError(f"{path}:1: the first row is all numbers; nncli needs a header row naming the columns")
    if len(set(header)) != len(header):
        dup = next(n for n in header if header.count(n) > 1)
        raise DataError(f"{path}:1: column '{dup}' appears twice in the header")
    if len(header) < 2 and with_target:
        raise DataError(f"{path}:1: need at least one feature column and a target column")


class _Fallback(Exception):
    """The fast reader cannot take this file as it is: read it again with the exact one."""


class _Table:
    """The exact reader: a parsed CSV, header names and rows of strings, with 1-based line numbers."""

    def __init__(self, path: str, delimiter: str, with_target: bool = True):
        text = read_text(path, "csv", "CSV", limit=None)
        self.path = path
        self.header: list[str] = []
        self.rows: list[list[str]] = []
        self.lines: list[int] = []
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
        try:
            for row in reader:
                if not row or all(not cell.strip() for cell in row):
                    continue
                if not self.header:
                    self.header = [cell.strip() for cell in row]
                    continue
                if len(row) != len(self.header):
                    raise DataError(
                        f"{path}:{reader.line_num}: expected {len(self.header)} columns as in the header, got {len(row)}"
                    )
                self.rows.append([cell.strip() for cell in row])
                self.lines.append(reader.line_num)
        except csv.Error as exc:
            raise DataError(f"{path}:{reader.line_num}: {exc}") from None
        if not self.header:
            raise DataError(f"{path}: empty file")
        _check_header(path, self.header, with_target)
        if not self.rows:
            raise DataError(f"{path}: has a header but no data rows")

    def __len__(self) -> int:
        return len(self.lines)

    def where(self, row: int) -> str:
        return f"{self.path}:{self.lines[row]}"

    def names(self) -> list[str]:
        return [f"{Path(self.path).name}:{line}" for line in self.lines]

    def release(self) -> None:
        self.rows = []

    def numbers(self, columns: list[int]) -> np.ndarray:
        out = np.empty((len(self.rows), len(columns)), np.float64)
        for r, row in enumerate(self.rows):
            for c, col in enumerate(columns):
                cell = row[col]
                value = _number(cell)
                if value is None or not math.isfinite(value):
                    what = "is missing" if cell.lower() in _MISSING else f"'{cell}' is not a finite number"
                    raise DataError(f"{self.path}:{self.lines[r]}: column '{self.header[col]}': value {what}")
                out[r, c] = value
        return out

    def labels(self, column: int) -> tuple[list, np.ndarray]:
        """The target column's class labels: (distinct values, a code per row)."""
        seen: dict = {}
        codes = np.empty(len(self.rows), np.int64)
        for r, (row, line) in enumerate(zip(self.rows, self.lines)):
            if row[column].lower() in _MISSING:
                raise DataError(f"{self.path}:{line}: column '{self.header[column]}': class label is missing")
            value = _label_value(row[column])
            codes[r] = seen.setdefault((type(value) is str, value), len(seen))
        return [key[1] for key in seen], codes


class _CountingFile(io.FileIO):
    """A file that tells a ProgressMeter how many bytes have been read (one call per buffer refill)."""

    meter: ProgressMeter | None = None

    def readinto(self, buffer) -> int | None:
        n = super().readinto(buffer)
        if n and self.meter is not None:
            self.meter.advance(n)
        return n


class _FastTable:
    """The fast reader (see the module docstring): the same interface as `_Table`; raises _Fallback
    for anything the exact reader must look at."""

    def __init__(self, path: str, delimiter: str, with_target: bool = True):
        p = existing(path, "file")
        if p.is_dir():
            raise DataError(f"{path}: is a folder; data.source: csv needs a CSV file")
        self.path, self.delimiter = path, delimiter
        try:
            size = p.stat().st_size
            with open(p, "rb") as f:
                sample = f.read(_SAMPLE)
        except OSError as exc:
            raise DataError(f"{path}: cannot read ({exc.strerror})") from None
        if b"\x00" in sample:
            raise _Fallback  # binary: the exact reader says so
        whole = len(sample) == size
        cut = sample if whole else sample[: sample.rfind(b"\n") + 1]
        try:
            text = cut.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise _Fallback from None
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
        header = first = None
        try:
            for row in reader:
                if not row or all(not cell.strip() for cell in row):
                    continue
                if header is None:
                    header, self.skip = [cell.strip() for cell in row], reader.line_num
                    continue
                first = [cell.strip() for cell in row]
                break
        except csv.Error:
            raise _Fallback from None
        if header is None or first is None or len(first) != len(header):
            raise _Fallback  # empty, no data rows, ragged: the exact reader says which
        _check_header(path, header, with_target)
        self.header = header
        # float64 where the first row holds a number, Python strings (labels, ids) elsewhere
        self.numeric = [_number(cell) is not None for cell in first]
        head = 0  # bytes of the header's lines
        for _ in range(self.skip):
            head = cut.index(b"\n", head) + 1 if b"\n" in cut[head:] else len(cut)
        sampled = max(cut.count(b"\n") - self.skip, 1)
        rows = max(1, round((size - head) * sampled / max(len(cut) - head, 1)))  # an estimate from the sample's lines
        columns = len(header)
        check_fits(path, rows, columns, 8 * columns + 12 * columns + 8)  # parsed + float64 features + float32 + labels
        self.array = self._parse(p, size)
        self.n = len(self.array)
        if self.n == 0:
            raise _Fallback
        self._lines: np.ndarray | None = None

    def _parse(self, p: Path, size: int) -> np.ndarray:
        if all(self.numeric):
            dtype = np.dtype(np.float64)
        else:
            dtype = np.dtype([(f"c{j}", "f8" if num else "O") for j, num in enumerate(self.numeric)])
        raw = _CountingFile(p, "r")
        if size >= PROGRESS_MIN_BYTES:
            raw.meter = ProgressMeter(f"reading {p.name}", size)
        with io.TextIOWrapper(io.BufferedReader(raw, 1 << 20), encoding="utf-8-sig") as f:
            try:
                for _ in range(self.skip):
                    f.readline()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "input contained no data": handled by the caller
                    array = np.loadtxt(f, delimiter=self.delimiter, quotechar='"', comments=None, dtype=dtype, ndmin=1 if dtype.names else 2)
            except (ValueError, TypeError, UnicodeError, csv.Error):
                raise _Fallback from None
            except MemoryError:  # the estimate said it fits, the machine changed its mind
                raise DataError(f"{self.path}: ran out of memory while parsing ({human_bytes(size)} of CSV)") from None
        if raw.meter is not None:
            raw.meter.finish()
        if dtype.names is None and array.shape[1] != len(self.header):
            raise _Fallback
        return array

    def __len__(self) -> int:
        return self.n

    def _column(self, j: int) -> np.ndarray:
        return self.array[f"c{j}"] if self.array.dtype.names else self.array[:, j]

    @property
    def lines(self) -> np.ndarray:
        """The 1-based line of each data row: counted only when a message or `predict` needs them."""
        if self._lines is None:
            n = self.n
            with open(self.path, "rb") as f:
                newlines, last = 0, b""
                while block := f.read(1 << 24):
                    newlines += block.count(b"\n")
                    last = block[-1:]
            physical = newlines + (1 if last and last != b"\n" else 0)
            if physical == self.skip + n:  # no blank lines, no quoted line breaks: row i is on line skip + 1 + i
                self._lines = np.arange(self.skip + 1, self.skip + 1 + n)
            else:
                self._lines = np.asarray(self._scan_lines(), np.int64)
        return self._lines

    def _scan_lines(self) -> list[int]:
        lines = []
        with open(self.path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter=self.delimiter)
            for row in reader:
                if reader.line_num > self.skip and row and not all(not cell.strip() for cell in row):
                    lines.append(reader.line_num)
        return lines

    def where(self, row: int) -> str:
        return f"{self.path}:{self.lines[row]}"

    def names(self) -> list[str]:
        return [f"{Path(self.path).name}:{line}" for line in self.lines.tolist()]

    def release(self) -> None:
        self.array = None

    def numbers(self, columns: list[int]) -> np.ndarray:
        if not all(self.numeric[c] for c in columns):
            raise _Fallback  # text in a number column: the exact reader names the cell
        if self.array.dtype.names is None and columns == list(range(columns[0], columns[0] + len(columns))):
            out = self.array[:, columns[0] : columns[0] + len(columns)]  # a view: no second (N, k) array (the table is not read again)
        elif self.array.dtype.names is None:
            out = self.array[:, columns]  # a copy, (N, k)
        else:
            out = np.empty((len(self.array), len(columns)), np.float64)
            for i, c in enumerate(columns):
                out[:, i] = self._column(c)
        if not np.isfinite(out).all():
            raise _Fallback  # nan, inf, 1e400: the exact reader tells missing from not finite, with the line
        return out

    def labels(self, column: int) -> tuple[list, np.ndarray]:
        values = self._column(column)
        name = self.header[column]
        if self.numeric[column]:
            if np.isinf(values).any():
                raise _Fallback  # 'inf' is a label of its own; the exact reader keeps its text
            converted, codes, missing = number_labels(values)
        else:
            try:
                text = values.astype(str)
            except (TypeError, ValueError):
                raise _Fallback from None
            uniq, codes = np.unique(text, return_inverse=True)
            stripped = [u.strip() for u in uniq.tolist()]
            missing = np.array([u.lower() in _MISSING for u in stripped])
            converted = [_label_value(u) for u in stripped]
        codes = codes.reshape(-1)
        if missing.any():
            row = int(np.flatnonzero(np.isin(codes, np.flatnonzero(missing)))[0])
            raise DataError(f"{self.where(row)}: column '{name}': class label is missing")
        return merge_labels(converted, codes)


@DATA_SOURCES.register("csv")
class CsvSource(TabularSource):
    """A CSV file with a header row: numeric feature columns and a target column of class labels (or numeric targets: task regression).

    Options:
    path: the CSV file (relative to the current directory)
    task: classification (the target holds class labels) or regression (the target column(s) hold numbers)
    target: the class column, by header name or 0-based index (-1: the last column); a regression may list several target columns
    test_split: fraction held out as the test split (stratified by class, seeded; a seeded permutation for a regression)
    validation_split: fraction of the remaining rows held out for validation
    standardize: scale features to zero mean, unit variance with training-part statistics
    standardize_target: regression: scale each target to zero mean, unit variance with training-part statistics (null: true for a regression); metrics are reported in the target's own units
    limit: use a seeded, stratified subset of this many training rows
    delimiter: field separator
    split_seed: seeds the splits and limit; null uses the run seed. Fix it to give every `--seeds` run one split (an ensemble)
    """

    kind = "csv"

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
        delimiter: str = ",",
        split_seed: NonNegativeInt | None = None,
    ):
        if len(delimiter) != 1:
            raise ValueError(f"delimiter must be one character, got {delimiter!r}")
        self._check(task, target, standardize_target)
        self.path = path
        self.task = task
        self.target = target
        self.test_split = test_split
        self.validation_split = validation_split
        self.standardize = standardize
        self.standardize_target = standardize_target
        self.limit = limit
        self.delimiter = delimiter
        self.split_seed = split_seed
        self._exact = False  # read with the exact reader (after the fast one gave up)

    def _table(self, path: str, with_target: bool = True):
        if not self._exact:
            try:
                return _FastTable(path, self.delimiter, with_target)
            except _Fallback:
                pass
        return _Table(path, self.delimiter, with_target)

    def _either(self, method, *args, **kwargs):
        """`method` with the fast reader; again with the exact one if the fast one gave up on the file."""
        try:
            return method(*args, **kwargs)
        except _Fallback:
            self._exact = True
            try:
                return method(*args, **kwargs)
            finally:
                self._exact = False

    def inspect(self):
        return self._either(super().inspect)

    def load(self, seed, preprocessing=None):
        return self._either(super().load, seed, preprocessing)

    def read_inputs(self, path, preprocessing, input_shape, resize=True, invert=False):
        return self._either(super().read_inputs, path, preprocessing, input_shape, resize, invert)
