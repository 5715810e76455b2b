"""`nncli visualize`: pictures of what a trained network computes, from its checkpoint alone.

nncli.visualize (api.py) reads the checkpoint and its data; this module draws.

Each view is one function writing PNGs (plots.py draws them) and, where a test
or a reader wants the numbers, a CSV or JSON next to them:

- `weights`: each unit of the first dense layer as a picture in the input's
  shape (weights.png, and units/unit-<k>.png: exactly the unit's pixels, no
  axes), in a diverging colour map centred on zero; conv2d kernels as a grid.
- `activations`: test input I and every layer's output for it, with the
  predicted probabilities (activations-<I>.png).
- `errors`: the most confidently misclassified test inputs (errors.png), every
  misclassified one in errors.csv, the confusion matrix and per-class
  precision and recall (confusion.png).
- `embedding`: the last hidden layer's outputs on the test set projected to
  2-D by PCA (an SVD), coloured by class (embedding.png, embedding.csv).
- `landscape`: the loss on a seeded sample of the training split along
  θ(α) = (1 − α)·θ_start + α·θ (θ_start: the run's checkpoints/initial.npz,
  else the initial weights rebuilt from the config's seed, or a second
  checkpoint), along a random filter-normalised direction through θ, and over
  the plane of two such directions (Goodfellow et al. 2015; Li et al. 2018):
  landscape.png, landscape.csv, landscape.json (the sample's indices).
- `states` (recurrent models): each recurrent layer's hidden state over time
  for test sequence I (states-<I>.png).
- `patterns` (Hopfield models): the stored patterns and the recall of pattern
  I from 10% flipped bits (patterns.png, recall-<I>.png).

Everything goes through the model in batches of training.eval_batch_size,
on the checkpoint's own preprocessing; this module only reads the model and
the data it is given and writes into the folder it is given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import Split
from .errors import ConfigError
from .files import atomic_write_text, csv_text
from .layers import LAYERS
from .metrics import confusion_matrix, evaluate, predict
from .models import Sequential
from .models.hopfield import trace_recall

VIEWS = ("weights", "activations", "errors", "embedding", "landscape", "states", "patterns")
RECURRENT = ("lstm", "gru", "rnn", "bidirectional")
PASS_THROUGH = ("flatten", "reshape", "dropout")  # layers between the input and the first dense one that keep each pixel's value
MAX_UNIT_PICTURES = 64  # drawn in weights.png (every unit still gets its own PNG)
ERROR_GRID = 24  # misclassified inputs drawn in errors.png
LINE = np.arange(-10, 31) / 20  # α from -0.5 to 1.5 in steps of 0.05: exactly 0 and 1 included
DIRECTION = np.arange(-20, 21) / 20  # β from -1 to 1 in steps of 0.05
PLANE = np.arange(-8, 9) / 8  # β and γ from -1 to 1 in steps of 0.125
RECALL_NOISE = 0.1


@dataclass
class Subject:
    """What the views look at: the checkpoint's model, its experiment and its data (preprocessed as trained)."""

    path: Path  # the checkpoint
    experiment: object
    model: object
    dataset: object
    initial: Path | None = None  # the run's checkpoints/initial.npz, when there is one
    start: object | None = None  # a second model (from --from) as the landscape's start, or None

    @property
    def name(self) -> str:
        return self.experiment.name

    @property
    def hopfield(self) -> bool:
        return hasattr(self.experiment.model, "probe")

    @property
    def layers(self) -> list:
        return [] if self.hopfield else self.model.layers


@dataclass
class Written:
    """Files one visualisation wrote, and a line per view saying what it shows."""

    files: list[Path] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def images(self) -> list[Path]:
        return [p for p in self.files if p.suffix == ".png" and p.parent.name != "units"]


# -- which views apply -----------------------------------------------------------
def _first_weighted(layers) -> int | None:
    return next((i for i, layer in enumerate(layers) if layer.count_params() > 0), None)


