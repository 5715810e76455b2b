"""What the tabular sources (csv, parquet) share: columns by name or index, class labels, splits,
standardisation statistics, the checkpoint's preprocessing, `predict` inputs and the memory check.

A source supplies a *table*: `path`, `header` (column names), `len()`, and

- `numbers(columns)`: (N, k) float64 of those columns; a cell that is not a finite number is one
  DataError naming where (`where(row)`), the column and the value;
- `labels(column)`: (values, codes): the distinct class labels as Python values (1, 2.5, 'yes')
  and an int64 code per row indexing into them; a missing label is a DataError;
- `where(row)`: the location of data row `row` (0-based) in messages: `t.csv:12`, `t.parquet: row 11`;
- `names()`: one name per row for `nncli predict` (`t.csv:12`);
- `release()`: drop what the table holds once the arrays are out (peak memory).
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from ..memory import available_memory, human_bytes
from ..registry import did_you_mean
from .base import DataInfo, Dataset, DataSource, Split, split_rows


def check_fits(path, rows: int, columns: int, bytes_per_row: int) -> None:
    """Refuse, before anything large is allocated, a source whose arrays (`bytes_per_row` for each of
    `rows` rows, reading included) would not fit in the memory available: one line with the sizes."""
    need = rows * bytes_per_row
    available = available_memory()
    if available is not None and need > available:
        raise DataError(
            f"{path}: {rows:,} rows × {columns} columns need about {human_bytes(need)} of memory to load, "
            f"but {human_bytes(available)} is available; use a smaller file or the npy source (memory-mapped)"
        )


def merge_labels(converted: list, codes: np.ndarray) -> tuple[list, np.ndarray]:
    """Distinct raw cells that mean the same label ('1' and '1.0' -> 1) merged: (distinct values, codes)."""
    distinct: dict = {}
    remap = np.empty(len(converted), np.int64)
    for i, value in enumerate(converted):
        key = (type(value) is str, value)
        remap[i] = distinct.setdefault(key, len(distinct))
    return [key[1] for key in distinct], remap[codes] if len(converted) else codes


def small_integers(values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(distinct values, codes) of a column of small whole numbers (class labels 0..K) by counting, not sorting; else None."""
    if not len(values):
        return None
    low, high = values.min(), values.max()
    if not (np.isfinite(low) and np.isfinite(high)) or high - low > 1 << 16:
        return None
    codes = values.astype(np.int64)
    if not (codes == values).all():
        return None
    codes -= int(low)
    present = np.flatnonzero(np.bincount(codes))
    lookup = np.zeros(int(high - low) + 1, np.int64)
    lookup[present] = np.arange(len(present))
    np.take(lookup, codes, out=codes)
    return present + int(low), codes


def number_labels(values: np.ndarray) -> tuple[list, np.ndarray, np.ndarray]:
    """Class labels held as numbers (a float or integer column): (distinct values: whole numbers as int,
    others as float; a code per row; which distinct values are missing (NaN))."""
    small = small_integers(values)
    if small is not None:
        uniq, codes = small
        return [int(v) for v in uniq.tolist()], codes, np.zeros(len(uniq), bool)
    uniq, codes = np.unique(values, return_inverse=True)
    codes = codes.reshape(-1)
    missing = np.isnan(uniq) if uniq.dtype.kind == "f" else np.zeros(len(uniq), bool)
    if missing.any():  # np.unique keeps every NaN apart: one code for them all
        first = int(np.flatnonzero(missing)[0])
        codes = np.where(missing[codes], first, codes)
    converted = [int(v) if float(v).is_integer() else float(v) for v in uniq.tolist()]
    return converted, codes, missing


def check_classes(path, name: str, values: list, rows: int) -> list:
    """The sorted distinct labels of column `name`, refused when they cannot be classes: a single one, real
    numbers, or so many that most rows hold a value of their own (a continuous target: nothing to split by)."""
    classes = sorted(values, key=lambda v: (isinstance(v, str), v))
    if len(classes) < 2:
        raise DataError(f"{path}: column '{name}' holds a single class ({classes[0]!r}); need two or more")
    real = [v for v in classes if isinstance(v, float)]
    if real or (len(classes) > 2 and 2 * len(classes) > rows):
        what = f", real numbers such as {real[0]:g}" if real else ""
        raise DataError(
            f"{path}: target column '{name}' holds {len(classes)} distinct values in {rows} rows{what}; "
            "classification needs class labels, each shared by several rows; to predict the numbers set data.task: regression"
        )
    return classes


def class_index(path, values: list, codes: np.ndarray, classes: list) -> np.ndarray:
    """Per-row class indices into `classes` from (distinct values, codes); a label not among them is a DataError."""
    lookup = {(isinstance(c, str), c): i for i, c in enumerate(classes)}
    index = np.empty(len(values), np.int64)
    for i, v in enumerate(values):
        if (isinstance(v, str), v) not in lookup:
            raise DataError(f"{path}: label {v!r} is not one of the classes {classes}")
        index[i] = lookup[(isinstance(v, str), v)]
    return index[codes]


