"""The run folder: config.yaml, history.csv, checkpoints/last.npz and best.npz, loss.png (not for one-shot fits).

A run that starts from scratch (not a resume) also keeps the weights it started from in
checkpoints/initial.npz (weights only, no training state: `--weights` can start from it, `--resume`
cannot): `nncli visualize --what landscape` draws the loss on the line from them to a checkpoint.
They are copied when training begins and written with the run's first last.npz, so the first file a
run can fail to write (a full disk, a size limit) is always its own last checkpoint.

`RunFolder` is a training callback; every file it writes is written
atomically (files.atomic_write), so a kill at any instant leaves the previous
version of each file intact.
"""

from __future__ import annotations

from pathlib import Path

from ._version import __version__
from .checkpoint import model_arrays, run_checkpoint, save_checkpoint
from .config import dump_yaml
from .files import atomic_link, atomic_write_text, csv_line, csv_row, csv_text
from .training import HISTORY_COLUMNS, Callback, Fit, OneShotFit


HISTORY_HEADER = csv_row(HISTORY_COLUMNS)


def format_history(rows: list[dict]) -> str:
    """CSV text: the contract's columns in order, floats at full precision, empty cells for None."""
    return csv_text(HISTORY_COLUMNS, rows)


def history_line(row: dict) -> str:
    return csv_line(HISTORY_COLUMNS, row)


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
        self.initial = self.checkpoints / "initial.npz"
        self._initial: tuple[dict, dict] | None = None  # (meta, arrays) of initial.npz until it is written
        self._lines: list[str] = []  # history.csv's formatted rows
        for stale in [*self.path.glob(".*.tmp"), *self.checkpoints.glob(".*.tmp")]:
            stale.unlink(missing_ok=True)  # a killed run's temporaries (atomic_write's, atomic_link's)
        atomic_write_text(self.path / "config.yaml", dump_yaml(config))

    @property
    def has_best(self) -> bool:
        return self.best.exists()

    def write_history(self, rows: list[dict]) -> None:
        self._lines = [history_line(row) for row in rows]  # kept, so each epoch formats only its own row
        self._write_lines()

    def _write_lines(self) -> None:
        atomic_write_text(self.path / "history.csv", HISTORY_HEADER + "".join(self._lines))

    def _run_meta(self, fit: Fit) -> dict:
        """What every checkpoint of this run records besides its arrays."""
        meta = {"config": self.config, "epoch": fit.state.epoch, "nncli_version": __version__, **self.data_meta}
        backend = getattr(fit.model, "backend", None)
        if backend is not None:  # provenance: what computed it ("CPU (numpy 2.4.6)", "NVIDIA H200 (cupy 14.2.0)")
            meta["device"] = backend.description
        return meta

    def save(self, fit: Fit, path: Path) -> Path:
        save_checkpoint(path, *run_checkpoint(fit.model, fit.snapshot(), self._run_meta(fit)))
        if self._initial is not None:
            save_checkpoint(self.initial, *self._initial)
            self._initial = None
        return path

    def on_train_begin(self, fit: Fit) -> None:
        fresh = fit.state.step == 0 and fit.state.batch == 0 and not fit.state.history
        if fresh and not isinstance(fit, OneShotFit) and not self.initial.exists():
            self._initial = (self._run_meta(fit), {k: v.copy() for k, v in model_arrays(fit.model).items()})
        self.write_history(fit.state.history)

    def on_epoch_end(self, fit: Fit, row: dict) -> None:
        """The epoch's checkpoints first, then its history row: history.csv never lists an epoch
        whose checkpoint was not written (a full disk, a file-size limit). The checkpoint holds the
        whole history, so a resume from it rewrites any row that is missing."""
        self.save(fit, self.last)
        if fit.improved:
            atomic_link(self.last, self.best)  # the same snapshot: no second serialisation
        if len(self._lines) + 1 == len(fit.state.history):
            self._lines.append(history_line(row))
            self._write_lines()
        else:  # the history changed other than by this row: format it afresh
            self.write_history(fit.state.history)

    def on_train_end(self, fit: Fit) -> None:
        if fit.state.history and not isinstance(fit, OneShotFit):  # one fit, one row: no curve to draw
            from .plots import plot_history

            plot_history([fit.state.history], [self.path.name], self.path / "loss.png")
