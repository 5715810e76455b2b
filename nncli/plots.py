"""Figures (matplotlib, Agg backend, imported only when a plot is made)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

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
    no_accuracy = all(r.get("train_accuracy") is None for rows in histories for r in rows)  # regressions
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy (none: a regression)" if no_accuracy else "Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(_integer_ticks())
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    _save(fig, path)


def plot_curves(runs, path: Path, title: str = "") -> None:
    """compare-optimizers: loss against iteration, and the gap to the best loss against iteration and seconds.

    One colour per optimizer; second-order methods (few iterations) are dashed with markers.
    The gap f(θ_k) - f_best, with f_best the lowest final loss of any optimizer on
    that seed, shows the rates (linear, superlinear, quadratic) on log scales;
    gaps at or below 1e-16 (the best run's end) are drawn at 1e-16. With several
    seeds, every seed's curve is drawn, the first one labelled.
    """
    import numpy as np

    plt = _pyplot()
    fig, (ax_loss, ax_gap, ax_time) = plt.subplots(1, 3, figsize=(17, 4.8))
    best = {}
    for r in runs:
        if np.isfinite(r.final_loss):
            best[r.seed] = min(best.get(r.seed, np.inf), r.final_loss)
    labels = list(dict.fromkeys(r.optimizer for r in runs))
    palette = [*plt.get_cmap("tab10").colors, "black", "gold", "lime", "navy"]  # no pale shades: faint lines are extra seeds
    for i, label in enumerate(labels):
        colour = palette[i % len(palette)]
        mine = [r for r in runs if r.optimizer == label]
        for j, r in enumerate(mine):
            losses = np.array(r.losses, dtype=np.float64)
            iterations = np.arange(len(losses))
            gap = np.maximum(losses - best.get(r.seed, np.nan), 1e-16)
            style = {"color": colour, "alpha": 1.0 if j == 0 else 0.35, "linewidth": 1.4}
            if r.second_order:
                style.update(marker="o", markersize=3, linestyle="--")
            name = label if j == 0 else None
            ax_loss.plot(iterations, losses, label=name, **style)
            ax_gap.plot(iterations, gap, label=name, **style)
            times = np.array(r.times, dtype=np.float64)
            shown = times > 0  # log axis: the untimed starting point of mini-batch runs is left out
            ax_time.plot(times[shown], gap[shown], label=name, **style)
    ax_loss.set(xlabel="iteration", ylabel="training loss f(θ)", title="Loss")
    ax_gap.set(xlabel="iteration", ylabel="f(θ) − best f", title="Gap to the best loss found")
    ax_time.set(xlabel="seconds (method's own work)", ylabel="f(θ) − best f", title="Gap against time")
    for ax in (ax_loss, ax_gap):
        ax.set_xscale("symlog", linthresh=1.0)
    ax_time.set_xscale("log")
    for ax in (ax_loss, ax_gap, ax_time):
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
    ax_gap.legend(fontsize="small", ncol=2)
    if title:
        fig.suptitle(title)
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


def plot_time_gradients(rows: list[dict], path: Path) -> None:
    """‖∂L/∂h_t‖ against time step t (log scale) for each recurrent layer: the first epoch dashed, the last solid."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    epochs = sorted({int(r["epoch"]) for r in rows})
    for i, layer in enumerate(layers):
        for epoch, style in [(epochs[-1], "-")] + ([(epochs[0], "--")] if len(epochs) > 1 else []):
            mine = [r for r in rows if r["layer"] == layer and int(r["epoch"]) == epoch]
            if mine:
                ax.plot(
                    [int(r["step"]) for r in mine], [_nan(r["grad_norm"]) for r in mine],
                    color=f"C{i % 10}", linestyle=style, label=f"{layer}, epoch {epoch}",
                )
    ax.set(xlabel="time step t", ylabel="‖∂L/∂h_t‖ (last batch of the epoch)", title="How far back the gradient reaches", yscale="log")
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="x-small")
    _save(fig, path)