def column_statistics(values: np.ndarray, rows: np.ndarray, block: int = 1 << 16) -> tuple[np.ndarray, np.ndarray]:
    """values[rows].mean(axis=0) and .std(axis=0) of a (N, k) array, bit for bit as numpy computes them (a
    reduction over axis 0 adds row after row, so carrying the partial sum from block to block changes
    nothing), without copying the rows out: a block at a time."""
    n, k = len(rows), values.shape[1]
    if k < 2 or n <= block:  # one column is reduced pairwise (it is contiguous): numpy's own way, on a copy
        chosen = values[rows]
        return chosen.mean(axis=0), chosen.std(axis=0)
    total = np.zeros((1, k))
    for start in range(0, n, block):
        total = np.add.reduce(np.concatenate([total, values[rows[start : start + block]]]), axis=0, keepdims=True)
    mean = total[0] / n
    squares = np.zeros((1, k))
    for start in range(0, n, block):
        d = values[rows[start : start + block]] - mean
        d *= d
        squares = np.add.reduce(np.concatenate([squares, d]), axis=0, keepdims=True)
    return mean, np.sqrt(squares[0] / n)


def _rows32(values: np.ndarray, index: np.ndarray, block: int = 1 << 16) -> np.ndarray:
    """values[index].astype(float32), the same numbers, copied a block of rows at a time."""
    out = np.empty((len(index), *values.shape[1:]), np.float32)
    for start in range(0, len(index), block):
        out[start : start + block] = values[index[start : start + block]]
    return out


