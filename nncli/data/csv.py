"""Tabular data from a CSV file with a header row: numeric features and one class column."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..registry import Fraction, NonNegativeInt, PositiveInt, did_you_mean
from .base import DATA_SOURCES, DataInfo, Dataset, DataSource, Split, encode_labels, read_text, split_off, stratified_subset

_MISSING = {"", "na", "n/a", "nan", "null", "none", "?", "-"}


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


class _Table:
    """A parsed CSV: header names and rows of strings, with 1-based line numbers."""

    def __init__(self, path: str, delimiter: str, with_target: bool = True):
        text = read_text(path, "csv", "CSV")
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
        if all(_number(name) is not None for name in self.header):
            raise DataError(f"{path}:1: the first row is all numbers; nncli needs a header row naming the columns")
        if len(set(self.header)) != len(self.header):
            dup = next(n for n in self.header if self.header.count(n) > 1)
            raise DataError(f"{path}:1: column '{dup}' appears twice in the header")
        if len(self.header) < 2 and with_target:
            raise DataError(f"{path}:1: need at least one feature column and a target column")
        if not self.rows:
            raise DataError(f"{path}: has a header but no data rows")

    def column_index(self, target: str | int) -> int:
        if isinstance(target, int):
            n = len(self.header)
            if not -n <= target < n:
                raise DataError(f"{self.path}: target column index {target} is out of range ({n} columns)")
            return target % n
        if target not in self.header:
            hint = did_you_mean(target, self.header)
            raise DataError(f"{self.path}: no column named '{target}'.{hint} Columns: {', '.join(self.header)}")
        return self.header.index(target)

    def features(self, columns: list[int]) -> np.ndarray:
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


@DATA_SOURCES.register("csv")
class CsvSource(DataSource):
    """A CSV file with a header row: numeric feature columns and a target column of class labels.

    Options:
    path: the CSV file (relative to the current directory)
    target: the class column, by header name or 0-based index (-1: the last column)
    test_split: fraction held out as the test split (stratified, seeded)
    validation_split: fraction of the remaining rows held out for validation
    standardize: scale features to zero mean, unit variance with training-part statistics
    limit: use a seeded, stratified subset of this many training rows
    delimiter: field separator
    split_seed: seeds the splits and limit; null uses the run seed. Fix it to give every `--seeds` run one split (an ensemble)
    """

    def __init__(
        self,
        path: str,
        target: str | int = -1,
        test_split: Fraction = 0.2,
        validation_split: Fraction = 0.1,
        standardize: bool = True,
        limit: PositiveInt | None = None,
        delimiter: str = ",",
        split_seed: NonNegativeInt | None = None,
    ):
        if len(delimiter) != 1:
            raise ValueError(f"delimiter must be one character, got {delimiter!r}")
        self.path = path
        self.target = target
        self.test_split = test_split
        self.validation_split = validation_split
        self.standardize = standardize
        self.limit = limit
        self.delimiter = delimiter
        self.split_seed = split_seed

    def _parse(self, preprocessing: dict | None = None) -> tuple[_Table, int, list[int]]:
        """The table, its target column and feature columns.

        With a checkpoint's `preprocessing` the columns it was trained on are
        found by name, so a file with the same columns in another order (or
        with extra ones) is read the same way; a missing one is an error.
        """
        table = _Table(self.path, self.delimiter)
        names = (preprocessing or {}).get("features")
        if names is None:
            target = table.column_index(self.target)
            return table, target, [c for c in range(len(table.header)) if c != target]
        stored_target = preprocessing.get("target")
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names) and isinstance(stored_target, (str, type(None)))):
            raise DataError(f"{self.path}: the checkpoint's preprocessing.features must be a list of column names")
        target = table.column_index(self.target) if stored_target is None else self._trained_column(table, stored_target)
        return table, target, [self._trained_column(table, name) for name in names]

    def _trained_column(self, table: _Table, name: str) -> int:
        if name not in table.header:
            hint = did_you_mean(name, table.header)
            raise DataError(f"{self.path}: no column named '{name}', which the checkpoint was trained on.{hint} Columns: {', '.join(table.header)}")
        return table.header.index(name)

    def _labels(self, table: _Table, target: int) -> list:
        """The target column's class labels, one per row."""
        labels = []
        for row, line in zip(table.rows, table.lines):
            if row[target].lower() in _MISSING:
                raise DataError(f"{self.path}:{line}: column '{table.header[target]}': class label is missing")
            labels.append(_label_value(row[target]))
        return labels

    def _classes(self, table: _Table, target: int, labels: list) -> list:
        """The sorted distinct labels, refused when they cannot be classes: a single one, real numbers,
        or so many that most rows hold a value of their own (a continuous target: nothing to split by)."""
        classes = sorted(set(labels), key=lambda v: (isinstance(v, str), v))
        name = table.header[target]
        if len(classes) < 2:
            raise DataError(f"{self.path}: column '{name}' holds a single class ({classes[0]!r}); need two or more")
        real = [v for v in classes if isinstance(v, float)]
        if real or (len(classes) > 2 and 2 * len(classes) > len(labels)):
            what = f", real numbers such as {real[0]:g}" if real else ""
            raise DataError(
                f"{self.path}: target column '{name}' holds {len(classes)} distinct values in {len(labels)} rows{what}; "
                "classification needs class labels, each shared by several rows; regression (data.task: regression) is not available yet"
            )
        return classes

    def inspect(self) -> DataInfo:
        table, target, features = self._parse()
        return DataInfo((len(features),), len(self._classes(table, target, self._labels(table, target))), len(table.rows))

    def load(self, seed, preprocessing=None):
        table, target, feature_cols = self._parse(preprocessing)
        description = f"{self.path} (csv)"
        values = self._labels(table, target)
        x = table.features(feature_cols)
        labels = np.array(values, dtype=object)
        stored = (preprocessing or {}).get("classes")
        classes = stored or self._classes(table, target, values)  # a checkpoint's classes are what it predicts
        y = encode_labels(labels, classes, self.path)

        rng = np.random.default_rng(seed)
        rest, test_idx = split_off(y, self.test_split, rng, description, "test")
        if self.limit is not None:
            rest = rest[stratified_subset(y[rest], self.limit, rng)]
        kept, val_local = split_off(y[rest], self.validation_split, rng, description, "validation")
        train_idx, val_idx = rest[kept], rest[val_local]

        stats = {}
        if self.standardize:
            if preprocessing and "mean" in preprocessing:
                mean = np.array(preprocessing["mean"], np.float64)
                std = np.array(preprocessing["std"], np.float64)
                if mean.shape != (len(feature_cols),):
                    raise DataError(f"{self.path}: has {len(feature_cols)} features, the checkpoint was trained on {len(mean)}")
            else:
                with np.errstate(over="ignore", invalid="ignore"):
                    mean = x[train_idx].mean(axis=0)
                    std = x[train_idx].std(axis=0)
                std[std == 0] = 1.0  # a constant column stays constant (zero) instead of dividing by 0
                bad = ~(np.isfinite(mean) & np.isfinite(std))
                if bad.any():
                    name = table.header[feature_cols[int(np.argmax(bad))]]
                    raise DataError(f"{self.path}: column '{name}': values too large to standardise")
            with np.errstate(over="ignore", invalid="ignore"):
                x = (x - mean) / std
            stats = {"mean": mean.tolist(), "std": std.tolist()}
        with np.errstate(over="ignore", invalid="ignore"):
            x = x.astype(np.float32)
        if not np.isfinite(x).all():
            row, col = np.argwhere(~np.isfinite(x))[0]
            raise DataError(
                f"{self.path}:{table.lines[row]}: column '{table.header[feature_cols[col]]}': value is too large for float32 training"
            )

        def part(index):
            return Split(x[index], y[index]) if len(index) else None

        return Dataset(
            train=Split(x[train_idx], y[train_idx]),
            val=part(val_idx),
            test=part(test_idx),
            input_shape=(len(feature_cols),),
            classes=list(classes),
            preprocessing={
                "classes": list(classes),
                "features": [table.header[c] for c in feature_cols],
                "target": table.header[target],
                **stats,
            },
            description=description,
        )

    def read_inputs(self, path, preprocessing, input_shape, resize=True, invert=False):
        """Rows of a CSV with a header: the trained feature columns by name (any other column, the target
        among them, is ignored), standardised with the checkpoint's statistics. Names: file:line."""
        table = _Table(str(path), self.delimiter, with_target=False)
        names = preprocessing.get("features") or []
        missing = [n for n in names if n not in table.header]
        if missing:
            raise DataError(f"{path}: no column {', '.join(repr(m) for m in missing)}; the model was trained on {', '.join(names)}")
        x = table.features([table.header.index(n) for n in names])
        if "mean" in preprocessing:
            with np.errstate(over="ignore", invalid="ignore"):
                x = (x - np.asarray(preprocessing["mean"])) / np.asarray(preprocessing["std"])
        with np.errstate(over="ignore", invalid="ignore"):
            x = x.astype(np.float32)
        if not np.isfinite(x).all():
            row, col = np.argwhere(~np.isfinite(x))[0]
            raise DataError(f"{path}:{table.lines[row]}: column '{names[col]}': value is too large for float32")
        return [f"{Path(path).name}:{line}" for line in table.lines], x
