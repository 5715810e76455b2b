"""Time series in the UEA/UCR (sktime) `.ts` text format: variable-length, multivariate, one class each.

A file is `#` comments, `@` header lines (`@dimensions 12`, `@classLabel true
1 2 3`, ...), `@data`, then one case per line: its D series (comma-separated
values) separated by `:`, then `:label`. Cases become x (N, T, D) float32,
padded at the end with NaN in every feature (the recurrent layers take an
all-NaN step for padding); T is the longest case of the training and test
files together, so both fit the one input shape the model is built for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..registry import Fraction, NonNegativeInt, PositiveInt, quoted
from .base import DATA_SOURCES, DataInfo, Dataset, DataSource, Split, encode_labels, read_text, split_off, stratified_subset
from .csv import _label_value, _number

_BOOLEAN_HEADERS = ("timestamps", "missing", "univariate", "equallength")
_HEADERS = ("problemName", "timeStamps", "missing", "univariate", "dimensions", "equalLength", "seriesLength", "classLabel", "targetLabel", "data")


def _sort_key(label):
    return (isinstance(label, str), label)  # as csv: numbers first, then strings


@dataclass
class _Cases:
    """A parsed .ts file: the frames of all cases stacked (F, D) float64, each case's length, label and line."""

    path: str
    frames: np.ndarray
    lengths: np.ndarray  # (N,) int64
    labels: list
    lines: list[int]
    classes: list  # the declared @classLabel set, sorted

    @property
    def dimensions(self) -> int:
        return self.frames.shape[1]

    def padded(self, length: int) -> np.ndarray:
        """(N, length, D) float64, NaN after each case's last frame."""
        longest = int(np.argmax(self.lengths))
        if self.lengths[longest] > length:
            raise DataError(
                f"{self.path}:{self.lines[longest]}: case has {self.lengths[longest]} steps, longer than the {length} the checkpoint was trained on"
            )
        x = np.full((len(self.lengths), length, self.dimensions), np.nan)
        x[np.arange(length) < self.lengths[:, None]] = self.frames  # row-major: case by case, step by step
        return x


def _flag(path: str, line: int, name: str, words: list[str]) -> bool:
    if len(words) != 1 or words[0].lower() not in ("true", "false"):
        raise DataError(f"{path}:{line}: @{name} takes true or false, got {' '.join(words) or 'nothing'}")
    return words[0].lower() == "true"