class TabularSource(DataSource):
    """Base class of sources whose data is a table with named columns (see the module docstring)."""

    kind = "table"  # the source's name in descriptions: "t.csv (csv)"
    path: str
    task: str
    target: str | int | list

    def _check(self, task, target, standardize_target) -> None:
        if task == "classification" and isinstance(target, list):
            raise ValueError("a list of target columns needs data.task: regression; a classification has one class column")
        if task == "classification" and standardize_target:
            raise ValueError("standardize_target applies to a regression's target values (data.task: regression), not to class labels")
        if isinstance(target, list) and not target:
            raise ValueError("target: list at least one target column")

    def _table(self, path: str, with_target: bool = True):
        """The table read from `path` (implemented by each source)."""
        raise NotImplementedError

    @property
    def regression(self) -> bool:
        return self.task == "regression"

    # -- columns ------------------------------------------------------------------------------
    def _parse(self, preprocessing: dict | None = None):
        """The table, its target column(s) (one for a classification) and feature columns.

        With a checkpoint's `preprocessing` the columns it was trained on are
        found by name, so a file with the same columns in another order (or
        with extra ones) is read the same way; a missing one is an error.
        """
        table = self._table(self.path)
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

    def _column_index(self, table, target: str | int) -> int:
        if isinstance(target, int):
            n = len(table.header)
            if not -n <= target < n:
                raise DataError(f"{table.path}: target column index {target} is out of range ({n} columns)")
            return target % n
        if target not in table.header:
            hint = did_you_mean(target, table.header)
            raise DataError(f"{table.path}: no column named '{target}'.{hint} Columns: {', '.join(table.header)}")
        return table.header.index(target)

    def _target_columns(self, table) -> list[int]:
        listed = self.target if isinstance(self.target, list) else [self.target]
        columns = [self._column_index(table, t) for t in listed]
        for i, c in enumerate(columns):
            if c in columns[:i]:
                raise DataError(f"{self.path}: target column '{table.header[c]}' is listed twice")
        if len(columns) >= len(table.header):
            raise DataError(f"{self.path}: every column is a target; need at least one feature column")
        return columns

    def _trained_column(self, table, name: str) -> int:
        if name not in table.header:
            hint = did_you_mean(name, table.header)
            raise DataError(f"{self.path}: no column named '{name}', which the checkpoint was trained on.{hint} Columns: {', '.join(table.header)}")
        return table.header.index(name)

    def _classes(self, table, target: int, values: list, codes: np.ndarray) -> list:
        return check_classes(self.path, table.header[target], values, len(codes))

    # -- the source's two jobs ------------------------------------------------------------------
    def inspect(self) -> DataInfo:
        table, targets, features = self._parse()
        if self.regression:
            return DataInfo((len(features),), None, len(table), num_targets=len(targets))
        values, codes = table.labels(targets[0])
        return DataInfo((len(features),), len(self._classes(table, targets[0], values, codes)), len(table))

    def load(self, seed, preprocessing=None):
        table, targets, feature_cols = self._parse(preprocessing)
        description = f"{self.path} ({self.kind})"
        x = table.numbers(feature_cols)
        if self.regression:
            y = table.numbers(targets)  # numbers: a bad cell is one error naming its row, column and value
            classes = []
            strata = np.zeros(len(y), np.int64)  # no classes to stratify by: the splits are a seeded permutation
        else:
            values, codes = table.labels(targets[0])
            stored = (preprocessing or {}).get("classes")
            classes = stored or self._classes(table, targets[0], values, codes)  # a checkpoint's classes are what it predicts
            y = strata = class_index(self.path, values, codes, classes)
            del codes
        table.release()

        train_idx, val_idx, test_idx = split_rows(strata, self, seed, description)

        stats = {}
        if self.standardize:
            mean, std = self._statistics(x, train_idx, preprocessing, ("mean", "std"), table, feature_cols, "features")
            with np.errstate(over="ignore", invalid="ignore"):
                x -= mean  # in place: the same values as (x - mean) / std without a second (N, k) array
                x /= std
            stats = {"mean": mean.tolist(), "std": std.tolist()}
        self._check_float32(x, table, feature_cols)  # x stays float64: each split is cast as it is copied out
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
            return Split(_rows32(x, index), y[index]) if len(index) else None

        if self.regression:
            columns = {"task": "regression", "targets": [table.header[c] for c in targets]}
        else:
            columns = {"classes": list(classes), "target": table.header[targets[0]]}
        train, val, test = Split(_rows32(x, train_idx), y[train_idx]), part(val_idx), part(test_idx)
        del x  # the splits are copies: the whole (float64) array goes before the model is built
        return Dataset(
            train=train,
            val=val,
            test=test,
            input_shape=(len(feature_cols),),
            classes=list(classes),
            preprocessing={**columns, "features": [table.header[c] for c in feature_cols], **stats},
            description=description,
            task=self.task,
            targets=[table.header[c] for c in targets] if self.regression else [],
            target_scale=target_scale,
        )

    def read_inputs(self, path, preprocessing, input_shape, resize=True, invert=False):
        """Rows of a table with a header: the trained feature columns by name (any other column, the target
        among them, is ignored), standardised with the checkpoint's statistics. Names: file:line (file:row)."""
        table = self._table(str(path), with_target=False)
        names = preprocessing.get("features") or []
        missing = [n for n in names if n not in table.header]
        if missing:
            raise DataError(f"{path}: no column {', '.join(repr(m) for m in missing)}; the model was trained on {', '.join(names)}")
        x = table.numbers([table.header.index(n) for n in names])
        x = standardized(x, preprocessing)
        if not np.isfinite(x).all():
            row, col = np.argwhere(~np.isfinite(x))[0]
            raise DataError(f"{table.where(row)}: column '{names[col]}': value is too large for float32")
        return table.names(), x

    def _statistics(self, values, train_idx, preprocessing, keys, table, columns, what) -> tuple[np.ndarray, np.ndarray]:
        """Per-column (mean, std) of the training rows, or a checkpoint's under `keys`; a constant column keeps std 1."""
        if preprocessing and keys[0] in preprocessing:
            mean = np.array(preprocessing[keys[0]], np.float64)
            std = np.array(preprocessing[keys[1]], np.float64)
            if mean.shape != (len(columns),):
                raise DataError(f"{self.path}: has {len(columns)} {what}, the checkpoint was trained on {len(mean)}")
            return mean, std
        with np.errstate(over="ignore", invalid="ignore"):
            mean, std = column_statistics(values, train_idx)
        std[std == 0] = 1.0  # a constant column stays constant (zero) instead of dividing by 0
        bad = ~(np.isfinite(mean) & np.isfinite(std))
        if bad.any():
            name = table.header[columns[int(np.argmax(bad))]]
            raise DataError(f"{self.path}: column '{name}': values too large to standardise")
        return mean, std

    def _check_float32(self, values, table, columns, block: int = 1 << 16) -> None:
        """_float32's check, a block of rows at a time (no float32 copy of the whole array)."""
        for start in range(0, len(values), block):
            with np.errstate(over="ignore", invalid="ignore"):
                part = values[start : start + block].astype(np.float32)
            if not np.isfinite(part).all():
                row, col = np.argwhere(~np.isfinite(part))[0]
                raise DataError(f"{table.where(start + row)}: column '{table.header[columns[col]]}': value is too large for float32 training")

    def _float32(self, values, table, columns) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            values = values.astype(np.float32)
        if not np.isfinite(values).all():
            row, col = np.argwhere(~np.isfinite(values))[0]
            raise DataError(f"{table.where(row)}: column '{table.header[columns[col]]}': value is too large for float32 training")
        return values


def standardized(x: np.ndarray, preprocessing: dict) -> np.ndarray:
    """New inputs standardised with a checkpoint's statistics (when it kept any), as float32; a value too large
    for float32 becomes inf, for the caller to report with its position."""
    with np.errstate(over="ignore", invalid="ignore"):
        if "mean" in preprocessing:
            x = (x - np.asarray(preprocessing["mean"])) / np.asarray(preprocessing["std"])
        return x.astype(np.float32)
