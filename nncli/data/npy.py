"""Features and labels as NumPy arrays: `npy` (a features .npy, memory-mapped, and a labels .npy) and `npz`
(one archive holding both).

The features are never copied whole: the splits are index sets into the (memory-mapped) array
(`Rows`), the standardisation statistics come from one streaming pass over it, in blocks, and a
batch gathers and standardises only its own rows. Memory stays bounded by the batch (and the
labels, which are read whole), not by the file. Otherwise the rules are the csv source's:
stratified seeded splits, training-part statistics stored in the checkpoint, `predict` on a new
.npy (or .npz) of features, one error line naming the file and what is wrong.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import DataError
from ..registry import Fraction, NonNegativeInt, PositiveInt, did_you_mean
from .base import DATA_SOURCES, PROGRESS_MIN_BYTES, DataInfo, Dataset, DataSource, ProgressMeter, Rows, Split, existing, split_rows
from .tabular import check_classes, check_fits, class_index, merge_labels, number_labels, standardized

_BLOCK_BYTES = 8 << 20  # rows read at a time by the statistics pass
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if "pickle" in text or "Python objects" in text:
        return "pickled data; nncli loads plain arrays only"
    return text.splitlines()[0] if text else type(exc).__name__


def _open_npy(path: str, key: str, mmap: bool) -> np.ndarray:
    """The array in a .npy file (memory-mapped when `mmap`), or one DataError naming the file."""
    p = existing(path, ".npy file", key)
    if p.is_dir():
        raise DataError(f"{path}: is a folder, not a .npy file")
    try:
        array = np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({_reason(exc)})") from None
    if isinstance(array, np.lib.npyio.NpzFile):
        array.close()
        raise DataError(f"{path}: is an .npz archive; use data.source: npz")
    return array


def _open_npz(path: str, key: str = "path") -> np.lib.npyio.NpzFile:
    p = existing(path, ".npz file", key)
    if p.is_dir():
        raise DataError(f"{path}: is a folder, not an .npz file")
    try:
        archive = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({str(exc).splitlines()[0] or type(exc).__name__})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: is a single .npy array, not an .npz archive; use data.source: npy")
    return archive


def _member_header(archive, path: str, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of an archive member from its header alone (nothing decompressed beyond it)."""
    if name not in archive.files:
        hint = did_you_mean(name, archive.files)
        raise DataError(f"{path}: no array '{name}'.{hint} It holds: {', '.join(archive.files) or 'nothing'}")
    try:
        with archive.zip.open(f"{name}.npy") as f:
            version = np.lib.format.read_magic(f)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = reader(f)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DataError(f"{path}: array '{name}' is not readable ({str(exc).splitlines()[0] or type(exc).__name__})") from None
    return shape, dtype


def _member(archive, path: str, name: str) -> np.ndarray:
    try:
        return archive[name]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: array '{name}' is not readable ({_reason(exc)})") from None


def _check_features(where: str, x: np.ndarray) -> None:
    if x.ndim < 2:
        raise DataError(f"{where}: features must be an array of shape (rows, features...), got shape {x.shape}")
    if x.dtype.kind not in "biuf":
        raise DataError(f"{where}: features are {x.dtype}, not numbers")
    if len(x) == 0 or math.prod(x.shape[1:]) == 0:
        raise DataError(f"{where}: has no rows or no features (shape {x.shape})")


def _position(index) -> str:
    """'column 3' for (N, k) features, 'position (1, 2)' for images."""
    return f"column {int(index[0])}" if len(index) == 1 else f"position {tuple(int(i) for i in index)}"