def refusal(view: str, subject: Subject) -> str | None:
    """Why `view` does not apply to this model (one line), or None when it does."""
    if view not in VIEWS:
        return f"unknown view '{view}' (known: {', '.join(VIEWS)})"
    if subject.hopfield:
        if view != "patterns":
            return f"{view} shows a layer-stack model; a Hopfield network has its stored patterns: --what patterns"
        return None
    if view == "patterns":
        return "shows a Hopfield network's stored patterns; this is a layer-stack model"
    layers, shape, data = subject.layers, subject.model.input_shape, subject.dataset
    if view == "weights":
        first = _first_weighted(layers)
        if first is None:
            return "the model has no weights"
        layer = layers[first]
        if layer.name == "conv2d":
            return None
        if layer.name != "dense":
            return f"draws the first dense or conv2d layer's weights; the first layer with weights is {layer.describe()}"
        if len(shape) != 3 or any(layers[i].name not in PASS_THROUGH for i in range(first)):
            what = f"{shape[0]} features" if len(shape) == 1 else f"a sequence of {shape[0]} steps" if len(shape) == 2 else "another layer's outputs"
            return f"draws each unit's weights as a picture of an image input; the first dense layer's inputs are {what}, not an image"
        return None
    if view in ("activations", "errors", "embedding", "states") and (data.test is None or not len(data.test)):
        return "needs the test split, which this data has none of"
    if view == "errors" and data.regression:
        return "a regression has no misclassified inputs"
    if view == "embedding" and _hidden_index(layers) is None:
        return "needs a hidden layer before the last layer with weights"
    if view == "landscape" and (data.train is None or not len(data.train)):
        return "needs a training set to measure the loss on, and this data has no training split"
    if view == "states" and not any(layer.name in RECURRENT for layer in layers):
        return "follows a recurrent layer's hidden state; this model has no lstm, gru, rnn or bidirectional layer"
    return None


def applicable(subject: Subject) -> list[str]:
    """The views that apply to this model (what `nncli visualize` draws without --what)."""
    return [v for v in VIEWS if refusal(v, subject) is None]


def check(views: list[str], subject: Subject, index: int) -> None:
    """Refuse, before anything is written, a view that does not apply or an --index out of range."""
    for view in views:
        why = refusal(view, subject)
        if why is not None:
            raise ConfigError(f"--what {view}: {why}", location=str(subject.path))
    if subject.hopfield:
        n = len(subject.dataset.train)
        if "patterns" in views and not 0 <= index < n:
            raise ConfigError(f"must be in 0 … {n - 1} (the network stores {n} patterns), got {index}", location="--index")
    elif {"activations", "states"} & set(views):
        n = len(subject.dataset.test)
        if not 0 <= index < n:
            raise ConfigError(f"must be in 0 … {n - 1} (the test split's inputs), got {index}", location="--index")


def render(views: list[str], subject: Subject, out_dir: Path, index: int = 0, samples: int = 1000) -> Written:
    """Draw `views` (checked by `check`) into out_dir."""
    written = Written()
    for view in views:
        VIEW_FUNCTIONS[view](subject, out_dir, written, index=index, samples=samples)
    return written


# -- weights ---------------------------------------------------------------------
def unit_pictures(subject: Subject) -> tuple[np.ndarray, list[str], str]:
    """(pictures, titles, what): the first dense layer's W[:, k] reshaped to the input's shape per unit k
    ((H, W) for one channel, else (H, W, C)); or a conv2d's kernels, one (kh, kw) picture per filter and channel."""
    layers = subject.layers
    first = _first_weighted(layers)
    layer = layers[first]
    W = np.asarray(layer.params["W"], np.float64)
    if layer.name == "dense":
        H, Wd, C = subject.model.input_shape
        pictures = W.T.reshape(W.shape[1], H, Wd, C)  # unit k: W[:, k] in the input's C order
        pictures = pictures[..., 0] if C == 1 else pictures
        return pictures, [f"unit {k}" for k in range(len(pictures))], f"{first}.dense: {W.shape[1]} units, each {H}×{Wd} weights"
    kh, kw, cin, filters = W.shape
    channels = min(cin, 3)
    pictures = np.stack([W[:, :, c, f] for f in range(filters) for c in range(channels)])
    titles = [f"filter {f}" + (f" ch {c}" if cin > 1 else "") for f in range(filters) for c in range(channels)]
    return pictures, titles, f"{first}.conv2d: {filters} filters of {kh}×{kw}" + (f" (first {channels} of {cin} channels)" if cin > channels else "")