class _Parser:
    """Reads one file: the header lines, then the cases, each checked against the header."""

    def __init__(self, path: str, what: str = "file", key: str = "path", labelled: bool = True):
        self.path = path
        self.labelled = labelled  # False: new inputs to predict, whose labels (if any) are ignored
        self.text = read_text(path, "ts", ".ts", what, key)
        self.dimensions: int | None = None
        self.series_length: int | None = None  # checked when @equalLength is true
        self.equal_length = False
        self.declared: dict | None = None  # label value -> itself, from @classLabel

    def header(self, line: int, name: str, words: list[str]) -> None:
        key = name.lower()
        if key not in {h.lower() for h in _HEADERS}:
            raise DataError(f"{self.path}:{line}: unknown header {quoted('@' + name)}; known: {', '.join('@' + h for h in _HEADERS)}")
        if key in _BOOLEAN_HEADERS:
            value = _flag(self.path, line, name, words)
            if key == "timestamps" and value:
                raise DataError(f"{self.path}:{line}: @timeStamps true (time-stamped values) is not supported; give plain values")
            if key == "univariate" and value:
                self.dimensions = self.dimensions or 1
            if key == "equallength":
                self.equal_length = value
        elif key in ("dimensions", "serieslength"):
            count = _number(words[0]) if len(words) == 1 else None
            if count is None or not count.is_integer() or count < 1:
                raise DataError(f"{self.path}:{line}: @{name} takes a positive integer, got {' '.join(words) or 'nothing'}")
            if key == "dimensions":
                self.dimensions = int(count)
            else:
                self.series_length = int(count)
        elif key == "targetlabel":
            raise DataError(f"{self.path}:{line}: @targetLabel (regression targets) is not supported; classification needs @classLabel true and class labels")
        elif key == "classlabel":
            if not words or not _flag(self.path, line, name, words[:1]):
                if not self.labelled:
                    return
                raise DataError(f"{self.path}:{line}: @classLabel false: the cases have no class labels; classification needs them (@classLabel true L1 L2 ...)")
            labels = [_label_value(w) for w in words[1:]]
            if len(set(labels)) < 2:
                raise DataError(f"{self.path}:{line}: @classLabel declares {len(set(labels))} class label(s); need two or more")
            if len(set(labels)) < len(labels):
                twice = next(v for i, v in enumerate(labels) if v in labels[:i])
                raise DataError(f"{self.path}:{line}: @classLabel lists {twice!r} twice")
            self.declared = {v: v for v in labels}

    def case(self, line: int, text: str) -> tuple[list[str], object]:
        """One case line: the series' value strings, all of one length, and the label value."""
        parts = text.split(":")
        if not self.labelled and self.declared is None:  # no labels: every part is a series
            parts = [*parts, ""]
        elif len(parts) < 2 or "," in parts[-1] or not parts[-1].strip():
            raise DataError(f"{self.path}:{line}: case has no class label (expected the series, then ':label')")
        label = _label_value(parts[-1].strip()) if parts[-1] else None
        series = [s.split(",") for s in parts[:-1]]
        if self.dimensions is None:
            self.dimensions = len(series)  # undeclared: the first case decides
        if len(series) != self.dimensions:
            raise DataError(f"{self.path}:{line}: case has {len(series)} dimensions, expected {self.dimensions} (@dimensions)")
        lengths = [len(s) for s in series]
        if min(lengths) != max(lengths):
            short = lengths.index(min(lengths))
            raise DataError(
                f"{self.path}:{line}: series of one case differ in length (dimension 1 has {lengths[0]} values, dimension {short + 1} has {lengths[short]})"
            )
        if self.equal_length and self.series_length is not None and lengths[0] != self.series_length:
            raise DataError(f"{self.path}:{line}: case has {lengths[0]} steps; @equalLength true with @seriesLength {self.series_length}")
        if self.declared is None:
            return series, None
        if label not in self.declared and self.labelled:
            raise DataError(f"{self.path}:{line}: label {parts[-1].strip()!r} is not one of the declared classes (@classLabel {' '.join(map(str, self.declared))})")
        return series, self.declared.get(label)

    def values(self, line: int, series: list[list[str]]) -> np.ndarray:
        """(T, D) float64 from the value strings; '?', text and non-finite values refused."""
        try:
            frame = np.array(series, np.float64).T
        except ValueError:
            for d, values in enumerate(series):
                bad = next((v for v in values if _number(v) is None), None)
                if bad is not None:
                    if bad.strip() == "?":
                        raise DataError(f"{self.path}:{line}: dimension {d + 1}: missing values ('?') are not supported") from None
                    raise DataError(f"{self.path}:{line}: dimension {d + 1}: value {quoted(bad.strip())} is not a number") from None
            raise DataError(f"{self.path}:{line}: values are not numbers") from None
        if not np.isfinite(frame).all():
            step, d = np.argwhere(~np.isfinite(frame))[0]
            raise DataError(
                f"{self.path}:{line}: dimension {d + 1}: value {series[d][step].strip()!r} is not finite (NaN marks padding; real values must be finite)"
            )
        return frame

    def parse(self) -> _Cases:
        frames, labels, lines = [], [], []
        in_data = False
        for number, raw in enumerate(self.text.split("\n"), 1):
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            if text.startswith("@"):
                if in_data:
                    raise DataError(f"{self.path}:{number}: header line {quoted(text.split()[0])} after @data")
                name, *words = text[1:].split() or [""]
                if name.lower() == "data":
                    if self.declared is None and self.labelled:
                        raise DataError(f"{self.path}:{number}: @data before any @classLabel header; classification needs @classLabel true L1 L2 ...")
                    in_data = True
                else:
                    self.header(number, name, words)
                continue
            if not in_data:
                raise DataError(f"{self.path}:{number}: data before the @data line")
            series, label = self.case(number, text)
            frames.append(self.values(number, series))
            labels.append(label)
            lines.append(number)
        if not self.text.strip():
            raise DataError(f"{self.path}: empty file")
        if not in_data:
            raise DataError(f"{self.path}: no @data line; not a .ts file")
        if not frames:
            raise DataError(f"{self.path}: has a header but no cases after @data")
        return _Cases(
            self.path,
            np.concatenate(frames),
            np.array([len(f) for f in frames], np.int64),
            labels,
            lines,
            sorted(self.declared or {}, key=_sort_key),
        )


def _prepared(values: np.ndarray, cases: _Cases, stats: dict) -> np.ndarray:
    """float32, standardised with `stats` (mean, std; none: as they are); NaN padding stays NaN, and a real
    value too large for float32 is refused."""
    length = values.shape[1]
    with np.errstate(over="ignore", invalid="ignore"):
        out = ((values - np.asarray(stats["mean"])) / np.asarray(stats["std"]) if stats else values).astype(np.float32)
    real = np.arange(length) < cases.lengths[:, None]
    if not np.isfinite(out[real]).all():
        case = int(np.argwhere(~np.isfinite(out) & real[..., None])[0][0])
        raise DataError(f"{cases.path}:{cases.lines[case]}: a value is too large for float32 training")
    return out


def _test_file(path: str, test_path: str | None) -> str | None:
    """The test file: test_path as given; "" none; null the path with _TRAIN replaced by _TEST, when that file exists."""
    if test_path is not None:
        return test_path or None
    p = Path(path)
    if "_TRAIN" not in p.name:
        return None
    head, _, tail = p.name.rpartition("_TRAIN")
    candidate = p.with_name(f"{head}_TEST{tail}")
    return str(candidate) if candidate.is_file() else None


