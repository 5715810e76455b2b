"""Views that show *why* a network trains or does not: per-layer gradients and activation statistics.

With `training.log_gradients: true`, every epoch adds one row per layer to
`gradients.csv` (epoch, layer, grad_norm, zero_fraction, saturated_fraction);
`gradients.png` is drawn once, at the end. Recurrent layers also add, for the
epoch's last batch, ‖∂L/∂h_t‖ at every time step to `time_gradients.csv`
(epoch, layer, step, grad_norm) and `time_gradients.png`: how far back in the
sequence the gradient still reaches (a tanh RNN's fades within a few steps). grad_norm is the mean over the epoch's updates of
‖∂L/∂θ_layer‖₂; the activation fractions are measured on a fixed probe of
training samples in evaluation mode. A deep sigmoid net shows its first
layers' gradients vanishing and its units saturating; a ReLU net shows
healthy gradients and exact zeros (sparsity) instead.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .backend import for_model, to_host, xp_of
from .errors import DataError
from .files import atomic_write_text, csv_text
from .layers.activations import Activation
from .layers.recurrent import Recurrent
from .models import Sequential
from .training import Callback, Fit

GRADIENT_COLUMNS = ("epoch", "layer", "grad_norm", "zero_fraction", "saturated_fraction")
TIME_GRADIENT_COLUMNS = ("epoch", "layer", "step", "grad_norm")
PROBE_SIZE = 1000  # training samples used for the activation statistics


def activation_statistics(model: Sequential, x: np.ndarray) -> dict[int, tuple[float, float | None]]:
    """Layer index -> (fraction of exact zeros, fraction saturated) for every layer with an activation."""
    stats = {}
    for i, layer, x in model.layer_outputs(x, training=False):
        act = layer if isinstance(layer, Activation) else getattr(layer, "activation", None)
        if isinstance(act, Activation):
            y = x
            if act is not layer and layer.activation_deferred:  # its ReLU runs after the max-pool (fusion.fuse): measure it here
                y = act.forward(x, training=False)
            stats[i] = (float(xp_of(y).mean(y == 0)), act.saturation(y))
    return stats


class GradientLog(Callback):
    """Writes gradients.csv into a run folder after every epoch, and gradients.png when training ends."""

    def __init__(self, run_dir: Path, train_x: np.ndarray):
        self.path = Path(run_dir) / "gradients.csv"
        self.time_path = Path(run_dir) / "time_gradients.csv"
        self.rows: list[dict] = []
        self.time_rows: list[dict] = []
        self.train_x = train_x  # the probe is its first PROBE_SIZE samples

    def on_train_begin(self, trainer: Fit) -> None:
        self.spans = trainer.model.layer_slices()
        self.sums = xp_of(trainer.model.theta).zeros(len(self.spans))  # on the model's device: no host copy per update
        self.updates = 0
        self.probe = for_model(trainer.model, self.train_x[:PROBE_SIZE].astype(trainer.model.dtype, copy=False))
        self.recurrent = recurrent_layers(trainer.model)
        for _, layer in self.recurrent:
            layer.record_time_gradients = True
        # resuming: keep the rows of the epochs the checkpoint has
        self.rows = _rows_up_to(self.path, GRADIENT_COLUMNS, trainer.state.epoch)
        self.time_rows = _rows_up_to(self.time_path, TIME_GRADIENT_COLUMNS, trainer.state.epoch)

    def on_batch_end(self, trainer: Fit) -> None:
        grad = trainer.gradient()
        xp = xp_of(grad)
        for k, (_, span) in enumerate(self.spans):
            g = grad[span]
            self.sums[k] += xp.sqrt(xp.dot(g, g))
        self.updates += 1

    def on_epoch_end(self, trainer: Fit, row: dict) -> None:
        model = trainer.model
        sums = to_host(self.sums)
        norms = {i: float(sums[k]) / max(self.updates, 1) for k, (i, _) in enumerate(self.spans)}
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
        if self.recurrent:
            for name, layer in self.recurrent:
                norms = layer.time_gradient_norms  # of the epoch's last backward pass
                if norms is not None:
                    self.time_rows += [
                        {"epoch": row["epoch"], "layer": name, "step": t + 1, "grad_norm": float(v)} for t, v in enumerate(norms)
                    ]
            atomic_write_text(self.time_path, csv_text(TIME_GRADIENT_COLUMNS, self.time_rows))

    def on_train_end(self, trainer: Fit) -> None:
        from .plots import plot_gradients, plot_time_gradients

        if self.rows:  # once, like loss.png: redrawing it every epoch cost more than a small epoch
            plot_gradients(self.rows, self.path.with_suffix(".png"))
        if self.time_rows:
            plot_time_gradients(self.time_rows, self.time_path.with_suffix(".png"))


def recurrent_layers(model: Sequential) -> list[tuple[str, Recurrent]]:
    """('<i>.<type>[.<child>]', layer) for every recurrent layer, a bidirectional wrapper's two included."""
    return [
        (f"{i}.{top.name}" + (f".{prefix.rstrip('.')}" if prefix else ""), layer)
        for i, top in enumerate(model.layers)
        for prefix, layer in top.walk()
        if isinstance(layer, Recurrent)
    ]


def _rows_up_to(path: Path, columns: tuple[str, ...], epoch: int) -> list[dict]:
    """The rows of an existing log for epochs <= `epoch` ([] when there is none); a damaged file is one
    DataError naming file and line."""
    if not path.exists():
        return []
    fix = "repair or move it away to resume"
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path}:1: not a {path.name} header (no column '{missing[0]}'); {fix}")
            rows = []
            for row in reader:
                value = row["epoch"]
                if value is None or not value.strip().isdigit():
                    raise DataError(f"{path}:{reader.line_num}: column 'epoch': {value!r} is not an epoch number; {fix}")
                if int(value) <= epoch:
                    rows.append(row)
            return rows
    except (csv.Error, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not readable as CSV ({exc}); {fix}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