def _weights(subject: Subject, out_dir: Path, written: Written, **_) -> None:
    from .plots import plot_weight_grid, write_unit_image

    pictures, titles, what = unit_pictures(subject)
    shown = min(len(pictures), MAX_UNIT_PICTURES)
    more = f" (the first {shown} of {len(pictures)})" if shown < len(pictures) else ""
    path = out_dir / "weights.png"
    plot_weight_grid(pictures[:shown], titles[:shown], f"{subject.name}: {what}{more}; red +, blue −, white 0", path)
    written.files.append(path)
    if subject.layers[_first_weighted(subject.layers)].name == "dense":
        units = out_dir / "units"
        units.mkdir(exist_ok=True)
        width = len(str(len(pictures) - 1))
        for k, picture in enumerate(pictures):
            unit = units / f"unit-{k:0{width}d}.png"
            write_unit_image(picture, unit)
            written.files.append(unit)
    written.notes["weights"] = what


# -- activations -------------------------------------------------------------------
def _label(dataset, k: int) -> str:
    return str(dataset.classes[k]) if dataset.classes else str(k)


def _activations(subject: Subject, out_dir: Path, written: Written, index: int = 0, **_) -> None:
    from .plots import plot_activations

    model, loss, data = subject.model, subject.experiment.loss, subject.dataset
    x = data.test.x[index : index + 1]
    shown = []
    last = None
    for i, layer, out in model.layer_outputs(x):
        last = out
        if layer.name in PASS_THROUGH:
            continue
        value = np.array(out[0], np.float64)
        if getattr(layer, "activation_deferred", False):  # NOTE: a conv2d's ReLU runs in the max-pool after it (layers/fusion.py)
            value = np.maximum(value, 0.0)
        shown.append((f"{i}.{layer.describe()}", value))
    probabilities = None
    if data.regression:
        target = data.in_target_units(data.test.y[index : index + 1])[0]
        output = data.in_target_units(np.asarray(last[:1], np.float64))[0]
        title = f"{subject.name}: test input {index}, target {', '.join(f'{v:.4g}' for v in target)}, output {', '.join(f'{v:.4g}' for v in output)}"
    else:
        probabilities = np.asarray(loss.probabilities(last)[0], np.float64)
        predicted = int(loss.predictions(last)[0])
        truth = int(data.test.y[index])
        title = (f"{subject.name}: test input {index}, true {_label(data, truth)}, predicted {_label(data, predicted)} "
                 f"({probabilities[predicted]:.1%})")
    path = out_dir / f"activations-{index}.png"
    plot_activations(np.array(x[0], np.float64), shown, probabilities, data.classes, title, path)
    written.files.append(path)
    written.notes["activations"] = title


# -- errors ------------------------------------------------------------------------
ERROR_COLUMNS = ("rank", "index", "true", "predicted", "probability", "true_probability")


