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


# -- nncli visualize: what a trained network computes ---------------------------------
DIVERGING = "RdBu_r"  # weights: blue negative, white zero, red positive


def write_unit_image(picture: np.ndarray, path: Path) -> None:
    """One unit's weights as a PNG of exactly the picture's pixels (no axes, no margins): (H, W) in the
    diverging colour map, centred on zero (±max|w|); (H, W, 3) colour inputs as RGB scaled to [0, 1]."""
    plt = _pyplot()
    buffer = io.BytesIO()
    if picture.ndim == 3:
        low, high = float(picture.min()), float(picture.max())
        plt.imsave(buffer, (picture - low) / (high - low if high > low else 1.0), format="png")
    else:
        limit = float(np.max(np.abs(picture))) or 1.0
        plt.imsave(buffer, picture, cmap=DIVERGING, vmin=-limit, vmax=limit, format="png")
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def _grid(n: int, columns: int = 8) -> tuple[int, int]:
    columns = min(columns, max(n, 1))
    return -(-n // columns), columns


def plot_weight_grid(pictures: np.ndarray, titles: list[str], title: str, path: Path) -> None:
    """Unit (or filter) pictures in a grid, each in the diverging map centred on its own zero (±max|w|)."""
    plt = _pyplot()
    rows, cols = _grid(len(pictures))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.75 * rows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    image = None
    for ax, picture, name in zip(axes.flat, pictures, titles):
        if picture.ndim == 3:
            low, high = float(picture.min()), float(picture.max())
            ax.imshow((picture - low) / (high - low if high > low else 1.0), interpolation="nearest")
        else:
            limit = float(np.max(np.abs(picture))) or 1.0
            image = ax.imshow(picture, cmap=DIVERGING, vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set_title(name, fontsize=8)
    if image is not None:
        bar = fig.colorbar(image, ax=axes, shrink=0.6, ticks=[image.norm.vmin, 0, image.norm.vmax])
        bar.ax.set_yticklabels(["−max|w|", "0", "+max|w|"], fontsize=7)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def _show_input(ax, x: np.ndarray, title: str) -> None:
    """A sample as it enters the model: an image, a sequence (features × time) or a bar per feature."""
    if x.ndim == 3:
        ax.imshow(x[:, :, 0] if x.shape[2] == 1 else np.clip(x, 0, 1), cmap="gray", interpolation="nearest")
        ax.axis("off")
    elif x.ndim == 2:
        valid = ~np.isnan(x[:, 0])
        ax.imshow(x[valid].T, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set(xlabel="time step", ylabel="feature")
        ax.xaxis.set_major_locator(_integer_ticks())
    else:
        ax.bar(np.arange(x.size), x.ravel(), color="C7")
        ax.set(xlabel="feature")
    ax.set_title(title, fontsize=9)


def plot_activations(x: np.ndarray, outputs: list[tuple[str, np.ndarray]], probabilities: np.ndarray | None,
                     classes: list, title: str, path: Path, channels: int = 16) -> None:
    """One input and every layer's output for it: feature maps (H, W, C) as a row of pictures (the first
    `channels`), sequences (T, U) as units × time, vectors as bars; then the predicted probabilities."""
    plt = _pyplot()
    rows = 1 + len(outputs)
    fig = plt.figure(figsize=(12, 1.9 * rows + 0.6))
    grid = fig.add_gridspec(rows, 2, width_ratios=[1, 3])
    _show_input(fig.add_subplot(grid[0, 0]), x, "input")
    ax = fig.add_subplot(grid[0, 1])
    if probabilities is not None:
        ax.bar(range(len(probabilities)), probabilities, color=["C3" if k == int(np.argmax(probabilities)) else "C0" for k in range(len(probabilities))])
        ax.set_xticks(range(len(probabilities)), [str(c) for c in classes], fontsize=8)
        ax.set(ylim=(0, 1), ylabel="probability", title="predicted probabilities")
    else:
        ax.axis("off")
    for r, (name, out) in enumerate(outputs, start=1):
        if out.ndim == 3:  # feature maps
            shown = min(out.shape[2], channels)
            sub = grid[r, :].subgridspec(1, shown)
            for c in range(shown):
                a = fig.add_subplot(sub[0, c])
                a.imshow(out[:, :, c], cmap="magma", interpolation="nearest")
                a.axis("off")
                if c == 0:
                    more = f" (first {shown} of {out.shape[2]} channels)" if shown < out.shape[2] else ""
                    a.set_title(f"{name}{more}", fontsize=8, loc="left")
        elif out.ndim == 2:  # a sequence of states
            a = fig.add_subplot(grid[r, :])
            a.imshow(out.T, aspect="auto", cmap=DIVERGING, interpolation="nearest", vmin=-np.abs(out).max(), vmax=np.abs(out).max())
            a.set(xlabel="time step", ylabel="unit")
            a.set_title(name, fontsize=8, loc="left")
        else:
            a = fig.add_subplot(grid[r, :])
            a.bar(np.arange(out.size), out.ravel(), color="C2")
            a.xaxis.set_major_locator(_integer_ticks())
            a.set_title(name, fontsize=8, loc="left")
            a.grid(alpha=0.3, axis="y")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_error_grid(images: np.ndarray, captions: list[str], title: str, path: Path) -> None:
    """The most confidently misclassified inputs, each captioned true → predicted (probability)."""
    plt = _pyplot()
    rows, cols = _grid(len(images), 6)
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 1.9 * rows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, x, caption in zip(axes.flat, images, captions):
        ax.imshow(x[:, :, 0] if x.shape[2] == 1 else np.clip(x, 0, 1), cmap="gray", interpolation="nearest")
        ax.set_title(caption, fontsize=8)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def plot_confusion(confusion: np.ndarray, classes: list, precision: np.ndarray, recall: np.ndarray, title: str, path: Path) -> None:
    """The confusion matrix as a heat map (rows = true class, counts written in), and per-class precision and recall."""
    plt = _pyplot()
    k = len(classes)
    fig, (ax_m, ax_pr) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [1.1, 1]})
    image = ax_m.imshow(confusion, cmap="Blues")
    labels = [str(c) for c in classes]
    ax_m.set_xticks(range(k), labels, fontsize=8, rotation=90 if k > 12 else 0)
    ax_m.set_yticks(range(k), labels, fontsize=8)
    ax_m.set(xlabel="predicted", ylabel="true", title="confusion matrix")
    if k <= 20:
        threshold = confusion.max() / 2
        for i in range(k):
            for j in range(k):
                ax_m.text(j, i, str(int(confusion[i, j])), ha="center", va="center", fontsize=7,
                          color="white" if confusion[i, j] > threshold else "black")
    fig.colorbar(image, ax=ax_m, shrink=0.8)
    width = 0.4
    at = np.arange(k)
    ax_pr.bar(at - width / 2, np.nan_to_num(precision), width, label="precision")
    ax_pr.bar(at + width / 2, np.nan_to_num(recall), width, label="recall")
    ax_pr.set_xticks(at, labels, fontsize=8, rotation=90 if k > 12 else 0)
    low = min(float(np.nanmin(precision)) if np.isfinite(precision).any() else 1.0, float(np.nanmin(recall)) if np.isfinite(recall).any() else 1.0)
    ax_pr.set(ylim=(max(0.0, low - 0.05), 1.0), title="per-class precision and recall", xlabel="class")
    ax_pr.grid(alpha=0.3, axis="y")
    ax_pr.legend(fontsize="small", loc="lower right")
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def plot_embedding(points: np.ndarray, labels: np.ndarray, classes: list, explained: tuple[float, float], title: str, path: Path) -> None:
    """2-D PCA projection of hidden representations, one colour per class (or a colour scale for values)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    if classes:
        palette = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
        for k, c in enumerate(classes):
            mine = labels == k
            ax.scatter(points[mine, 0], points[mine, 1], s=3, alpha=0.6, color=palette(k % palette.N), label=str(c))
        ax.legend(markerscale=4, fontsize="small", ncol=2 if len(classes) > 10 else 1, title="class")
    else:
        image = ax.scatter(points[:, 0], points[:, 1], s=3, c=labels, cmap="viridis")
        fig.colorbar(image, ax=ax, label="target")
    ax.set(xlabel=f"PC 1 ({explained[0]:.0%} of the variance)", ylabel=f"PC 2 ({explained[1]:.0%})", title=title)
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_landscape(line: tuple[np.ndarray, np.ndarray], direction: tuple[np.ndarray, np.ndarray],
                   plane: tuple[np.ndarray, np.ndarray, np.ndarray], start: str, title: str, path: Path) -> None:
    """The loss from the start weights (α = 0) to the checkpoint (α = 1), along one random filter-normalised
    direction through the checkpoint, and over the plane of two such directions (contours)."""
    plt = _pyplot()
    fig, (ax_l, ax_d, ax_p) = plt.subplots(1, 3, figsize=(16, 4.5))
    alpha, loss = line
    ax_l.plot(alpha, loss, color="C0", marker=".")
    for a, name in ((0.0, start), (1.0, "checkpoint")):
        at = np.flatnonzero(alpha == a)
        if at.size:
            ax_l.scatter([a], [loss[at[0]]], color="C3", zorder=3)
            ax_l.annotate(name, (a, loss[at[0]]), textcoords="offset points", xytext=(4, 6), fontsize=8)
    ax_l.set(xlabel="α  (θ = (1 − α)·θ_start + α·θ_checkpoint)", ylabel="loss", title="from the start to the checkpoint")
    beta, dloss = direction
    ax_d.plot(beta, dloss, color="C1", marker=".")
    ax_d.set(xlabel="β  (θ = θ_checkpoint + β·d)", ylabel="loss", title="along a random filter-normalised direction")
    b, g, ploss = plane
    finite = ploss[np.isfinite(ploss)]
    levels = np.unique(np.quantile(finite, np.linspace(0, 1, 16))) if finite.size else 10
    contours = ax_p.contourf(b, g, ploss, levels=levels if np.size(levels) > 1 else 10, cmap="viridis")
    ax_p.contour(b, g, ploss, levels=levels if np.size(levels) > 1 else 10, colors="white", linewidths=0.4)
    ax_p.scatter([0], [0], color="C3", marker="*", s=80, zorder=3)
    fig.colorbar(contours, ax=ax_p, label="loss")
    ax_p.set(xlabel="β (direction 1)", ylabel="γ (direction 2)", title="the plane of two random directions")
    for ax in (ax_l, ax_d):
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_states(x: np.ndarray, states: list[tuple[str, np.ndarray]], title: str, path: Path) -> None:
    """A recurrent network reading one sequence: the input (features × time) and each recurrent layer's
    hidden state h_t (units × time) in the diverging map."""
    plt = _pyplot()
    fig, axes = plt.subplots(1 + len(states), 1, figsize=(11, 2.2 + 2.4 * len(states)), squeeze=False)
    _show_input(axes[0, 0], x, "input (features × time)")
    for ax, (name, h) in zip(axes[1:, 0], states):
        limit = float(np.max(np.abs(h))) or 1.0
        image = ax.imshow(h.T, aspect="auto", cmap=DIVERGING, vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set(xlabel="time step t", ylabel="unit", title=f"{name}: hidden state h_t")
        ax.xaxis.set_major_locator(_integer_ticks())
        ax.yaxis.set_major_locator(_integer_ticks())
        fig.colorbar(image, ax=ax, pad=0.01)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_patterns(patterns: np.ndarray, input_shape, titles: list[str], title: str, path: Path) -> None:
    """Stored ±1 patterns of a Hopfield network as pictures."""
    plt = _pyplot()
    shape = _picture_shape(tuple(input_shape))
    rows, cols = _grid(len(patterns), 8)
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.6 * rows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, p, name in zip(axes.flat, patterns, titles):
        ax.imshow(_picture(p, shape), cmap="gray_r", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=8)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)
