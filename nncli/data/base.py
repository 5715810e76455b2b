"""Data sources and the in-memory data set they produce.

A source is a registered component (`data: {source: idx|csv|ts, ...}`) with two
jobs: `inspect()` reads only headers (input shape, class count) so `nncli
summary` and shape checks need no data, and `load()` returns a `Dataset` of
float32 inputs and integer class labels (or, for a regression, float32
target values), split into train / validation / test. Preprocessing statistics are fitted on the training part only and
returned as plain JSON (`preprocessing`), which checkpoints store so that
`nncli eval` reproduces the exact transformation.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..files import read_at_most
from ..registry import Registry

DATA_SOURCES = Registry("data source", type_key="source")

SPLITS = ("train", "val", "test")


def is_regression(y: np.ndarray) -> bool:
    """Targets of a regression are float values (N, T); class labels are integer indices (N,)."""
    return y.dtype.kind == "f"


@dataclass
class Split:
    """Inputs x (N, *input_shape) float32 and targets y: (N,) int64 class indices, or for a
    regression (data.task: regression) (N, T) float32 values of the T target columns."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    @property
    def regression(self) -> bool:
        return is_regression(self.y)


@dataclass
class DataInfo:
    """What shape checks need, read from headers only."""

    input_shape: tuple[int, ...]
    num_classes: int | None
    rows: int | None = None  # training rows in the file(s), when the headers tell (bounds a batch)
    num_targets: int | None = None  # a regression's target columns (None: classification)


@dataclass
class Dataset:
    train: Split
    val: Split | None
    test: Split | None
    input_shape: tuple[int, ...]
    classes: list  # original label values; position = class index
    preprocessing: dict = field(default_factory=dict)  # JSON: classes, standardisation statistics, ...
    description: str = ""
    augment: object | None = None  # callable (x, rng) -> x applied to training batches, or None
    task: str = "classification"  # or "regression": y holds target values, `classes` is empty
    targets: list = field(default_factory=list)  # a regression's target column names
    target_scale: tuple[np.ndarray, np.ndarray] | None = None  # (mean, std) the targets were standardised with

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def regression(self) -> bool:
        return self.task == "regression"

    @property
    def num_targets(self) -> int | None:
        """T for a regression, None for a classification (what a loss's check is told)."""
        return len(self.targets) if self.regression else None

    def in_target_units(self, values: np.ndarray) -> np.ndarray:
        """(N, T) targets or model outputs in the target's own units (undoing data.standardize_target), float64."""
        values = np.asarray(values, np.float64)
        if self.target_scale is None:
            return values
        mean, std = self.target_scale
        return values * std + mean

    def split(self, name: str) -> Split:
        part = getattr(self, name, None) if name in SPLITS else None
        if part is None or len(part) == 0:
            hint = {
                "val": "set data.validation_split above 0",
                "test": "this data source has no test part",
            }.get(name, "")
            raise DataError(f"{self.description}: there is no '{name}' split{'; ' + hint if hint else ''}")
        return part


class DataSource:
    """Base class for registered data sources."""

    registered_name = "source"
    spec: dict
    path: str

    def inspect(self) -> DataInfo:
        raise NotImplementedError

    def load(self, seed: np.random.SeedSequence, preprocessing: dict | None = None) -> Dataset:
        """Read, split and preprocess. `preprocessing` (from a checkpoint) replaces fitted statistics."""
        raise NotImplementedError

    def read_inputs(self, path: Path, preprocessing: dict, input_shape: tuple[int, ...], resize: bool = True,
                    invert: bool = False) -> tuple[list[str], np.ndarray]:
        """New inputs for `nncli predict`, prepared exactly as this source prepared its training data (with the
        checkpoint's `preprocessing`): a name per input and float32 (n, *input_shape). A file that does not fit
        is one DataError naming it and what does not fit."""
        raise DataError(f"{path}: a {self.spec['source']} model takes no input files to predict")

    def with_path(self, path: str) -> DataSource:
        """A copy of this source reading from another path (`nncli eval --data-path`)."""
        spec = {**self.spec, "path": str(path)}
        return DATA_SOURCES.create(spec, ("data",))


def existing(path: str | Path, what: str, key: str = "path") -> Path:
    """`path` (the source's data.path, or data.<key>) as a Path; a missing one is the config's fault, located there."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{path}: no such {what} (paths are relative to the current directory)", ("data", key))
    return p


MAX_TEXT_BYTES = 256 << 20  # .ts and pattern files are parsed as text in memory (csv has no cap: see csv.py)


def read_text(path: str | Path, source: str, kind: str, what: str = "file", key: str = "path",
              limit: int | None = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of a data file, or one DataError naming it: missing (located at data.<key>), a folder,
    unreadable, larger than `limit` bytes (None: no limit), binary, not UTF-8. `source` and `kind` word the messages."""
    p = existing(path, what, key)
    if p.is_dir():
        raise DataError(f"{path}: is a folder; data.source: {source} needs a {kind} file")
    try:
        with open(p, "rb") as f:
            raw = f.read() if limit is None else read_at_most(f, limit)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if limit is not None and len(raw) > limit:
        raise DataError(f"{path}: larger than {limit >> 20} MiB")
    if b"\x00" in raw:
        raise DataError(f"{path}: binary file, not {kind} text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def stratified_split(
    y: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out): `fraction` of each class held out after a seeded shuffle."""
    if fraction <= 0:
        return np.arange(len(y)), np.arange(0)
    held = []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        held.append(members[: int(round(fraction * len(members)))])
    held_idx = np.sort(np.concatenate(held))
    mask = np.ones(len(y), bool)
    mask[held_idx] = False
    return np.flatnonzero(mask), held_idx


def stratified_subset(y: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A seeded subset of `size` indices with (nearly) the class proportions of y."""
    if size >= len(y):
        return np.arange(len(y))
    _, held = stratified_split(y, size / len(y), rng)
    return held