@DATA_SOURCES.register("ts", "sktime")
class TsSource(DataSource):
    """Time series classification from UEA/UCR (sktime) .ts files: cases of D series, padded at the end with NaN.

    Options:
    path: the training .ts file (relative to the current directory)
    test_path: the test .ts file; null: the path with _TRAIN replaced by _TEST when that file exists; "": no test split
    validation_split: fraction of the training cases held out for validation (stratified, seeded)
    standardize: scale each feature to zero mean, unit variance with the training part's real (unpadded) steps
    limit: train on a seeded, stratified subset of this many training cases
    split_seed: seeds the split and limit; null uses the run seed. Fix it to give every `--seeds` run one split (an ensemble)
    """

    def __init__(
        self,
        path: str,
        test_path: str | None = None,
        validation_split: Fraction = 0.1,
        standardize: bool = True,
        limit: PositiveInt | None = None,
        split_seed: NonNegativeInt | None = None,
    ):
        self.path = path
        self.test_path = test_path
        self.validation_split = validation_split
        self.standardize = standardize
        self.limit = limit
        self.split_seed = split_seed

    def _parse(self) -> tuple[_Cases, _Cases | None]:
        train = _Parser(self.path).parse()
        test_file = _test_file(self.path, self.test_path)
        if test_file is None:
            return train, None
        test = _Parser(test_file, "test file", "test_path").parse()
        if test.dimensions != train.dimensions:
            raise DataError(f"{test_file}: cases have {test.dimensions} dimensions, those of {self.path} {train.dimensions}")
        return train, test

    def inspect(self) -> DataInfo:
        train, test = self._parse()
        length = int(max(train.lengths.max(), test.lengths.max() if test else 0))
        return DataInfo((length, train.dimensions), len(train.classes), len(train.lengths))

    def load(self, seed, preprocessing=None):
        stored = preprocessing or {}
        train_cases, test_cases = self._parse()
        description = f"{self.path} (ts)"
        classes = stored.get("classes") or train_cases.classes  # a checkpoint's classes are what it predicts
        length = stored.get("length") or int(max(train_cases.lengths.max(), test_cases.lengths.max() if test_cases else 0))
        x = train_cases.padded(length)
        y = encode_labels(np.array(train_cases.labels, dtype=object), classes, self.path)

        rng = np.random.default_rng(seed)
        rows = np.arange(len(y))
        if self.limit is not None:
            rows = stratified_subset(y, self.limit, rng)
        kept, held = split_off(y[rows], self.validation_split, rng, description, "validation")
        train_idx, val_idx = rows[kept], rows[held]
        tx = ty = None
        if test_cases is not None:
            tx = test_cases.padded(length)
            ty = encode_labels(np.array(test_cases.labels, dtype=object), classes, test_cases.path)

        stats = {}
        if self.standardize:
            if "mean" in stored:
                mean, std = np.array(stored["mean"], np.float64), np.array(stored["std"], np.float64)
                if mean.shape != (train_cases.dimensions,):
                    raise DataError(f"{self.path}: has {train_cases.dimensions} dimensions, the checkpoint was trained on {len(mean)}")
            else:
                steps = x[train_idx][np.arange(length) < train_cases.lengths[train_idx, None]]  # real steps only
                with np.errstate(over="ignore", invalid="ignore"):
                    mean, std = steps.mean(axis=0), steps.std(axis=0)
                std[std == 0] = 1.0  # a constant feature stays constant (zero) instead of dividing by 0
                bad = ~(np.isfinite(mean) & np.isfinite(std))
                if bad.any():
                    raise DataError(f"{self.path}: dimension {int(np.argmax(bad)) + 1}: values too large to standardise")
            stats = {"mean": mean.tolist(), "std": std.tolist()}

        x = _prepared(x, train_cases, stats)
        return Dataset(
            train=Split(x[train_idx], y[train_idx]),
            val=Split(x[val_idx], y[val_idx]) if len(val_idx) else None,
            test=Split(_prepared(tx, test_cases, stats), ty) if test_cases is not None else None,
            input_shape=(length, train_cases.dimensions),
            classes=list(classes),
            preprocessing={"classes": list(classes), "length": length, **stats},
            description=description,
        )

    def read_inputs(self, path, preprocessing, input_shape, resize=True, invert=False):
        """The cases of a .ts file (labels, if any, ignored), padded to the trained length and standardised
        with the checkpoint's statistics. Names: file:line."""
        cases = _Parser(str(path), labelled=False).parse()
        length, dimensions = input_shape
        if cases.dimensions != dimensions:
            raise DataError(f"{path}: cases have {cases.dimensions} dimensions, the model was trained on {dimensions}")
        stats = {k: preprocessing[k] for k in ("mean", "std") if k in preprocessing}
        x = _prepared(cases.padded(length), cases, stats)
        return [f"{Path(path).name}:{line}" for line in cases.lines], x
