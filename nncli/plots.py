"""Figures (matplotlib, Agg backend, imported only when a plot is made)."""

from __future__ import annotations

import io
from pathlib import Path

from .files import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def plot_history(histories: list[list[dict]], labels: list[str], path: Path) -> None:
    """Loss and accuracy against epoch, train (solid) and validation (dashed), one colour per run."""
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (rows, label) in enumerate(zip(histories, labels)):
        colour = f"C{i % 10}"
        epochs = [r["epoch"] for r in rows]
        for ax, key in ((ax_loss, "loss"), (ax_acc, "accuracy")):
            train = [r.get(f"train_{key}") for r in rows]
            val = [r.get(f"val_{key}") for r in rows]
            ax.plot(epochs, [_nan(v) for v in train], color=colour, label=f"{label} train")
            if any(v is not None for v in val):
                ax.plot(epochs, [_nan(v) for v in val], color=colour, linestyle="--", label=f"{label} val")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    if all(r.get("train_loss") and r["train_loss"] > 0 for rows in histories for r in rows):
        ax_loss.set_yscale("log")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(_integer_ticks())
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    _save(fig, path)


def _integer_ticks():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _nan(value):
    return float("nan") if value is None or value == "" else float(value)


def plot_gradients(rows: list[dict], path: Path) -> None:
    """Per-layer gradient norm (log scale) and activation zero/saturated fractions against epoch."""
    plt = _pyplot()
    fig, (ax_grad, ax_act) = plt.subplots(1, 2, figsize=(11, 4))
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    for i, layer in enumerate(layers):
        mine = [r for r in rows if r["layer"] == layer]
        epochs = [int(r["epoch"]) for r in mine]
        colour = f"C{i % 10}"
        norms = [_nan(r["grad_norm"]) for r in mine]
        if any(n == n for n in norms):
            ax_grad.plot(epochs, norms, color=colour, marker=".", label=layer)
        zeros = [_nan(r["zero_fraction"]) for r in mine]
        saturated = [_nan(r["saturated_fraction"]) for r in mine]
        if any(z == z for z in zeros):
            ax_act.plot(epochs, zeros, color=colour, label=f"{layer} zero")
        if any(v == v for v in saturated):
            ax_act.plot(epochs, saturated, color=colour, linestyle="--", label=f"{layer} saturated")
    ax_grad.set(xlabel="epoch", ylabel="mean ‖∂L/∂θ‖ per update", title="Gradient norm by layer", yscale="log")
    ax_act.set(xlabel="epoch", ylabel="fraction of activations", title="Dead (zero) and saturated units", ylim=(-0.02, 1.02))
    for ax in (ax_grad, ax_act):
        ax.xaxis.set_major_locator(_integer_ticks())
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="x-small")
    _save(fig, path)