def encode_labels(values: np.ndarray, classes: list, where: str) -> np.ndarray:
    """Map label values to indices into `classes`; unknown labels are a DataError."""
    lookup = {c: i for i, c in enumerate(classes)}
    try:
        return np.fromiter((lookup[v] for v in values.tolist()), np.int64, count=len(values))
    except KeyError as exc:
        raise DataError(f"{where}: label {exc.args[0]!r} is not one of the classes {classes}") from None


def split_off(
    y: np.ndarray, fraction: float, rng: np.random.Generator, description: str, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """stratified_split that refuses to hold out nothing, or everything, when asked for a split."""
    kept, held = stratified_split(y, fraction, rng)
    if fraction > 0 and len(held) == 0:
        raise DataError(
            f"{description}: {name}_split={fraction:g} of {len(y)} rows holds out none; use more data or a larger split"
        )
    if len(kept) < 2:
        raise DataError(
            f"{description}: {name}_split={fraction:g} of {len(y)} rows leaves {len(kept)} to train on; too few rows for the splits"
        )
    return kept, held


def split_rows(strata: np.ndarray, source, seed, description: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, validation, test) row indices of a table: the test split, then a `limit` subset of the rest, then the
    validation split, each stratified by `strata` and seeded; `source` has test_split, validation_split and limit."""
    rng = np.random.default_rng(seed)
    rest, test_idx = split_off(strata, source.test_split, rng, description, "test")
    if source.limit is not None:
        rest = rest[stratified_subset(strata[rest], source.limit, rng)]
    kept, val_local = split_off(strata[rest], source.validation_split, rng, description, "validation")
    return rest[kept], rest[val_local], test_idx


# -- progress while a large file loads --------------------------------------------------------
# Sources report (what, done, total) in bytes or rows; whoever loads (api.train) decides where it goes.
PROGRESS_MIN_BYTES = 16 << 20  # smaller files load in well under a second: no progress for them
_progress: contextvars.ContextVar[Callable[[str, int, int], None] | None] = contextvars.ContextVar("nncli_load_progress", default=None)


@contextlib.contextmanager
def load_progress(report: Callable[[str, int, int], None] | None) -> Iterator[None]:
    """While active, sources call `report(what, done, total)` as they read a large file (done == total at the end)."""
    token = _progress.set(report)
    try:
        yield
    finally:
        _progress.reset(token)


def progress(what: str, done: int, total: int) -> None:
    """Report loading progress, if anyone listens."""
    report = _progress.get()
    if report is not None:
        report(what, done, total)


class ProgressMeter:
    """Throttled progress of one file: `advance(n)` as bytes (or rows) are read, `finish()` at the end."""

    EVERY = 0.1  # seconds between reports

    def __init__(self, what: str, total: int):
        self.what, self.total, self.done = what, total, 0
        self.active = _progress.get() is not None and total > 0
        self._last = 0.0
        if self.active:
            progress(what, 0, total)

    def advance(self, n: int) -> None:
        self.done += n
        if self.active:
            now = time.perf_counter()
            if now - self._last >= self.EVERY:
                self._last = now
                progress(self.what, min(self.done, self.total), self.total)

    def finish(self) -> None:
        if self.active:
            progress(self.what, self.total, self.total)


class Rows:
    """Rows `index` of a (memory-mapped) array, standardised as they are read: what a split of the `npy`
    source holds instead of a copy, so memory stays bounded by the batch. `rows[key]` (an int, slice or
    index array into the split) gathers only those rows: ((raw - mean) / std) in float64, then `dtype`."""

    def __init__(self, base: np.ndarray, index: np.ndarray, mean: np.ndarray | None = None,
                 std: np.ndarray | None = None, dtype=np.float32):
        self.base, self.index, self.mean, self.std = base, np.asarray(index, np.int64), mean, std
        self.dtype = np.dtype(dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.base.shape[1:])

    @property
    def ndim(self) -> int:
        return self.base.ndim

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key) -> np.ndarray:
        rows = self.index[key]
        single = np.ndim(rows) == 0
        rows = np.atleast_1d(rows)
        order = np.argsort(rows, kind="stable")  # read the file forwards; put the rows back in the asked order
        raw = np.asarray(self.base[rows[order]], np.float64)
        out = np.empty_like(raw)
        out[order] = raw
        if self.mean is not None:
            with np.errstate(over="ignore", invalid="ignore"):
                out -= self.mean
                out /= self.std
        with np.errstate(over="ignore", invalid="ignore"):
            out = out.astype(self.dtype)
        return out[0] if single else out

    def take(self, indices, axis: int = 0, out: np.ndarray | None = None, mode: str = "raise") -> np.ndarray:
        """np.take(rows, indices, axis=0, out=buffer), as the trainer gathers a batch."""
        if axis != 0:
            raise ValueError("Rows are taken along axis 0 only")
        rows = self[indices]
        if out is None:
            return rows
        out[...] = rows
        return out

    def astype(self, dtype, copy: bool = True) -> Rows:
        return self if np.dtype(dtype) == self.dtype and not copy else Rows(self.base, self.index, self.mean, self.std, dtype)

    def reshape(self, *shape) -> np.ndarray:
        return np.asarray(self).reshape(*shape)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """All the rows at once (full-batch methods need them together)."""
        out = self[:]
        return out if dtype is None else out.astype(dtype)
