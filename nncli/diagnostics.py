"""Views that show *why* a network trains or does not: per-layer gradients and activation statistics.

With `training.log_gradients: true`, every epoch adds one row per layer to
`gradients.csv` (epoch, layer, grad_norm, zero_fraction, saturated_fraction);
`gradients.png` is drawn once, at the end. grad_norm is the mean over the epoch's updates of
‖∂L/∂θ_layer‖₂; the activation fractions are measured on a fixed probe of
training samples in evaluation mode. A deep sigmoid net shows its first
layers' gradients vanishing and its units saturating; a ReLU net shows
healthy gradients and exact zeros (sparsity) instead.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .errors import DataError
from .files import atomic_write_text, csv_text
from .layers.activations import Activation
from .models import Sequential
from .training import Callback, Fit

GRADIENT_COLUMNS = ("epoch", "layer", "grad_norm", "zero_fraction", "saturated_fraction")
PROBE_SIZE = 1000  # training samples used for the activation statistics


def activation_statistics(model: Sequential, x: np.ndarray) -> dict[int, tuple[float, float | None]]:
    """Layer index -> (fraction of exact zeros, fraction saturated) for every layer with an activation."""
    stats = {}
    for i, layer in enumerate(model.layers):
        x = layer.forward(x, training=False)
        act = layer if isinstance(layer, Activation) else getattr(layer, "activation", None)
        if isinstance(act, Activation):
            y = x
            if act is not layer and layer.activation_deferred:  # its ReLU runs after the max-pool (fusion.fuse): measure it here
                y = act.forward(x, training=False)
            stats[i] = (float(np.mean(y == 0)), act.saturation(y))
    return stats


class GradientLog(Callback):
    """Writes gradients.csv into a run folder after every epoch, and gradients.png when training ends."""

    def __init__(self, run_dir: Path, train_x: np.ndarray):
        self.path = Path(run_dir) / "gradients.csv"
        self.rows: list[dict] = []
        self.train_x = train_x  # the probe is its first PROBE_SIZE samples

    def on_train_begin(self, trainer: Fit) -> None:
        self.spans = trainer.model.layer_slices()
        self.sums = np.zeros(len(self.spans))
        self.updates = 0
        self.probe = self.train_x[:PROBE_SIZE].astype(trainer.model.dtype, copy=False)
        if self.path.exists():  # resuming: keep the rows of the epochs the checkpoint has
            self.rows = [r for r in self._read() if int(r["epoch"]) <= trainer.state.epoch]

    def _read(self) -> list[dict]:
        """The rows of an existing gradients.csv; a damaged file is one DataError naming file and line."""
        fix = "repair or move it away to resume"
        try:
            with open(self.path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                missing = [c for c in GRADIENT_COLUMNS if c not in (reader.fieldnames or [])]
                if missing:
                    raise DataError(f"{self.path}:1: not a gradients.csv header (no column '{missing[0]}'); {fix}")
                rows = []
                for row in reader:
                    epoch = row["epoch"]
                    if epoch is None or not epoch.strip().isdigit():
                        raise DataError(f"{self.path}:{reader.line_num}: column 'epoch': {epoch!r} is not an epoch number; {fix}")
                    rows.append(row)
                return rows
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{self.path}: not readable as CSV ({exc}); {fix}") from None
        except OSError as exc:
            raise DataError(f"{self.path}: cannot read ({exc.strerror})") from None

    def on_batch_end(self, trainer: Fit) -> None:
        grad = trainer.gradient()
        for k, (_, span) in enumerate(self.spans):
            g = grad[span]
            self.sums[k] += float(np.sqrt(np.dot(g, g)))
        self.updates += 1

    def on_epoch_end(self, trainer: Fit, row: dict) -> None:
        model = trainer.model
        norms = {i: float(self.sums[k]) / max(self.updates, 1) for k, (i, _) in enumerate(self.spans)}
        acts = activation_statistics(model, self.probe)
        for i, layer in enumerate(model.layers):
            if i not in norms and i not in acts:
                continue
            zero, saturated = acts.get(i, (None, None))
            self.rows.append(
                {
                    "epoch": row["epoch"],
                    "layer": f"{i}.{layer.name}",
                    "grad_norm": norms.get(i),
                    "zero_fraction": zero,
                    "saturated_fraction": saturated,
                }
            )
        self.sums[:] = 0
        self.updates = 0
        atomic_write_text(self.path, csv_text(GRADIENT_COLUMNS, self.rows))

    def on_train_end(self, trainer: Fit) -> None:
        if self.rows:  # once, like loss.png: redrawing it every epoch cost more than a small epoch
            from .plots import plot_gradients

            plot_gradients(self.rows, self.path.with_suffix(".png"))
