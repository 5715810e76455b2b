"""The run folder: config.yaml, history.csv, checkpoints/last.npz and best.npz, loss.png.

`RunFolder` is a training callback; every file it writes is written
atomically (files.atomic_write), so a kill at any instant leaves the previous
version of each file intact.
"""

from __future__ import annotations

import io
from pathlib import Path

from . import __version__
from .checkpoint import model_arrays, save_checkpoint
from .config import dump_yaml
from .files import atomic_write_text
from .training import HISTORY_COLUMNS, Callback, Trainer


def format_history(rows: list[dict]) -> str:
    """CSV text: the contract's columns in order, floats at full precision, empty cells for None."""
    out = io.StringIO()
    out.write(",".join(HISTORY_COLUMNS) + "\n")
    for row in rows:
        out.write(",".join(_cell(row.get(c)) for c in HISTORY_COLUMNS) + "\n")
    return out.getvalue()


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if value == value else ""
    return str(value)


class RunFolder(Callback):
    """Writes a run's files as training proceeds."""

    def __init__(self, path: Path, config: dict, data_meta: dict):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.data_meta = data_meta  # input_shape, preprocessing: what eval needs besides the config
        self.last = self.checkpoints / "last.npz"
        self.best = self.checkpoints / "best.npz"
        for stale in [*self.path.glob(".*.tmp"), *self.checkpoints.glob(".*.tmp")]:
            stale.unlink(missing_ok=True)  # half-written files of a killed run (atomic_write's temporaries)
        atomic_write_text(self.path / "config.yaml", dump_yaml(config))

    @property
    def has_best(self) -> bool:
        return self.best.exists()

    def write_history(self, rows: list[dict]) -> None:
        atomic_write_text(self.path / "history.csv", format_history(rows))

    def save(self, trainer: Trainer, path: Path) -> Path:
        meta, arrays = trainer.snapshot()
        meta = {
            "config": self.config,
            "epoch": trainer.state.epoch,
            "nncli_version": __version__,
            **self.data_meta,
            **meta,  # train_state (with the history), optimizer, schedule and generator states
        }
        save_checkpoint(path, meta, {**model_arrays(trainer.model), **arrays})
        return path

    def on_train_begin(self, trainer: Trainer) -> None:
        self.write_history(trainer.state.history)

    def on_epoch_end(self, trainer: Trainer, row: dict) -> None:
        self.write_history(trainer.state.history)
        self.save(trainer, self.last)
        if trainer.improved:
            self.save(trainer, self.best)

    def on_train_end(self, trainer: Trainer) -> None:
        if trainer.state.history:
            from .plots import plot_history

            plot_history([trainer.state.history], [self.path.name], self.path / "loss.png")
