"""`nncli gradcheck`: backpropagation against central finite differences, on the configured model.

The model is built in float64 (whatever training.dtype says) and initialised
from the config's seed; the objective is the training objective on the first
`samples` training samples: the mean loss plus every penalty, from a
training-mode forward. Random layers (dropout, rrelu) are reseeded before
every evaluation, so their masks and slopes are the same each time; batchnorm
uses the batch's statistics, which is deterministic too.

For `entries` sampled entries of every parameter array (all of them when an
array has no more) and of the input x, the backpropagated derivative a is
compared with the central difference n = (f(θ+h) − f(θ−h)) / 2h,
h = STEP·max(1, |θ_i|): relative error |a − n| / max(|a| + |n|, FLOOR). The
floor is the size of derivative below which a central difference in float64
is mostly rounding (f is computed to about 1e-16·|f|, so n carries an absolute
error near 1e-10·max(1, |f|)): it keeps derivatives that are 0 up to rounding
from counting as failures, and an absolute error above tolerance·FLOOR still
fails.

Kinks. Where a perturbation moves a ReLU-family input across 0 or changes a
max-pool winner, f is not differentiable within ±h and the difference means
nothing. Every forward records those patterns (the signs of relu, leaky_relu,
elu, prelu and rrelu inputs, the winners of maxpool2d and global_maxpool1d,
and `kink_signature()` of any layer that defines one, e.g. a plugin's); an
entry whose forwards at θ±h differ from the one at θ is a kink: it is not
counted, and another entry is drawn (up to 3 more tries per requested
entry). Kinks the patterns cannot see (a relu inside a recurrent cell) are
caught by the one-sided differences: an entry that fails, whose analytic
derivative matches one side's slope while the two sides disagree, is a kink.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ConfigError, UsageError

STEP = 1e-4
FLOOR = 1e-5
REDRAWS = 3  # extra entries tried per requested entry when some sit at kinks


class NotApplicable(UsageError):
    """gradcheck needs a model trained by gradient descent."""


@dataclass
class GradcheckRow:
    layer: str  # "0.dense"
    array: str  # "W", "b", "act.alpha", "input"
    size: int  # entries in the array
    checked: int
    skipped: int  # entries at kinks (never counted as a pass)
    worst: float  # worst relative error over the checked entries (nan when none)
    worst_entry: tuple[int, ...] | None = None
    analytic: float | None = None  # at the worst entry
    numeric: float | None = None
    tolerance: float = 1e-6

    @property
    def status(self) -> str:
        if self.checked == 0:
            return "all at kinks" if self.skipped else "empty"
        return "ok" if self.worst <= self.tolerance else "FAIL"

    @property
    def passed(self) -> bool:
        return self.status != "FAIL"

    def to_json(self) -> dict:
        return {
            "layer": self.layer,
            "array": self.array,
            "size": self.size,
            "checked": self.checked,
            "skipped": self.skipped,
            "worst_relative_error": None if math.isnan(self.worst) else self.worst,
            "worst_entry": list(self.worst_entry) if self.worst_entry is not None else None,
            "analytic": self.analytic,
            "numeric": self.numeric,
            "status": self.status,
        }


@dataclass
class GradcheckResult:
    name: str
    rows: list[GradcheckRow]
    samples: int
    entries: int
    tolerance: float
    loss: float  # the objective at θ
    seconds: float = 0.0
    plugins: list[str] = field(default_factory=list)
    culprit: str | None = None  # on failure: the layer whose backward goes wrong, when it can be told

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows) and any(r.checked for r in self.rows)

    @property
    def worst(self) -> GradcheckRow | None:
        checked = [r for r in self.rows if r.checked]
        return max(checked, key=lambda r: r.worst) if checked else None

    def failure(self) -> str | None:
        """The one `error:` line of a failed check, or None."""
        if self.passed:
            return None
        worst = self.worst
        if worst is None:
            return "gradcheck: every sampled entry sits at a kink; nothing could be checked (try --seed or --samples)"
        failed = [r for r in self.rows if not r.passed]
        others = f" ({len(failed) - 1} more arrays fail)" if len(failed) > 1 else ""
        blame = f"the backward of {self.culprit} is wrong; worst: " if self.culprit else ""
        return (
            f"gradcheck: {blame}{worst.layer} {worst.array}: relative error {worst.worst:.3g} > tolerance {self.tolerance:g} "
            f"at entry {list(worst.worst_entry)} (backprop {worst.analytic:.6g}, finite difference {worst.numeric:.6g}){others}"
        )

    def to_json(self) -> dict:
        worst = self.worst
        return {
            "name": self.name,
            "passed": self.passed,
            "samples": self.samples,
            "entries": self.entries,
            "tolerance": self.tolerance,
            "loss": self.loss,
            "seconds": self.seconds,
            "worst_relative_error": worst.worst if worst is not None else None,
            "culprit": self.culprit,
            "rows": [r.to_json() for r in self.rows],
        }


# -- kink patterns ---------------------------------------------------------------
def _kink_recorders(model, record: list) -> None:
    """Make every layer whose derivative jumps append its discrete pattern to `record` after each forward call.

    Instance attributes on this model's own layers only (the gradcheck model is thrown away afterwards).
    """
    from .layers.activations import ELU, LeakyReLU, PReLU, ReLU, RReLU
    from .layers.pooling import MaxPool2D
    from .layers.recurrent import GlobalMaxPool1D

    def activation_sign(layer):
        x = layer._x if getattr(layer, "_x", None) is not None else layer._y
        return x > 0  # relu-family outputs are > 0 exactly where their inputs are

    seen = set()
    for top in model.layers:
        for _, layer in top.walk():
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            if callable(getattr(layer, "kink_signature", None)):
                signature = type(layer).kink_signature
            elif isinstance(layer, (ReLU, LeakyReLU, ELU, PReLU, RReLU)):
                signature = activation_sign
            elif isinstance(layer, (MaxPool2D, GlobalMaxPool1D)):
                signature = lambda layer: getattr(layer, "_winner", None)  # noqa: E731 (set in training forwards)
            else:
                continue
            _wrap(layer, signature, record)


def _wrap(layer, signature, record: list) -> None:
    forward = layer.forward

    def recorded(*args, **kwargs):
        out = forward(*args, **kwargs)
        pattern = signature(layer)
        if pattern is not None:
            record.append(np.array(pattern, copy=True))
        return out

    layer.forward = recorded


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b))


# -- the check -------------------------------------------------------------------
def gradcheck(
    config: str | Path | dict,
    overrides=(),
    samples: int = 4,
    entries: int = 20,
    tolerance: float = 1e-6,
    seed: int | None = None,
) -> GradcheckResult:
    """Compare backprop with central differences on `samples` training samples (see the module docstring)."""
    from .experiment import load_experiment

    started = time.perf_counter()
    for flag, value, least in (("--samples", samples, 1), ("--entries", entries, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"must be a positive integer, got {value!r}", location=flag)
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance > 0):
        raise ConfigError(f"must be a positive number, got {tolerance!r}", location="--tolerance")
    experiment = load_experiment(config, list(overrides), seed)
    if experiment.training.device != "cpu":  # finite differences in float64 are the host's job, whatever trains it
        experiment = load_experiment(config, list(overrides), seed, device="cpu")
    kind = experiment.model
    if not kind.gradient_trained:
        raise NotApplicable(
            f"gradcheck does not apply: model.type {kind.spec['type']} is not trained by gradient descent (it has no backward pass)"
        )
    with experiment.doc.errors_located():  # a missing data.path names its config line
        dataset = experiment.data.load(experiment.seeds("data"))
    n = min(samples, len(dataset.train))
    if n == 0:
        raise ConfigError("the training split is empty", ("data",), experiment.doc.locate(("data",)))
    model = experiment.build_model(dataset.input_shape, dataset.num_classes or None, dtype=np.float64, targets=dataset.num_targets)
    model.initialize(np.random.default_rng(experiment.seeds("init")))
    loss = experiment.loss
    x0 = np.array(dataset.train.x[:n], dtype=np.float64)
    y = dataset.train.y[:n]
    patterns: list = []
    _kink_recorders(model, patterns)
    model.layers[0].needs_input_grad = True

    def f(x: np.ndarray, backward: bool = False):
        """The objective (and its pattern record); with backward, ∇θ in model.grad and dL/dx returned."""
        patterns.clear()
        model.seed_layers(experiment.seeds("layers"))
        outputs = model.forward(x, training=True)
        value = float(loss.forward(outputs, y))
        if model.activity_regularized:
            value += model.activity_penalty()
        if model.weight_penalized:
            value += model.penalty()
        dx = None
        if backward:
            dx = model.backward(loss.backward())
            if model.weight_penalized:
                model.add_penalty_gradient()
            dx = None if dx is None else np.array(dx, dtype=np.float64)
        return value, list(patterns), dx

    f0, base_patterns, dx = f(x0, backward=True)
    if not math.isfinite(f0):
        raise ConfigError(f"the objective at the initial weights is {f0}; nothing to check", ("model",), experiment.doc.locate(("model",)))
    grads = dict((k, g.copy()) for k, g in model.named_grads())
    rng = np.random.default_rng(experiment.seeds("gradcheck"))
    floor = FLOOR * max(1.0, abs(f0))
    rows: list[GradcheckRow] = []

    def check(layer: str, array: str, values: np.ndarray, analytic: np.ndarray, evaluate, valid=None) -> None:
        flat, grad = values.reshape(-1), analytic.reshape(-1)
        candidates = np.arange(flat.size) if valid is None else np.flatnonzero(valid.reshape(-1))
        if candidates.size > entries:
            candidates = rng.permutation(candidates)[: entries * (1 + REDRAWS)]
        row = GradcheckRow(layer, array, int(flat.size), 0, 0, float("nan"), tolerance=tolerance)
        worst = -1.0
        for i in candidates:
            if row.checked >= entries:
                break
            old = flat[i]
            h = STEP * max(1.0, abs(float(old)))
            values_at, kink = {}, False
            for k in (1, -1, 2, -2):
                flat[i] = old + k * h
                values_at[k], seen, _ = evaluate()
                kink = kink or not _same(seen, base_patterns)
            flat[i] = old
            a = float(grad[i])
            num = (8 * (values_at[1] - values_at[-1]) - (values_at[2] - values_at[-2])) / (12 * h)
            err = abs(a - num) / max(abs(a) + abs(num), floor)
            if not kink and err > tolerance:  # a kink the patterns do not see: a matches one side's slope
                right, left = (values_at[1] - f0) / h, (f0 - values_at[-1]) / h
                kink = min(abs(a - right), abs(a - left)) <= 0.1 * abs(right - left)
            if kink:
                row.skipped += 1
                continue
            row.checked += 1
            if err > worst:
                worst = err
                row.worst, row.worst_entry = err, tuple(int(j) for j in np.unravel_index(i, values.shape))
                row.analytic, row.numeric = a, float(num)
        rows.append(row)

    theta = model.theta
    for key, param in model.named_params():
        layer, _, array = key.partition("/")
        check(layer, array, param, grads[key], lambda: f(x0))
    if dx is not None:
        x = x0.copy()
        valid = ~np.isnan(x) if np.isnan(x).any() else None  # padded steps of variable-length sequences are not data
        check(f"0.{model.layers[0].name}", "input", x, dx, lambda: f(x), valid)
    del theta
    culprit = None
    if not all(r.passed for r in rows):
        culprit = _locate(model, f, check, rows, x0)
    return GradcheckResult(
        name=experiment.name,
        rows=rows,
        samples=n,
        entries=entries,
        tolerance=tolerance,
        loss=f0,
        seconds=time.perf_counter() - started,
        plugins=list(experiment.plugins),
        culprit=culprit,
    )


def _locate(model, f, check, rows: list, x0) -> str | None:
    """The layer whose backward goes wrong: dL/d(its output) is right but dL/d(its input) or its own arrays are not.

    dL/dy_i of each layer's output is checked by adding the perturbation to the output a forward returns (a copy:
    the layer's own buffers are left alone), against the gradient that reaches that layer's backward.
    """
    layers = model.layers
    arriving: dict[int, np.ndarray] = {}
    shift: dict = {}
    for i, layer in enumerate(layers[:-1]):
        forward, backward = layer.forward, layer.backward

        def shifted(*args, _forward=forward, _i=i, **kwargs):
            out = _forward(*args, **kwargs)
            if shift.get("layer") == _i:
                out = np.array(out, copy=True)
                out.reshape(-1)[shift["index"]] += shift["delta"]
            return out

        def recorded(grad_out, _backward=backward, _i=i):
            arriving[_i] = np.array(grad_out, dtype=np.float64, copy=True)
            return _backward(grad_out)

        layer.forward, layer.backward = shifted, recorded
    f(x0, backward=True)
    ok_out = {len(layers) - 1: True}
    for i in range(len(layers) - 1):
        before = len(rows)
        _check_output(check, i, layers[i].name, np.zeros_like(arriving[i]), arriving[i], shift, lambda: f(x0))
        ok_out[i] = rows[before].passed
        del rows[before:]  # localisation only: the table keeps the arrays
    failing = {(r.layer, r.array) for r in rows if not r.passed}
    for i in range(len(layers) - 1, -1, -1):
        key = f"{i}.{layers[i].name}"
        own_bad = any(layer == key and array != "input" for layer, array in failing)
        input_bad = (key, "input") in failing if i == 0 else not ok_out[i - 1]
        if ok_out[i] and (own_bad or input_bad):
            return key
    return None


def _check_output(check, i, name, probe, analytic, shift, evaluate) -> None:
    """check() on layer i's output: the 'values' perturbed are a zero array whose entries become output shifts."""
    flat = probe.reshape(-1)

    def evaluate_shifted():
        nonzero = np.flatnonzero(flat)
        if nonzero.size:
            shift.update(layer=i, index=int(nonzero[0]), delta=float(flat[nonzero[0]]))
        else:
            shift.clear()
        try:
            return evaluate()
        finally:
            shift.clear()

    check(f"{i}.{name}", "output", probe, analytic, evaluate_shifted)