def _stream_statistics(x, train: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One pass over the features in blocks: (mean, std of the training rows, min, max of all rows), float64
    over x.shape[1:]; a value that is not finite is one DataError naming its row (from 1) and column.
    Block statistics are merged with Chan et al.'s parallel update (no sum of squares to lose precision)."""
    shape = x.shape[1:]
    rows = max(1, _BLOCK_BYTES // max(1, math.prod(shape) * 8))
    count, mean, m2 = 0, np.zeros(shape), np.zeros(shape)
    low, high = np.full(shape, np.inf), np.full(shape, -np.inf)
    meter = ProgressMeter(f"reading {Path(where).name}", len(x)) if x.nbytes >= PROGRESS_MIN_BYTES else None
    for start in range(0, len(x), rows):
        block = np.asarray(x[start : start + rows], np.float64)
        bad = ~np.isfinite(block)
        if bad.any():
            r, *index = np.argwhere(bad)[0]
            value = block[(r, *index)]
            what = "is missing (nan)" if np.isnan(value) else f"{value:g} is not a finite number"
            raise DataError(f"{where}: row {start + r + 1}: {_position(index)}: value {what}")
        np.minimum(low, block.min(axis=0), out=low)
        np.maximum(high, block.max(axis=0), out=high)
        chosen = block[train[start : start + len(block)]]
        if len(chosen):
            n = len(chosen)
            with np.errstate(over="ignore", invalid="ignore"):  # overflow: caught as non-finite statistics
                block_mean = chosen.mean(axis=0)
                block_m2 = ((chosen - block_mean) ** 2).sum(axis=0)
                delta = block_mean - mean
                total = count + n
                mean = mean + delta * (n / total)
                m2 = m2 + block_m2 + delta**2 * (count * n / total)
            count = total
        if meter is not None:
            meter.advance(len(block))
    if meter is not None:
        meter.finish()
    with np.errstate(over="ignore", invalid="ignore"):
        std = np.sqrt(m2 / max(count, 1))
    return mean, std, low, high


@DATA_SOURCES.register("npy")
class NpySource(DataSource):
    """Features and labels as two .npy files: features (rows, features...) memory-mapped, so batches read only their own rows; labels (rows,) class labels (numbers or strings), or numeric targets (rows,) / (rows, T) for task regression.

    Options:
    path: the features .npy, shape (rows, features...), any numeric dtype (relative to the current directory)
    labels: the labels .npy, one per row (rows,): class labels, or for a regression numbers (rows,) or (rows, T)
    task: classification (labels are class labels) or regression (labels are numbers)
    test_split: fraction held out as the test split (stratified by class, seeded; a seeded permutation for a regression)
    validation_split: fraction of the remaining rows held out for validation
    standardize: scale features to zero mean, unit variance with training-part statistics (one streaming pass; applied per batch)
    standardize_target: regression: scale each target to zero mean, unit variance with training-part statistics (null: true for a regression); metrics are reported in the target's own units
    limit: use a seeded, stratified subset of this many training rows
    split_seed: seeds the splits and limit; null uses the run seed. Fix it to give every `--seeds` run one split (an ensemble)
    """

    kind = "npy"

    def __init__(
        self,
        path: str,
        labels: str,
        task: Literal["classification", "regression"] = "classification",
        test_split: Fraction = 0.2,
        validation_split: Fraction = 0.1,
        standardize: bool = True,
        standardize_target: bool | None = None,
        limit: PositiveInt | None = None,
        split_seed: NonNegativeInt | None = None,
    ):
        if task == "classification" and standardize_target:
            raise ValueError("standardize_target applies to a regression's target values (data.task: regression), not to class labels")
        self.path = path
        self.labels = labels
        self.task = task
        self.test_split = test_split
        self.validation_split = validation_split
        self.standardize = standardize
        self.standardize_target = standardize_target
        self.limit = limit
        self.split_seed = split_seed

    @property
    def regression(self) -> bool:
        return self.task == "regression"

    # -- the arrays -------------------------------------------------------------------------------
    def _features(self) -> tuple[np.ndarray, str]:
        """(features, where) with where naming them in messages; memory-mapped."""
        x = _open_npy(self.path, "path", mmap=True)
        _check_features(self.path, x)
        return x, self.path

    def _targets(self, rows: int) -> tuple[np.ndarray, str, str]:
        """(labels, where, name): labels read whole; name is the target's name in the preprocessing."""
        return np.asarray(_open_npy(self.labels, "labels", mmap=False)), self.labels, Path(self.labels).stem

    def _both(self):
        x, x_where = self._features()
        y, y_where, name = self._targets(len(x))
        if y.ndim == 0 or len(y) != len(x):
            got = "a single value" if y.ndim == 0 else f"{len(y)} rows"
            raise DataError(f"{y_where}: has {got}, the features ({x_where}) have {len(x)} rows")
        if not self.regression and not (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)):
            raise DataError(f"{y_where}: class labels must be one per row, shape (rows,), got {y.shape}; for numbers set data.task: regression")
        if self.regression and y.ndim > 2:
            raise DataError(f"{y_where}: regression targets must have shape (rows,) or (rows, T), got {y.shape}")
        return x, x_where, y, y_where, name

    def _labels(self, y: np.ndarray, where: str) -> tuple[list, np.ndarray]:
        y = y.reshape(-1)
        if y.dtype.kind in "US":
            uniq, codes = np.unique(y, return_inverse=True)
            values = [v.decode() if isinstance(v, bytes) else str(v) for v in uniq.tolist()]
            missing = np.zeros(len(values), bool)
        elif y.dtype.kind in "biuf":
            if y.dtype.kind == "f" and np.isinf(y).any():
                row = int(np.flatnonzero(np.isinf(y))[0])
                raise DataError(f"{where}: row {row + 1}: class label {y[row]} is not a finite number")
            values, codes, missing = number_labels(y.astype(np.int64) if y.dtype.kind == "b" else y)
            if y.dtype.kind == "b":
                values = [bool(v) for v in values]
        else:
            raise DataError(f"{where}: labels are {y.dtype}; class labels are numbers or strings")
        codes = codes.reshape(-1)
        if missing.any():
            row = int(np.flatnonzero(missing[codes])[0])
            raise DataError(f"{where}: row {row + 1}: class label is missing (nan)")
        return merge_labels(values, codes)

    def _regression_targets(self, y: np.ndarray, where: str) -> np.ndarray:
        if y.dtype.kind not in "biuf":
            raise DataError(f"{where}: regression targets are {y.dtype}, not numbers")
        y = y.reshape(len(y), -1).astype(np.float64)
        bad = ~np.isfinite(y)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise DataError(f"{where}: row {r + 1}: column {c}: value {y[r, c]:g} is not a finite number")
        return y

    @staticmethod
    def _target_names(name: str, y: np.ndarray) -> list[str]:
        width = 1 if y.ndim == 1 else y.shape[1]
        return [name] if width == 1 else [f"{name}[{t}]" for t in range(width)]

    # -- the source's two jobs ----------------------------------------------------------------------
    def inspect(self) -> DataInfo:
        x, x_where, y, y_where, name = self._both()
        if self.regression:
            return DataInfo(tuple(x.shape[1:]), None, len(x), num_targets=len(self._target_names(name, y)))
        values, codes = self._labels(y, y_where)
        return DataInfo(tuple(x.shape[1:]), len(check_classes(y_where, name, values, len(codes))), len(x))

    def load(self, seed, preprocessing=None):
        x, x_where, y_raw, y_where, name = self._both()
        prep = preprocessing or {}
        description = f"{x_where} ({self.kind})"
        if prep and prep.get("task", "classification") != self.task:
            raise DataError(f"{x_where}: the checkpoint's preprocessing is for a {prep.get('task', 'classification')}, its config's data.task is {self.task}")
        if self.regression:
            y = self._regression_targets(y_raw, y_where)
            targets = self._target_names(name, y_raw)
            classes = []
            strata = np.zeros(len(y), np.int64)
        else:
            values, codes = self._labels(y_raw, y_where)
            classes = prep.get("classes") or check_classes(y_where, name, values, len(codes))
            y = strata = class_index(y_where, values, codes, classes)
        del y_raw

        train_idx, val_idx, test_idx = split_rows(strata, self, seed, description)

        in_train = np.zeros(len(x), bool)
        in_train[train_idx] = True
        mean, std, low, high = _stream_statistics(x, in_train, x_where)
        stats = {}
        if self.standardize:
            if "mean" in prep:
                mean, std = np.array(prep["mean"], np.float64), np.array(prep["std"], np.float64)
                if mean.shape != x.shape[1:]:
                    raise DataError(f"{x_where}: has features of shape {x.shape[1:]}, the checkpoint was trained on {mean.shape}")
            std[std == 0] = 1.0  # a constant feature stays constant (zero) instead of dividing by 0
            if not (np.isfinite(mean).all() and np.isfinite(std).all()):
                raise DataError(f"{x_where}: values too large to standardise")
            with np.errstate(over="ignore", invalid="ignore"):
                extreme = np.maximum(np.abs(low - mean), np.abs(high - mean)) / std
            stats = {"mean": mean.tolist(), "std": std.tolist()}
        else:
            mean = std = None
            extreme = np.maximum(np.abs(low), np.abs(high))
        if not (extreme <= _FLOAT32_MAX).all():
            raise DataError(f"{x_where}: values too large for float32 training")

        target_scale = None
        if self.regression:
            if self.standardize_target is not False:
                if "target_mean" in prep:
                    t_mean, t_std = np.array(prep["target_mean"], np.float64), np.array(prep["target_std"], np.float64)
                    if t_mean.shape != (y.shape[1],):
                        raise DataError(f"{y_where}: has {y.shape[1]} targets, the checkpoint was trained on {len(t_mean)}")
                else:
                    with np.errstate(over="ignore", invalid="ignore"):
                        t_mean, t_std = y[train_idx].mean(axis=0), y[train_idx].std(axis=0)
                    t_std[t_std == 0] = 1.0
                    if not (np.isfinite(t_mean).all() and np.isfinite(t_std).all()):
                        raise DataError(f"{y_where}: values too large to standardise")
                with np.errstate(over="ignore", invalid="ignore"):
                    y = (y - t_mean) / t_std
                stats.update(target_mean=t_mean.tolist(), target_std=t_std.tolist())
                target_scale = (t_mean, t_std)
            with np.errstate(over="ignore", invalid="ignore"):
                y = y.astype(np.float32)
            if not np.isfinite(y).all():
                raise DataError(f"{y_where}: values too large for float32 training")

        def part(index):
            return Split(Rows(x, index, mean, std), y[index]) if len(index) else None

        columns = {"task": "regression", "targets": targets} if self.regression else {"classes": list(classes), "target": name}
        return Dataset(
            train=Split(Rows(x, train_idx, mean, std), y[train_idx]),
            val=part(val_idx),
            test=part(test_idx),
            input_shape=tuple(x.shape[1:]),
            classes=list(classes),
            preprocessing={**columns, **stats},
            description=description,
            task=self.task,
            targets=targets if self.regression else [],
            target_scale=target_scale,
        )

    def read_inputs(self, path, preprocessing, input_shape, resize=True, invert=False):
        """Rows of a features .npy (or the features array of an .npz), standardised with the checkpoint's
        statistics. Names: file:row (from 1)."""
        path = Path(path)
        if path.suffix == ".npz":
            archive = _open_npz(str(path))
            member = getattr(self, "features", "x")
            _member_header(archive, str(path), member)
            x, where = _member(archive, str(path), member), f"{path}: {member}"
        else:
            x, where = _open_npy(str(path), "path", mmap=False), str(path)
        _check_features(where, x)
        if tuple(x.shape[1:]) != tuple(input_shape):
            raise DataError(f"{where}: features of shape {tuple(x.shape[1:])}; the model takes {tuple(input_shape)}")
        x = np.asarray(x, np.float64)
        bad = ~np.isfinite(x)
        if bad.any():
            r, *index = np.argwhere(bad)[0]
            raise DataError(f"{where}: row {r + 1}: {_position(index)}: value {x[(r, *index)]:g} is not a finite number")
        x = standardized(x, preprocessing)
        if not np.isfinite(x).all():
            raise DataError(f"{where}: values too large for float32")
        return [f"{path.name}:{i}" for i in range(1, len(x) + 1)], x


@DATA_SOURCES.register("npz")
class NpzSource(NpySource):
    """Features and labels as two arrays in one .npz archive (read whole: compressed members cannot be memory-mapped; batches still standardise only their own rows).

    Options:
    path: the .npz archive (relative to the current directory)
    features: the name of its features array, shape (rows, features...)
    labels: the name of its labels array (rows,): class labels, or for a regression numbers (rows,) or (rows, T)
    task: classification (labels are class labels) or regression (labels are numbers)
    test_split: fraction held out as the test split (stratified by class, seeded; a seeded permutation for a regression)
    validation_split: fraction of the remaining rows held out for validation
    standardize: scale features to zero mean, unit variance with training-part statistics (one streaming pass; applied per batch)
    standardize_target: regression: scale each target to zero mean, unit variance with training-part statistics (null: true for a regression); metrics are reported in the target's own units
    limit: use a seeded, stratified subset of this many training rows
    split_seed: seeds the splits and limit; null uses the run seed. Fix it to give every `--seeds` run one split (an ensemble)
    """

    kind = "npz"

    def __init__(
        self,
        path: str,
        features: str = "x",
        labels: str = "y",
        task: Literal["classification", "regression"] = "classification",
        test_split: Fraction = 0.2,
        validation_split: Fraction = 0.1,
        standardize: bool = True,
        standardize_target: bool | None = None,
        limit: PositiveInt | None = None,
        split_seed: NonNegativeInt | None = None,
    ):
        super().__init__(path, labels, task, test_split, validation_split, standardize, standardize_target, limit, split_seed)
        self.features = features

    def _archive(self):
        if getattr(self, "_open", None) is None:
            self._open = _open_npz(self.path)
        return self._open

    def _features(self):
        archive = self._archive()
        shape, dtype = _member_header(archive, self.path, self.features)
        where = f"{self.path}: {self.features}"
        if len(shape) >= 2:
            per_row = math.prod(shape[1:])
            check_fits(where, shape[0], per_row, per_row * dtype.itemsize)  # read whole; batches are standardised copies
        x = _member(archive, self.path, self.features)
        _check_features(where, x)
        return x, where

    def _targets(self, rows):
        archive = self._archive()
        _member_header(archive, self.path, self.labels)
        return _member(archive, self.path, self.labels), f"{self.path}: {self.labels}", self.labels

    def _both(self):
        try:
            return super()._both()
        finally:
            if getattr(self, "_open", None) is not None:
                self._open.close()
                self._open = None