def misclassified(model, loss, split: Split, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(predictions, probabilities, indices of the misclassified inputs, most confident first) over a split, in batches."""
    outputs = predict(model, split.x, batch_size)
    predicted = loss.predictions(outputs)
    probabilities = np.asarray(loss.probabilities(outputs), np.float64)
    wrong = np.flatnonzero(predicted != split.y)
    confidence = probabilities[wrong, predicted[wrong]]
    return predicted, probabilities, wrong[np.argsort(-confidence, kind="stable")]


def _errors(subject: Subject, out_dir: Path, written: Written, **_) -> None:
    from .plots import plot_confusion, plot_error_grid

    data, experiment = subject.dataset, subject.experiment
    test = data.test
    predicted, probabilities, wrong = misclassified(subject.model, experiment.loss, test, experiment.training.eval_batch_size)
    rows = [
        {"rank": r, "index": int(i), "true": _label(data, int(test.y[i])), "predicted": _label(data, int(predicted[i])),
         "probability": float(probabilities[i, predicted[i]]), "true_probability": float(probabilities[i, test.y[i]])}
        for r, i in enumerate(wrong)
    ]
    table = out_dir / "errors.csv"
    atomic_write_text(table, csv_text(ERROR_COLUMNS, rows))
    accuracy = 1.0 - len(wrong) / len(test)
    if test.x.ndim == 4 and len(wrong):  # images: the grid of the most confident mistakes
        top = wrong[:ERROR_GRID]
        captions = [f"#{i}: {_label(data, int(test.y[i]))} → {_label(data, int(predicted[i]))} ({probabilities[i, predicted[i]]:.0%})" for i in top]
        grid = out_dir / "errors.png"
        plot_error_grid(np.asarray(test.x[top], np.float64), captions,
                        f"{subject.name}: the {len(top)} most confident of {len(wrong)} misclassified test inputs (true → predicted)", grid)
        written.files.append(grid)
    confusion = confusion_matrix(test.y, predicted, data.num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.diag(confusion) / confusion.sum(axis=0)
        recall = np.diag(confusion) / confusion.sum(axis=1)
    matrix = out_dir / "confusion.png"
    plot_confusion(confusion, data.classes, precision, recall, f"{subject.name}: test split, {len(test)} inputs, accuracy {accuracy:.2%}", matrix)
    written.files += [matrix, table]
    written.notes["errors"] = f"{len(wrong)} of {len(test)} test inputs misclassified (accuracy {accuracy:.2%})"


# -- embedding ---------------------------------------------------------------------
def _hidden_index(layers) -> int | None:
    """The layer whose output feeds the last layer with weights (the last hidden representation), or None."""
    weighted = [i for i, layer in enumerate(layers) if layer.count_params() > 0]
    if not weighted or weighted[-1] == 0:
        return None
    return weighted[-1] - 1


def hidden_outputs(model, x: np.ndarray, layer_index: int, batch_size: int) -> np.ndarray:
    """(N, features) outputs of layer `layer_index` for all of x, batch by batch (evaluation mode)."""
    out = None
    for start in range(0, len(x), batch_size):
        for i, _, y in model.layer_outputs(x[start : start + batch_size]):
            if i == layer_index:
                y = y.reshape(len(y), -1)
                if out is None:
                    out = np.empty((len(x), y.shape[1]), np.float64)
                out[start : start + len(y)] = y
                break
    return out


def pca(features: np.ndarray, components: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(points (N, components), explained variance ratios) of centred features, by an SVD."""
    centred = features - features.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    variance = s**2
    ratios = variance[:components] / variance.sum() if variance.sum() > 0 else np.zeros(components)
    points = centred @ vt[:components].T
    if points.shape[1] < components:  # a single hidden unit
        points = np.pad(points, ((0, 0), (0, components - points.shape[1])))
        ratios = np.pad(ratios, (0, components - len(ratios)))
    return points, ratios


def _embedding(subject: Subject, out_dir: Path, written: Written, **_) -> None:
    from .plots import plot_embedding

    data, layers = subject.dataset, subject.layers
    h = _hidden_index(layers)
    features = hidden_outputs(subject.model, data.test.x, h, subject.experiment.training.eval_batch_size)
    points, ratios = pca(features)
    labels = data.test.y if not data.regression else data.in_target_units(data.test.y)[:, 0]
    what = f"{h}.{layers[h].describe()}"
    path, table = out_dir / "embedding.png", out_dir / "embedding.csv"
    plot_embedding(points, labels, [] if data.regression else data.classes, (float(ratios[0]), float(ratios[1])),
                   f"{subject.name}: outputs of {what} on {len(points)} test inputs, PCA", path)
    rows = [{"index": i, "label": _label(data, int(labels[i])) if not data.regression else float(labels[i]),
             "pc1": float(p[0]), "pc2": float(p[1])} for i, p in enumerate(points)]
    atomic_write_text(table, csv_text(("index", "label", "pc1", "pc2"), rows))
    written.files += [path, table]
    written.notes["embedding"] = f"{what}: {features.shape[1]} features; PC 1 and 2 explain {ratios[0]:.0%} and {ratios[1]:.0%}"


# -- landscape ---------------------------------------------------------------------
def initial_model(experiment, dataset):
    """The weights a run of this config starts from, rebuilt from its seed (what train draws before any update)."""
    model = experiment.build_model(dataset.input_shape, dataset.num_classes or None, targets=dataset.num_targets)
    model.initialize(np.random.default_rng(experiment.seeds("init")))
    return model


def landscape_sample(experiment, train: Split, samples: int) -> np.ndarray:
    """Sorted indices of a seeded sample of the training split (all of it when it has no more)."""
    if samples >= len(train):
        return np.arange(len(train))
    rng = np.random.default_rng(experiment.seeds("landscape"))
    return np.sort(rng.choice(len(train), size=samples, replace=False))


def filter_normalized_direction(model, rng: np.random.Generator) -> np.ndarray:
    """A random direction d in θ-space with ‖d_f‖ = ‖θ_f‖ for every filter f (Li et al. 2018): each output unit's
    (last axis) slice of every kernel; biases and other vectors (batch-norm, PReLU) get 0."""
    d = np.zeros(model.num_params, np.float64)
    offset = 0
    for _, array in model.named_params():
        size = array.size
        if array.ndim >= 2:
            w = np.asarray(array, np.float64).reshape(-1, array.shape[-1])
            g = rng.standard_normal(w.shape)
            scale = np.linalg.norm(w, axis=0) / np.maximum(np.linalg.norm(g, axis=0), 1e-12)
            d[offset : offset + size] = (g * scale).reshape(-1)
        offset += size
    return d


def _landscape(subject: Subject, out_dir: Path, written: Written, samples: int = 1000, **_) -> None:
    from .plots import plot_landscape

    experiment, data, model = subject.experiment, subject.dataset, subject.model
    if subject.start is not None:
        start_model, start = subject.start, "the other checkpoint"
    elif subject.initial is not None:
        from .checkpoint import read_checkpoint

        start_model, start = read_checkpoint(subject.initial).build_model(experiment), "the initial weights"
    else:
        start_model, start = initial_model(experiment, data), "the initial weights (rebuilt from the seed)"
    end = np.asarray(model.theta, np.float64).copy()
    begin = np.asarray(start_model.theta, np.float64).copy()
    index = landscape_sample(experiment, data.train, samples)
    sample = Split(data.train.x[index], data.train.y[index])
    batch = experiment.training.eval_batch_size

    def loss_at(theta: np.ndarray) -> float:
        model.theta[...] = theta  # cast to the model's dtype: exact at α = 0 and 1
        with np.errstate(all="ignore"):
            return float(evaluate(model, experiment.loss, sample, data.num_classes, batch).loss)

    from threadpoolctl import threadpool_limits

    # NOTE: hundreds of small passes: one BLAS thread each is faster than waking a pool for every GEMM
    # (and conv nets still split their batches across threads in parallel.py)
    limits = threadpool_limits(1)
    try:
        line = np.array([loss_at((1.0 - a) * begin + a * end) for a in LINE])
        rng = np.random.default_rng(experiment.seeds("landscape").spawn(1)[0])
        d1, d2 = filter_normalized_direction(model, rng), filter_normalized_direction(model, rng)
        along = np.array([loss_at(end + b * d1) for b in DIRECTION])
        plane = np.array([[loss_at(end + b * d1 + g * d2) for b in PLANE] for g in PLANE])  # rows: γ
    finally:
        model.theta[...] = end
        limits.unregister()
    rows = [{"kind": "line", "alpha": float(a), "beta": None, "gamma": None, "loss": v} for a, v in zip(LINE, line)]
    rows += [{"kind": "direction", "alpha": None, "beta": float(b), "gamma": None, "loss": v} for b, v in zip(DIRECTION, along)]
    rows += [{"kind": "plane", "alpha": None, "beta": float(b), "gamma": float(g), "loss": plane[j, i]}
             for j, g in enumerate(PLANE) for i, b in enumerate(PLANE)]
    path, table, about = out_dir / "landscape.png", out_dir / "landscape.csv", out_dir / "landscape.json"
    atomic_write_text(table, csv_text(("kind", "alpha", "beta", "gamma", "loss"), rows))
    atomic_write_text(about, json.dumps({
        "checkpoint": str(subject.path), "start": start if subject.initial is None or subject.start is not None else str(subject.initial),
        "split": "train", "samples": len(index), "sample": index.tolist(),
        "loss": "evaluation-mode loss plus penalties, as nncli eval reports it; layer state (batch-norm statistics) is the checkpoint's",
    }) + "\n")
    bb, gg = np.meshgrid(PLANE, PLANE)
    plot_landscape((LINE, line), (DIRECTION, along), (bb, gg, plane), start,
                   f"{subject.name}: loss on {len(index)} training samples (start {line[LINE == 0][0]:.4g}, checkpoint {line[LINE == 1][0]:.4g})", path)
    written.files += [path, table, about]
    written.notes["landscape"] = f"loss {line[LINE == 0][0]:.4g} at {start}, {line[LINE == 1][0]:.4g} at the checkpoint ({len(index)} training samples)"


# -- states (recurrent models) -----------------------------------------------------
def _with_sequences(spec: dict) -> dict:
    """A recurrent layer's spec that returns every step's state (a bidirectional wrapper's inner layer's)."""
    if spec.get("type") == "bidirectional":
        return {**spec, "layer": _with_sequences(dict(spec["layer"]))}
    return {**spec, "return_sequences": True}


def hidden_states(subject: Subject, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(name, (T, units) states) of every recurrent layer for one sequence x (1, T, D): the layers up to it,
    rebuilt with return_sequences on it, sharing the checkpoint's weights."""
    model = subject.model
    specs = subject.experiment.model.layer_specs
    params, state = dict(model.named_params()), dict(model.named_state())
    found = []
    valid = int(np.count_nonzero(~np.isnan(x[0, :, 0])))
    for j, layer in enumerate(model.layers):
        if layer.name not in RECURRENT:
            continue
        layers = [LAYERS.create(spec) for spec in [*specs[:j], _with_sequences(specs[j])]]
        prefix = Sequential(layers, model.input_shape, model.dtype)
        for key, array in prefix.named_params():
            array[...] = params[key]
        for key, array in prefix.named_state():
            array[...] = state[key]
        h = np.array(prefix.forward(x)[0], np.float64)
        found.append((f"{j}.{layer.describe()}", h[:valid] if not layer.spec.get("go_backwards") else h))
    return found


def _states(subject: Subject, out_dir: Path, written: Written, index: int = 0, **_) -> None:
    from .plots import plot_states

    data = subject.dataset
    x = data.test.x[index : index + 1]
    states = hidden_states(subject, x)
    truth = "" if data.regression else f", class {_label(data, int(data.test.y[index]))}"
    path = out_dir / f"states-{index}.png"
    plot_states(np.array(x[0], np.float64), states, f"{subject.name}: test sequence {index}{truth}", path)
    written.files.append(path)
    written.notes["states"] = ", ".join(name for name, _ in states)


# -- patterns (Hopfield models) ----------------------------------------------------
def _patterns(subject: Subject, out_dir: Path, written: Written, index: int = 0, **_) -> None:
    from .plots import plot_patterns, plot_recall

    data, model, experiment = subject.dataset, subject.model, subject.experiment
    patterns = data.train.x.reshape(len(data.train), -1).astype(np.float64)
    shown = min(len(patterns), 32)
    titles = [f"{i}" + (f" (a {data.classes[int(data.train.y[i])]})" if data.classes else "") for i in range(shown)]
    grid = out_dir / "patterns.png"
    more = f", the first {shown}" if shown < len(patterns) else ""
    plot_patterns(patterns[:shown], data.input_shape, titles, f"{subject.name}: {len(patterns)} stored patterns{more}", grid)
    trace = trace_recall(model, patterns, index, np.random.default_rng(experiment.seeds("probes")), RECALL_NOISE)
    sweeps, ended = trace.sweeps, trace.ended
    recall = out_dir / f"recall-{index}.png"
    plot_recall(trace.states, patterns[index], data.input_shape, trace.energy, trace.overlaps[:, index],
                f"{subject.name}: pattern {index} from {RECALL_NOISE:.0%} flipped bits: {ended}", recall)
    written.files += [grid, recall]
    written.notes["patterns"] = f"{len(patterns)} stored patterns; pattern {index} from {RECALL_NOISE:.0%} flipped bits: {ended} after {sweeps} sweeps"


VIEW_FUNCTIONS = {
    "weights": _weights,
    "activations": _activations,
    "errors": _errors,
    "embedding": _embedding,
    "landscape": _landscape,
    "states": _states,
    "patterns": _patterns,
}