def _picture_shape(input_shape: tuple[int, ...]) -> tuple[int, int]:
    """How to draw one state: an image's (H, W); a vector of N neurons as the squarest grid that holds N."""
    if len(input_shape) >= 2:
        return int(input_shape[0]), int(np.prod(input_shape[1:]))
    n = int(input_shape[0])
    rows = int(np.floor(np.sqrt(n)))
    while n % rows:
        rows -= 1
    return (rows, n // rows) if rows > 1 else (int(np.ceil(np.sqrt(n))), int(np.ceil(n / np.ceil(np.sqrt(n)))))


def _picture(state: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    grid = np.full(shape[0] * shape[1], np.nan)
    grid[: state.size] = state
    return grid.reshape(shape)


def plot_recall(states, target, input_shape, energy, overlap, title: str, path: Path) -> None:
    """A Hopfield probe sweep by sweep: the state after each sweep as a picture (at most 12, the last always),
    the stored pattern, and the energy and the overlap with that pattern per sweep."""
    plt = _pyplot()
    shape = _picture_shape(tuple(input_shape))
    shown = list(range(len(states)))
    if len(shown) > 12:
        shown = [*np.linspace(0, len(states) - 2, 11).astype(int).tolist(), len(states) - 1]
    cols = len(shown) + 1
    fig = plt.figure(figsize=(max(8, 1.3 * cols), 5.2))
    grid = fig.add_gridspec(2, cols, height_ratios=[1.2, 1])
    for k, s in enumerate(shown):
        ax = fig.add_subplot(grid[0, k])
        ax.imshow(_picture(states[s], shape), cmap="gray_r", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title("probe" if s == 0 else f"sweep {s}", fontsize=8)
        ax.axis("off")
    ax = fig.add_subplot(grid[0, cols - 1])
    ax.imshow(_picture(target, shape), cmap="gray_r", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_title("stored", fontsize=8)
    ax.axis("off")
    half = max(1, cols // 2)
    ax_e = fig.add_subplot(grid[1, :half])
    ax_e.plot(range(len(energy)), energy, marker=".")
    ax_e.set(xlabel="sweep", ylabel="energy E")
    ax_m = fig.add_subplot(grid[1, half:])
    ax_m.plot(range(len(overlap)), overlap, marker=".", color="C1")
    ax_m.set(xlabel="sweep", ylabel="overlap m", ylim=(-1.05, 1.05))
    for ax in (ax_e, ax_m):
        ax.xaxis.set_major_locator(_integer_ticks())
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def plot_capacity(rows: list[dict], theory: dict[str, dict[str, float]], neurons: int, noise: float, path: Path) -> None:
    """Fixed-point fraction, exact recall and mean overlap against the load P/N per rule, with each rule's
    theoretical capacities as vertical lines."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3), sharex=True)
    panels = (
        ("fixed_point_fraction", "stored patterns that are fixed points"),
        ("exact_recall", f"exact recall from {noise:.0%} flipped bits" if noise else "exact recall (clean probes)"),
        ("mean_overlap", "mean final overlap m"),
    )
    rules = list(dict.fromkeys(r["rule"] for r in rows))
    styles = [":", "--", "-.", (0, (1, 4))]
    for k, rule in enumerate(rules):
        mine = [r for r in rows if r["rule"] == rule]
        load = [float(r["load"]) for r in mine]
        for ax, (column, label) in zip(axes, panels):
            ax.plot(load, [float(r[column]) for r in mine], marker=".", color=f"C{k}", label=rule)
            ax.set(title=label, xlabel="load P/N", ylim=(-0.03, 1.03))
        for j, (name, patterns) in enumerate(theory.get(rule, {}).items()):
            if 0 < patterns / neurons <= max(load) * 1.05:
                for ax in axes:
                    ax.axvline(patterns / neurons, color=f"C{k}", linestyle=styles[j % len(styles)], alpha=0.6,
                               label=f"{rule}: {name}" if ax is axes[0] else None)
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="x-small")
    fig.suptitle(f"Hopfield capacity, N = {neurons} random ±1 patterns")
    fig.tight_layout()
    _save(fig, path)


def plot_sweep(grid: list, rows: list[dict], summary: list[dict], metric: str, mode: str, path: Path) -> None:
    """nncli sweep: the score against each grid key, one panel per key.

    Each trial is a dot at its value of that key (all other keys mixed); the
    line joins the means over those trials, and the best point's value is marked.
    Numeric keys get a numeric axis (log when positive and spanning 10× or more);
    other values are categories in the order given.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(grid), figsize=(4.2 * len(grid), 3.6), squeeze=False)
    best = summary[0] if summary and summary[0]["score"] is not None else None
    for ax, (key, texts) in zip(axes[0], grid):
        numbers = [_as_number(t) for t in texts]
        numeric = all(n is not None for n in numbers)
        xs = numbers if numeric else list(range(len(texts)))
        means = []
        for x, text in zip(xs, texts):
            scores = [r["score"] for r in rows if r.get(key) == text and r.get("status") == "ok" and r.get("score") is not None]
            ax.scatter([x] * len(scores), scores, color="C0", alpha=0.5, s=18)
            means.append(float(np.mean(scores)) if scores else np.nan)
        order = np.argsort(xs)
        ax.plot(np.asarray(xs)[order], np.asarray(means)[order], color="C0", marker="o", label="mean over trials")
        if best is not None:
            ax.axvline(xs[texts.index(best[key])], color="C3", linestyle=":", label=f"best point ({best[key]})")
        if numeric and min(xs) > 0 and max(xs) >= 10 * min(xs):
            ax.set_xscale("log")
        ax.set_xticks(xs, texts, rotation=0 if numeric else 20, fontsize="small")  # the values tried, as given
        ax.minorticks_off()
        ax.set(xlabel=key, ylabel=f"{metric} ({'lower' if mode == 'min' else 'higher'} is better)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(f"sweep: best {metric} of each trial ({len(rows)} trials)")
    _save(fig, path)


def _as_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if np.isfinite(value) else None
