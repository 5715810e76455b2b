"""Random bipolar patterns: what capacity experiments with Hopfield networks store."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError

from ..registry import NonNegativeInt, PositiveInt
from .base import DATA_SOURCES, DataInfo, Dataset, DataSource, Split, read_text


@DATA_SOURCES.register("random_patterns")
class RandomPatterns(DataSource):
    """P random patterns of N neurons, each bit ±1 with probability ½ (seeded): the classic capacity experiment.

    Every pattern is its own class (labels 0 … P−1); there is no validation or test split: the patterns are
    what a Hopfield network stores, and `nncli eval` probes them.

    Options:
    neurons: N, the number of bits per pattern
    patterns: P, the number of patterns
    seed: seeds the patterns; null uses the run seed
    """

    path = "random_patterns"

    def __init__(self, neurons: PositiveInt, patterns: PositiveInt, seed: NonNegativeInt | None = None):
        self.neurons, self.patterns, self.seed = neurons, patterns, seed

    def inspect(self) -> DataInfo:
        return DataInfo((self.neurons,), self.patterns, self.patterns)

    def load(self, seed, preprocessing=None):
        rng = np.random.default_rng(self.seed if self.seed is not None else seed)
        x = np.where(rng.random((self.patterns, self.neurons)) < 0.5, np.float32(1.0), np.float32(-1.0))
        classes = list(range(self.patterns))
        return Dataset(
            train=Split(x, np.arange(self.patterns)),
            val=None,
            test=None,
            input_shape=(self.neurons,),
            classes=classes,
            preprocessing={"classes": classes},
            description=f"{self.patterns} random patterns of {self.neurons} neurons",
        )

    def read_inputs(self, path, preprocessing, input_shape, resize=True, invert=False):
        """Patterns to recall: a text file of N comma-separated ±1 (or 0 for unknown) values per line."""
        text = read_text(path, "random_patterns", "pattern")
        rows, names = [], []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            cells = [c.strip() for c in line.split(",")]
            if len(cells) != self.neurons or any(c not in ("1", "-1", "0", "+1", "1.0", "-1.0", "0.0") for c in cells):
                raise DataError(f"{path}:{number}: expected {self.neurons} comma-separated values of -1, 0 or 1")
            rows.append([float(c) for c in cells])
            names.append(f"{Path(path).name}:{number}")
        if not rows:
            raise DataError(f"{path}: no patterns")
        return names, np.array(rows, np.float32)

    def with_path(self, path: str) -> DataSource:
        return self  # nothing is read from disk
