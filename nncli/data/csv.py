"""Tabular data from a CSV file with a header row: numeric features and a class column (or, for a regression, numeric target columns)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Literal

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
        if task == "classification" and isinstance(target, list):
            raise ValueError("a list of target columns needs data.task: regression; a classification has one class column")
        if task == "classification" and standardize_target:
            raise ValueError("standardize_target applies to a regression's target values (data.task: regression), not to class labels")
        if isinstance(target, list) and not target:
            raise ValueError("target: list at least one target column")
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

    @property
    def regression(self) -> bool:
        return self.task == "regression"

    def _parse(self, preprocessing: dict | None = None) -> tuple[_Table, list[int], list[int]]:
        """The table, its target column(s) (one for a classification) and feature columns.

        With a checkpoint's `preprocessing` the columns it was trained on are
        found by name, so a file with the same columns in another order (or
        with extra ones) is read the same way; a missing one is an error.
        """
        table = _Table(self.path, self.delimiter)
        prep = preprocessing or {}
        stored_task = prep.get("task", "classification")
        if prep and stored_task != self.task:
            raise DataError(f"{self.path}: the checkpoint's preprocessing is for a {stored_task}, its config's data.task is {self.task}")
        names = prep.get("features")
        if names is None:
            targets = self._target_columns(table)
            return table, targets, [c for c in range(len(table.header)) if c not in targets]
        stored = prep.get("targets") if self.regression else prep.get("target")
        if self.regression:
            ok = isinstance(stored, list) and stored and all(isinstance(n, str) for n in stored)
        else:
            ok = isinstance(stored, (str, type(None)))
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names) and ok):
            raise DataError(f"{self.path}: the checkpoint's preprocessing.features must be a list of column names")
        if stored is None:
            targets = self._target_columns(table)
        else:
            targets = [self._trained_column(table, n) for n in (stored if isinstance(stored, list) else [stored])]
        return table, targets, [self._trained_column(table, name) for name in names]

    def _target_columns(self, table: _Table) -> list[int]:
        listed = self.target if isinstance(self.target, list) else [self.target]
        columns = [table.column_index(t) for t in listed]
        for i, c in enumerate(columns):
            if c in columns[:i]:
                raise DataError(f"{self.path}: target column '{table.header[c]}' is listed twice")
        if len(columns) >= len(table.header):
            raise DataError(f"{self.path}: every column is a target; need at least one feature column")
        return columns

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
                "classification needs class labels, each shared by several rows; to predict the numbers set data.task: regression"
            )
        return classes

    def inspect(self) -> DataInfo:
        table, targets, features = self._parse()
        if self.regression:
            return DataInfo((len(features),), None, len(table.rows), num_targets=len(targets))
        target = targets[0]
        return DataInfo((len(features),), len(self._classes(table, target, self._labels(table, target))), len(table.rows))

    def load(self, seed, preprocessing=None):
        table, targets, feature_cols = self._parse(preprocessing)
        description = f"{self.path} (csv)"
        x = table.features(feature_cols)
        if self.regression:
            y = table.features(targets)  # numbers: a bad cell is one error naming its line, column and value
            classes = []
            strata = np.zeros(len(y), np.int64)  # no classes to stratify by: the splits are a seeded permutation
        else:
            values = self._labels(table, targets[0])
            labels = np.array(values, dtype=object)
            stored = (preprocessing or {}).get("classes")
            classes = stored or self._classes(table, targets[0], values)  # a checkpoint's classes are what it predicts
            y = strata = encode_labels(labels, classes, self.path)

        rng = np.random.default_rng(seed)
        rest, test_idx = split_off(strata, self.test_split, rng, description, "test")
        if self.limit is not None:
            rest = rest[stratified_subset(strata[rest], self.limit, rng)]
        kept, val_local = split_off(strata[rest], self.validation_split, rng, description, "validation")
        train_idx, val_idx = rest[kept], rest[val_local]

        stats = {}
        if self.standardize:
            mean, std = self._statistics(x, train_idx, preprocessing, ("mean", "std"), table, feature_cols, "features")
            with np.errstate(over="ignore", invalid="ignore"):
                x = (x - mean) / std
            stats = {"mean": mean.tolist(), "std": std.tolist()}
        x = self._float32(x, table, feature_cols)
        target_scale = None
        if self.regression:
            if self.standardize_target is not False:  # null (the default) standardises a regression's targets
                mean, std = self._statistics(y, train_idx, preprocessing, ("target_mean", "target_std"), table, targets, "targets")
                with np.errstate(over="ignore", invalid="ignore"):
                    y = (y - mean) / std
                stats.update(target_mean=mean.tolist(), target_std=std.tolist())
                target_scale = (mean, std)
            y = self._float32(y, table, targets)

        def part(index):
            return Split(x[index], y[index]) if len(index) else None

        if self.regression:
            columns = {"task": "regression", "targets": [table.header[c] for c in targets]}
        else:
            columns = {"classes": list(classes), "target": table.header[targets[0]]}
        return Dataset(
            train=Split(x[train_idx], y[train_idx]),
            val=part(val_idx),
            test=part(test_idx),
            input_shape=(len(feature_cols),),
            classes=list(classes),
            preprocessing={**columns, "features": [table.header[c] for c in feature_cols], **stats},
            description=description,
            task=self.task,
            targets=[table.header[c] for c in targets] if self.regression else [],
            target_scale=target_scale,
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
    def _statistics(self, values, train_idx, preprocessing, keys, table, columns, what) -> tuple[np.ndarray, np.ndarray]:
        """Per-column (mean, std) of the training rows, or a checkpoint's under `keys`; a constant column keeps std 1."""
        if preprocessing and keys[0] in preprocessing:
            mean = np.array(preprocessing[keys[0]], np.float64)
            std = np.array(preprocessing[keys[1]], np.float64)
            if mean.shape != (len(columns),):
                raise DataError(f"{self.path}: has {len(columns)} {what}, the checkpoint was trained on {len(mean)}")
            return mean, std
        with np.errstate(over="ignore", invalid="ignore"):
            mean = values[train_idx].mean(axis=0)
            std = values[train_idx].std(axis=0)
        std[std == 0] = 1.0  # a constant column stays constant (zero) instead of dividing by 0
        bad = ~(np.isfinite(mean) & np.isfinite(std))
        if bad.any():
            name = table.header[columns[int(np.argmax(bad))]]
            raise DataError(f"{self.path}: column '{name}': values too large to standardise")
        return mean, std

    def _float32(self, values, table, columns) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            values = values.astype(np.float32)
        if not np.isfinite(values).all():
            row, col = np.argwhere(~np.isfinite(values))[0]
            raise DataError(
                f"{self.path}:{table.lines[row]}: column '{table.header[columns[col]]}': value is too large for float32 training"
            )
        return values
