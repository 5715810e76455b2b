"""Recurrent layers (lstm, gru, rnn), the bidirectional wrapper, and masked poolings over time.

Inputs are sequences (N, T, D). Keras's option names, defaults, weight
layout and gate order, so a Keras model needs no translation: `kernel (D, G·H)`,
`recurrent_kernel (H, G·H)`, `bias`; LSTM gates input, forget, cell, output;
GRU update, reset, candidate (with `reset_after`, the default, `bias` is
(2, 3H): input and recurrent biases).

How it runs (PERFORMANCE.md, "Recurrent layers"): the input projection of all
T steps is one GEMM into a time-major (T, N, G·H) buffer; each step is one
recurrent GEMM into its slice plus a few in-place elementwise passes (tanh
and sigmoid gates in one tanh call: σ(z) = ½(1 + tanh(z/2))); backward keeps
only the elementwise gate derivatives and one GEMM per step inside the loop,
and computes the kernel, recurrent-kernel and input gradients as three GEMMs
over all T·N rows afterwards. The derivative factors backward needs are
computed from the cached gates in a few vectorised passes over all steps.

Masks: variable-length sequences arrive padded at the end with NaN (see
`models.sequential.split_padding`), and mask-aware layers (`takes_mask`)
receive a (N, T) boolean mask of the valid steps. A masked step leaves the
state unchanged and receives no gradient; so the final state is each
sequence's last valid one, and `go_backwards` (which reverses the padded
sequence) starts at each sequence's own last step. With
`return_sequences: true`, outputs at masked steps are zeros.
"""

from __future__ import annotations

import inspect
import typing
from typing import Annotated, Literal

import numpy as np

from ..backend import xp_of
from ..initializers import Initializer, INITIALIZERS
from ..registry import Fraction, PositiveInt
from ..regularizers import Regularizer_
from .base import LAYERS, Layer, ShapeError, Shape

CellActivation = Literal["tanh", "sigmoid", "relu", "linear"]


def check_sequence(name: str, input_shape: Shape) -> None:
    if len(input_shape) != 2:
        raise ShapeError(
            f"{name} expects sequences (time, features), got {tuple(input_shape)}; "
            "feed it sequence data (data.sequence: rows for images) or a layer with return_sequences: true"
        )


def _activate(kind: str, a: np.ndarray, out: np.ndarray | None = None) -> None:
    """out ← f(a) (in place when out is None)."""
    xp = xp_of(a)
    out = a if out is None else out
    if kind == "tanh":
        xp.tanh(a, out=out)
    elif kind == "sigmoid":  # ½(1 + tanh(a/2)): one transcendental, never overflows
        xp.multiply(a, 0.5, out=out)
        xp.tanh(out, out=out)
        out *= 0.5
        out += 0.5
    elif kind == "relu":
        xp.maximum(a, 0, out=out)
    elif out is not a:
        xp.copyto(out, a)


def _slope(kind: str, y: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """f'(z) from y = f(z), into `out` (a new array when None); used in the vectorised passes over all steps."""
    xp = xp_of(y)
    if out is None:
        out = xp.empty_like(y)
    if kind == "tanh":  # 1 − y²
        xp.multiply(y, y, out=out)
        xp.subtract(1.0, out, out=out)
    elif kind == "sigmoid":  # y − y²
        xp.multiply(y, y, out=out)
        xp.subtract(y, out, out=out)
    elif kind == "relu":
        xp.greater(y, 0, out=out)
    else:
        out[...] = 1.0
    return out


def _transposed(layer: Layer, name: str) -> np.ndarray:
    """A C-contiguous copy of a parameter's transpose: a per-step GEMM with it is ~1.7× faster than with the view."""
    xp = layer.xp
    W = layer.params[name]
    out = layer.buffer(name + ".T", W.shape[::-1], W.dtype)
    xp.copyto(out, W.T)
    return out


def options(drop: tuple[str, ...] = (), **extra: tuple[object, object]):
    """Class decorator: the constructor takes Recurrent's options less `drop`, plus keyword options
    `extra` (name=(annotation, default)) stored as attributes, so the registry sees each layer's own schema."""

    def decorate(cls):
        base = inspect.signature(Recurrent.__init__)
        hints = typing.get_type_hints(Recurrent.__init__, include_extras=True)
        params = [p for p in base.parameters.values() if p.name not in drop]
        params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a) for n, (a, d) in extra.items()]

        def __init__(self, *args, **kwargs):
            own = {n: kwargs.pop(n, d) for n, (_, d) in extra.items()}
            Recurrent.__init__(self, *args, **kwargs)
            for name, value in own.items():
                setattr(self, name, value)

        __init__.__signature__ = base.replace(parameters=params)
        __init__.__annotations__ = {k: v for k, v in hints.items() if k not in drop} | {n: a for n, (a, _) in extra.items()}
        cls.__init__ = __init__
        return cls

    return decorate


class Recurrent(Layer):
    """Shared by lstm, gru and rnn: options, shapes, initialisation, input projection, masks, dropout, outputs.

    A subclass sets `gates` and `block_activations` (the function of each gate block) and implements
    `_steps` (the forward loop) and `_backward_steps` (the backward loop).
    """

    independent_samples = True
    takes_mask = True
    # Two half-batch threads keep both cores busy through the elementwise gate work that BLAS leaves serial in
    # evaluation (35k → 38k sequences/s on row-MNIST LSTM(128)); training batches of 64 are ~5% faster in one.
    compute_bound_in_evaluation = True
    kernel_names = ("kernel", "recurrent_kernel")
    gates = 1
    fused_gates = False  # the gate blocks may run as one tanh call (_gate_scale)

    def __init__(
        self,
        units: PositiveInt,
        activation: CellActivation = "tanh",
        recurrent_activation: CellActivation = "sigmoid",
        use_bias: bool = True,
        return_sequences: bool = False,
        go_backwards: bool = False,
        kernel_initializer: Initializer = "glorot_uniform",
        recurrent_initializer: Initializer = "orthogonal",
        bias_initializer: Initializer = "zeros",
        dropout: Fraction = 0.0,
        recurrent_dropout: Fraction = 0.0,
        kernel_regularizer: Regularizer_ | None = None,
        activity_regularizer: Regularizer_ | None = None,
    ):
        super().__init__()
        self.units = units
        self.activation = activation
        self.recurrent_activation = recurrent_activation
        self.use_bias = use_bias
        self.return_sequences = return_sequences
        self.go_backwards = go_backwards
        self.kernel_initializer = INITIALIZERS.create(kernel_initializer)
        self.recurrent_initializer = INITIALIZERS.create(recurrent_initializer)
        self.bias_initializer = INITIALIZERS.create(bias_initializer)
        self.dropout = dropout
        self.recurrent_dropout = recurrent_dropout
        self.has_randomness = dropout > 0 or recurrent_dropout > 0
        self.set_regularizers(kernel_regularizer, activity_regularizer)
        self.record_time_gradients = False  # set by diagnostics.GradientLog: keep ‖dL/dh_t‖ of each backward
        self.time_gradient_norms: np.ndarray | None = None  # (T,) in input time order, from the last backward

    # -- shapes and weights ---------------------------------------------------
    @property
    def block_activations(self) -> tuple[str, ...]:
        """The function applied to each of the `gates` blocks of the preactivation."""
        return (self.activation,)

    def bias_shape(self) -> Shape:
        return (self.gates * self.units,)

    def build(self, input_shape):
        check_sequence(self.name, input_shape)
        T, D = input_shape
        G = self.gates * self.units
        self.param_shapes = {"kernel": (D, G), "recurrent_kernel": (self.units, G)}
        if self.use_bias:
            self.param_shapes["bias"] = self.bias_shape()
        return (T, self.units) if self.return_sequences else (self.units,)

    def initialize(self, rng):
        for name, init in (
            ("kernel", self.kernel_initializer),
            ("recurrent_kernel", self.recurrent_initializer),
            ("bias", self.bias_initializer),
        ):
            if name in self.params:
                array = self.params[name]
                fan_shape = self.param_shapes["kernel"]
                array[...] = init(array.shape, fan_shape[0], fan_shape[1], rng)

    def work_elements(self) -> int:
        """Elements per sample kept between forward and backward: gates, states and their derivative factors."""
        T = self.input_shape[0]
        return T * (3 * self.gates * self.units + 6 * self.units + self.input_shape[1])

    # -- forward --------------------------------------------------------------
    def forward(self, x, training=False, mask=None):
        """x: (N, T, D) -> (N, units), or (N, T, units) with return_sequences."""
        xp = self.xp
        N, T, D = x.shape
        H, G, dtype = self.units, self.gates * self.units, x.dtype
        order = slice(None, None, -1) if self.go_backwards else slice(None)
        # time-major inputs in processing order, and a column of ones that folds the input bias into the GEMM
        xt = self.buffer("xt", (T, N, D + 1), dtype)
        xp.copyto(xt[..., :D], x.transpose(1, 0, 2)[order])
        xt[..., D] = 1.0
        self._input_mask = self._recurrent_mask = None
        if training and self.dropout > 0:  # one mask per sequence, the same at every step (Keras, Gal & Ghahramani 2016)
            self._input_mask = self._dropout_mask("din", (N, D), self.dropout, dtype)
            xt[..., :D] *= self._input_mask
        self._hd = None  # every step's h_{t-1} after recurrent dropout, as the recurrent GEMM sees it
        if training and self.recurrent_dropout > 0:
            self._recurrent_mask = self._dropout_mask("drec", (N, H), self.recurrent_dropout, dtype)
            self._hd = self.buffer("hd", (T, N, H), dtype)
        self._xt = xt
        valid = None if mask is None or mask.all() else xp.ascontiguousarray(mask.T[order])
        self._valid = valid
        self._carry = None if valid is None else [None if v.all() else ~v[:, None] for v in valid]

        scales = self._gate_scale(dtype)
        z = self.buffer("z", (T, N, G), dtype)  # input projections (+ bias, pre-scaled), then the gates, step by step
        xp.matmul(xt.reshape(T * N, D + 1), self._input_weights(scales, dtype), out=z.reshape(T * N, G))
        h = self.buffer("h", (T + 1, N, H), dtype)  # h[t+1] is the state after step t; h[0] = 0
        h[0] = 0.0
        self._steps(z, h, scales)
        self._z, self._h = z, h
        if not self.return_sequences:
            return h[T]
        y = self.buffer("y", (N, T, H), dtype)
        xp.copyto(y, h[1:].transpose(1, 0, 2))
        if valid is not None:
            y *= valid.T[:, :, None]  # zeros at masked steps
        return y

    def input_bias(self) -> np.ndarray:
        return self.params["bias"]

    def output_mask(self, mask):
        """With go_backwards the outputs come in reading order, so their mask is reversed too."""
        mask = super().output_mask(mask)
        return mask[:, ::-1] if mask is not None and self.go_backwards else mask

    def _input_weights(self, scales, dtype) -> np.ndarray:
        """(D + 1, G): the kernel with the input bias as its last row, times the gates' pre-scale when fused."""
        xp = self.xp
        W = self.params["kernel"]
        Wb = self.buffer("Wb", (W.shape[0] + 1, W.shape[1]), dtype)
        xp.copyto(Wb[:-1], W)
        if self.use_bias:
            xp.copyto(Wb[-1], self.input_bias())
        else:
            Wb[-1] = 0.0
        if scales is not None:
            Wb *= scales[0]
        return Wb

    def _dropout_mask(self, key, shape, rate, dtype):
        xp = self.xp
        mask = self.uniform(key, shape, dtype)
        xp.greater_equal(mask, rate, out=mask)
        mask *= 1.0 / (1.0 - rate)
        return mask

    def _recurrent_input(self, h_prev: np.ndarray, t: int) -> np.ndarray:
        """h_{t-1} as the recurrent GEMM sees it (after recurrent dropout), kept for the recurrent-kernel gradient."""
        xp = self.xp
        if self._hd is None:
            return h_prev
        xp.multiply(h_prev, self._recurrent_mask, out=self._hd[t])
        return self._hd[t]

    def _recurrent_inputs(self) -> np.ndarray:
        """(T, N, H): every step's h_{t-1} as the recurrent GEMM saw it."""
        return self._h[: len(self._z)] if self._hd is None else self._hd

    def _hold(self, t: int, new: np.ndarray, old: np.ndarray) -> None:
        """Masked sequences keep their previous state at step t."""
        xp = self.xp
        if self._carry is not None and self._carry[t] is not None:
            xp.copyto(new, old, where=self._carry[t])

    def _gate_scale(self, dtype) -> tuple[np.ndarray, np.ndarray] | None:
        """When every gate block is tanh or sigmoid, (scale, shift) per column so that all blocks are one tanh
        call: sigmoid(z) = ½·tanh(½z) + ½, i.e. f(z) = scale·tanh(scale·z) + shift (the preactivations come
        pre-scaled, see _input_weights). None when some block is relu or linear."""
        xp = self.xp
        kinds = self.block_activations
        if not self.fused_gates or not all(k in ("tanh", "sigmoid") for k in kinds):
            return None
        key = (kinds, np.dtype(dtype))
        cached = getattr(self, "_scales", None)
        if cached is None or cached[0] != key:
            H = self.units
            half = xp.array([0.5 if k == "sigmoid" else 1.0 for k in kinds], dtype).repeat(H)
            shift = xp.array([0.5 if k == "sigmoid" else 0.0 for k in kinds], dtype).repeat(H)
            self._scales = cached = (key, (half, shift))
        return cached[1]

    def _activate_blocks(self, a: np.ndarray, scales) -> None:
        """Every gate block of a (already pre-scaled when `scales`) gets its function, in place."""
        xp = self.xp
        if scales is not None:
            xp.tanh(a, out=a)
            a *= scales[0]
            a += scales[1]
            return
        H = self.units
        for k, kind in enumerate(self.block_activations):
            _activate(kind, a[..., k * H : (k + 1) * H])

    # -- backward -------------------------------------------------------------
    def backward(self, grad_out):
        """(N, units) or (N, T, units) -> (N, T, D); writes kernel, recurrent_kernel and bias gradients."""
        xp = self.xp
        z, xt = self._z, self._xt
        T, N, G = z.shape
        H, D, dtype = self.units, xt.shape[2] - 1, z.dtype
        dy = None
        if self.return_sequences:
            dy = self.buffer("dy", (T, N, H), dtype)
            xp.copyto(dy, grad_out.transpose(1, 0, 2))
            if self._valid is not None:
                dy *= self._valid[:, :, None]
            last = dy[T - 1]
        else:
            last = grad_out
        norms = np.empty(T) if self.record_time_gradients else None  # host: diagnostics
        dz = self.buffer("dz", (T, N, G), dtype)  # dL/d(input projection) of every step
        drec = self._backward_steps(last, dy, dz, norms)  # dL/d(recurrent projection), (T, N, G)

        dWb = self.buffer("dWb", (D + 1, G), dtype)  # kernel and input-bias gradients in one GEMM
        xp.matmul(xt.reshape(T * N, D + 1).T, dz.reshape(T * N, G), out=dWb)
        xp.copyto(self.grads["kernel"], dWb[:D])
        self._recurrent_kernel_gradient(drec)
        if self.use_bias:
            self._bias_gradient(dWb[D], drec)
        if norms is not None:
            self.time_gradient_norms = norms[::-1] if self.go_backwards else norms
        if not self.needs_input_grad:
            return None
        dxt = self.buffer("dxt", (T, N, D), dtype)
        xp.matmul(dz.reshape(T * N, G), self.params["kernel"].T, out=dxt.reshape(T * N, D))
        if self._input_mask is not None:
            dxt *= self._input_mask
        dx = self.buffer("dx", (N, T, D), dtype)
        order = slice(None, None, -1) if self.go_backwards else slice(None)
        xp.copyto(dx, dxt[order].transpose(1, 0, 2))
        return dx

    def _recurrent_kernel_gradient(self, drec) -> None:
        """dU = Σ_t h_{t-1}ᵀ·drec_t as one GEMM over all T·N rows."""
        xp = self.xp
        T, N, G = drec.shape
        xp.matmul(self._recurrent_inputs().reshape(T * N, -1).T, drec.reshape(T * N, G), out=self.grads["recurrent_kernel"])

    def _bias_gradient(self, db_input, drec) -> None:
        """The bias gradient from the input bias's (the kernel GEMM's last row) and, where there is one, the recurrent bias's."""
        xp = self.xp
        xp.copyto(self.grads["bias"], db_input)

    def _valid_factor(self, dtype) -> np.ndarray | None:
        """(T, N, 1) 1.0 at valid steps, 0.0 at masked ones (None without a mask)."""
        return None if self._valid is None else self._valid[:, :, None].astype(dtype)

    @staticmethod
    def _record(t, dh, norms) -> None:
        """Keep ‖dL/dh_t‖ (root mean square over the batch of each sequence's norm) when asked."""
        xp = xp_of(dh)
        if norms is not None:
            norms[t] = float(xp.sqrt(xp.einsum("ij,ij->", dh, dh, dtype=np.float64) / dh.shape[0]))

    def _carry_gradient(self, t, new, old) -> None:
        """Masked sequences at step t pass dL/dh_t (or dc_t) to h_{t-1} unchanged."""
        xp = self.xp
        if self._carry is not None and self._carry[t] is not None:
            xp.copyto(new, old, where=self._carry[t])

    def _to_previous(self, t, dz_t, UT, dh, spare, dy) -> tuple[np.ndarray, np.ndarray]:
        """dL/dh_{t-1} into `spare` when h_t = f(x_t·W + h_{t-1}·U) alone (rnn, lstm): dz_t·Uᵀ through recurrent
        dropout, masked sequences passing dh on, plus the output's gradient at t−1. Returns (it, the free buffer)."""
        xp = self.xp
        xp.matmul(dz_t, UT, out=spare)
        if self._recurrent_mask is not None:
            spare *= self._recurrent_mask
        self._carry_gradient(t, spare, dh)
        if dy is not None and t > 0:
            spare += dy[t - 1]
        return spare, dh

    # -- description ----------------------------------------------------------
    def describe(self):
        parts = [str(self.units)]
        if self.return_sequences:
            parts.append("sequences")
        if self.go_backwards:
            parts.append("backwards")
        if self.dropout or self.recurrent_dropout:
            parts.append(f"dropout {self.dropout:g}/{self.recurrent_dropout:g}")
        return f"{self.name}({', '.join(parts)})"

    # subclasses
    def _steps(self, z: np.ndarray, h: np.ndarray, scales) -> None:
        raise NotImplementedError

    def _backward_steps(self, last, dy, dz, norms) -> np.ndarray:
        raise NotImplementedError


@LAYERS.register("rnn", "simple_rnn", "simplernn")
@options(drop=("recurrent_activation",))
class SimpleRNN(Recurrent):
    """Fully connected recurrence (Elman 1990): h_t = activation(x_t·W + h_{t-1}·U + b).

    Options:
    units: size of the state h
    activation: tanh, sigmoid, relu or linear
    use_bias: add the bias b
    return_sequences: output every step's state (N, T, units) instead of the last (N, units)
    go_backwards: read the sequence last step first (outputs in that order)
    kernel_initializer: for W (D, units)
    recurrent_initializer: for U (units, units)
    bias_initializer: for b
    dropout: fraction of the inputs dropped in training (one mask per sequence)
    recurrent_dropout: fraction of h_{t-1} dropped in the recurrent product in training (one mask per sequence)
    kernel_regularizer: penalty on W and U added to the loss
    activity_regularizer: penalty on the layer's output
    """

    gates = 1

    def _steps(self, z, h, scales):
        xp = self.xp
        U = self.params["recurrent_kernel"]
        tmp = self.buffer("tmp", z.shape[1:], z.dtype)
        for t in range(z.shape[0]):
            xp.matmul(self._recurrent_input(h[t], t), U, out=tmp)
            xp.add(z[t], tmp, out=h[t + 1])
            _activate(self.activation, h[t + 1])
            self._hold(t, h[t + 1], h[t])

    def _backward_steps(self, last, dy, dz, norms):
        xp = self.xp
        h, UT = self._h, _transposed(self, "recurrent_kernel")
        T = dz.shape[0]
        slope = _slope(self.activation, h[1:])  # f'(z_t) at every step, (T, N, H)
        valid = self._valid_factor(slope.dtype)
        if valid is not None:
            slope *= valid
        dh = self.buffer("dh", last.shape, last.dtype)
        xp.copyto(dh, last)
        spare = self.buffer("dh2", last.shape, last.dtype)
        for t in range(T - 1, -1, -1):
            self._record(t, dh, norms)
            xp.multiply(dh, slope[t], out=dz[t])
            dh, spare = self._to_previous(t, dz[t], UT, dh, spare, dy)
        return dz


@LAYERS.register("lstm")
@options(unit_forget_bias=(bool, True))
class LSTM(Recurrent):
    """Long short-term memory (Hochreiter & Schmidhuber 1997, with forget gate): gates i, f, c̃, o; c_t = f·c_{t-1} + i·c̃; h_t = o·activation(c_t).

    Keras layout: kernel (D, 4·units), recurrent_kernel (units, 4·units), bias (4·units,), gate blocks in the order input, forget, cell, output.

    Options:
    units: size of the state h (and the cell c)
    activation: for the candidate c̃ and the output activation(c): tanh, sigmoid, relu or linear
    recurrent_activation: for the gates i, f, o
    use_bias: add the bias
    unit_forget_bias: start the forget gate's bias at 1 (Jozefowicz et al. 2015), on top of bias_initializer
    return_sequences: output every step's state (N, T, units) instead of the last (N, units)
    go_backwards: read the sequence last step first (outputs in that order)
    kernel_initializer: for the kernel (D, 4·units)
    recurrent_initializer: for the recurrent kernel (units, 4·units)
    bias_initializer: for the bias
    dropout: fraction of the inputs dropped in training (one mask per sequence)
    recurrent_dropout: fraction of h_{t-1} dropped in the recurrent product in training (one mask per sequence)
    kernel_regularizer: penalty on both kernels added to the loss
    activity_regularizer: penalty on the layer's output
    """

    gates = 4
    fused_gates = True

    @property
    def block_activations(self):
        r = self.recurrent_activation
        return (r, r, self.activation, r)

    def initialize(self, rng):
        super().initialize(rng)
        if self.use_bias and self.unit_forget_bias:
            self.params["bias"][self.units : 2 * self.units] += 1.0

    def _steps(self, z, h, scales):
        xp = self.xp
        T, N, G = z.shape
        H = self.units
        U = self.params["recurrent_kernel"]
        if scales is not None:  # the input projections came pre-scaled (_input_weights); so does U
            U = xp.multiply(U, scales[0], out=self.buffer("U", U.shape, U.dtype))
        c = self.buffer("c", (T + 1, N, H), z.dtype)
        tc = self.buffer("tc", (T, N, H), z.dtype)  # activation(c_t)
        fc = self.buffer("fc", (T, N, H), z.dtype)  # f·c_{t-1}, kept for backward's factors
        ig = self.buffer("ig", (T, N, H), z.dtype)  # i·c̃
        tmp = self.buffer("tmp", (N, G), z.dtype)
        c[0] = 0.0
        for t in range(T):
            g = z[t]
            xp.matmul(self._recurrent_input(h[t], t), U, out=tmp)
            g += tmp
            self._activate_blocks(g, scales)
            xp.multiply(g[:, H : 2 * H], c[t], out=fc[t])
            xp.multiply(g[:, :H], g[:, 2 * H : 3 * H], out=ig[t])
            xp.add(fc[t], ig[t], out=c[t + 1])
            _activate(self.activation, c[t + 1], out=tc[t])
            xp.multiply(g[:, 3 * H :], tc[t], out=h[t + 1])
            if self._carry is not None and self._carry[t] is not None:
                self._hold(t, c[t + 1], c[t])
                self._hold(t, h[t + 1], h[t])
        self._c, self._tc, self._fc, self._ig = c, tc, fc, ig

    def _factors(self):
        """Derivative factors of every step, in a few passes over all T·N rows:
        dz_i = dc·q_i, dz_f = dc·q_f, dz_c̃ = dc·q_c̃ with q = (c̃·σ'(i), c_{t-1}·σ'(f), i·act'(c̃)),
        dz_o = dh·(act(c)·σ'(o)), and dc_t gains dh·(o·act'(c_t)). With the default tanh and sigmoid they
        come from products the forward pass kept (i·c̃, f·c_{t-1}, h = o·tanh c): two passes each."""
        xp = self.xp
        a, c, tc, h = self._z, self._c, self._tc, self._h
        T, N, G = a.shape
        H = self.units
        i, f, g, o = (a[..., k * H : (k + 1) * H] for k in range(4))
        q = self.buffer("q", (T, 3, N, H), a.dtype)
        ro = self.buffer("ro", (T, N, H), a.dtype)
        so = self.buffer("so", (T, N, H), a.dtype)
        if self.activation == "tanh" and self.recurrent_activation == "sigmoid":
            ig, fc, ht = self._ig, self._fc, h[1:]
            xp.subtract(1.0, i, out=q[:, 0])
            q[:, 0] *= ig  # c̃·i(1 − i) = i·c̃·(1 − i)
            xp.subtract(1.0, f, out=q[:, 1])
            q[:, 1] *= fc  # c_{t-1}·f(1 − f)
            xp.multiply(ig, g, out=q[:, 2])
            xp.subtract(i, q[:, 2], out=q[:, 2])  # i·(1 − c̃²)
            xp.multiply(ht, o, out=ro)
            xp.subtract(ht, ro, out=ro)  # tanh(c)·o(1 − o) = h − h·o
            xp.multiply(ht, tc, out=so)
            xp.subtract(o, so, out=so)  # o·(1 − tanh²c) = o − h·tanh c
        else:
            r = self.recurrent_activation
            for k, (slope_of, kind, times) in enumerate(((i, r, g), (f, r, c[:T]), (g, self.activation, i))):
                _slope(kind, slope_of, out=q[:, k])
                q[:, k] *= times
            _slope(r, o, out=ro)
            ro *= tc
            _slope(self.activation, tc, out=so)
            so *= o
        keep = f
        valid = self._valid_factor(a.dtype)
        if valid is not None:  # masked steps: no gate gradient, c and h carried unchanged
            q *= valid[:, None]
            ro *= valid
            so *= valid
            keep = f * valid + (1.0 - valid)
        return q, ro, so, keep

    def _backward_steps(self, last, dy, dz, norms):
        xp = self.xp
        T, N, G = dz.shape
        H = self.units
        q, ro, so, keep = self._factors()
        UT = _transposed(self, "recurrent_kernel")
        dh = self.buffer("dh", (N, H), dz.dtype)
        xp.copyto(dh, last)
        spare = self.buffer("dh2", (N, H), dz.dtype)
        dc = self.buffer("dc", (N, H), dz.dtype)
        dc[...] = 0.0
        tmp = self.buffer("tmp_b", (N, H), dz.dtype)
        for t in range(T - 1, -1, -1):
            self._record(t, dh, norms)
            d, qt = dz[t], q[t]
            xp.multiply(dh, ro[t], out=d[:, 3 * H :])
            xp.multiply(dh, so[t], out=tmp)
            dc += tmp
            xp.multiply(dc, qt[0], out=d[:, :H])
            xp.multiply(dc, qt[1], out=d[:, H : 2 * H])
            xp.multiply(dc, qt[2], out=d[:, 2 * H : 3 * H])
            dc *= keep[t]
            dh, spare = self._to_previous(t, d, UT, dh, spare, dy)
        return dz


@LAYERS.register("gru")
@options(reset_after=(bool, True))
class GRU(Recurrent):
    """Gated recurrent unit (Cho et al. 2014): update gate z, reset gate r, candidate h̃; h_t = z·h_{t-1} + (1 − z)·h̃.

    Keras layout: kernel (D, 3·units), recurrent_kernel (units, 3·units), gate blocks update, reset, candidate.
    With reset_after (Keras's and cuDNN's default) h̃ = activation(x·W_h + b_h + r·(h_{t-1}·U_h + b'_h)) and
    bias is (2, 3·units): input and recurrent biases; otherwise h̃ = activation(x·W_h + (r·h_{t-1})·U_h + b_h)
    and bias is (3·units,).

    Options:
    units: size of the state h
    activation: for the candidate h̃: tanh, sigmoid, relu or linear
    recurrent_activation: for the gates z and r
    use_bias: add the biases
    reset_after: apply the reset gate after the recurrent product (true, Keras 2+ and PyTorch) or before it (false)
    return_sequences: output every step's state (N, T, units) instead of the last (N, units)
    go_backwards: read the sequence last step first (outputs in that order)
    kernel_initializer: for the kernel (D, 3·units)
    recurrent_initializer: for the recurrent kernel (units, 3·units)
    bias_initializer: for the bias
    dropout: fraction of the inputs dropped in training (one mask per sequence)
    recurrent_dropout: fraction of h_{t-1} dropped in the recurrent products in training (one mask per sequence)
    kernel_regularizer: penalty on both kernels added to the loss
    activity_regularizer: penalty on the layer's output
    """

    gates = 3

    @property
    def block_activations(self):
        r = self.recurrent_activation
        return (r, r, self.activation)

    def bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def input_bias(self):
        b = self.params["bias"]
        return b[0] if self.reset_after else b

    def _bias_gradient(self, db_input, drec):
        xp = self.xp
        db = self.grads["bias"]
        if self.reset_after:
            T, N, G = drec.shape
            xp.copyto(db[0], db_input)
            xp.matmul(self.ones(T * N, drec.dtype), drec.reshape(T * N, G), out=db[1])
        else:
            xp.copyto(db, db_input)

    def _steps(self, z, h, scales):
        xp = self.xp
        T, N, G = z.shape
        H = self.units
        U = self.params["recurrent_kernel"]
        rp = self.buffer("rp", (T, N, G), z.dtype)  # recurrent projections h_{t-1}·U (+ b'), kept for backward
        s = self.buffer("s", (N, H), z.dtype)
        for t in range(T):
            g, p = z[t], rp[t]
            hd = self._recurrent_input(h[t], t)
            if self.reset_after:
                xp.matmul(hd, U, out=p)
                if self.use_bias:
                    p += self.params["bias"][1]
                g[:, : 2 * H] += p[:, : 2 * H]
                for k in range(2):
                    _activate(self.recurrent_activation, g[:, k * H : (k + 1) * H])
                xp.multiply(g[:, H : 2 * H], p[:, 2 * H :], out=s)  # r·(h·U_h + b'_h)
            else:
                xp.matmul(hd, U[:, : 2 * H], out=p[:, : 2 * H])
                g[:, : 2 * H] += p[:, : 2 * H]
                for k in range(2):
                    _activate(self.recurrent_activation, g[:, k * H : (k + 1) * H])
                xp.multiply(g[:, H : 2 * H], hd, out=p[:, 2 * H :])  # r·h_{t-1}, kept for backward
                xp.matmul(p[:, 2 * H :], U[:, 2 * H :], out=s)
            cand = g[:, 2 * H :]
            cand += s
            _activate(self.activation, cand)
            xp.subtract(h[t], cand, out=s)  # h_t = h̃ + z·(h_{t-1} − h̃)
            s *= g[:, :H]
            xp.add(cand, s, out=h[t + 1])
            self._hold(t, h[t + 1], h[t])
        self._rp = rp

    def _backward_steps(self, last, dy, dz, norms):
        xp = self.xp
        a, h, rp = self._z, self._h, self._rp  # a: activated z, r, h̃
        T, N, G = a.shape
        H = self.units
        zg, rg, cand = (a[..., k * H : (k + 1) * H] for k in range(3))
        ra = self.recurrent_activation
        # factors for all steps: dz_z = dh·σ'(z)(h_{t-1} − h̃); dz_h̃ = dh·(1 − z)·act'(h̃); dz_r = dz_h̃·σ'(r)·P
        # where P = h_{t-1}·U_h + b'_h (reset_after) or handled through (r·h)·U_h otherwise
        kz = _slope(ra, zg) * (h[:T] - cand)
        kh = (1.0 - zg) * _slope(self.activation, cand)
        keep = zg
        if self.reset_after:
            kr = _slope(ra, rg) * rp[..., 2 * H :]
        else:
            kr = _slope(ra, rg)
        valid = self._valid_factor(a.dtype)
        if valid is not None:
            kz *= valid
            kh *= valid
            keep = zg * valid + (1.0 - valid)
        UT = _transposed(self, "recurrent_kernel")  # (3H, H)
        drec = self.buffer("drec", (T, N, G), a.dtype)  # dL/d(recurrent projection)
        dh = self.buffer("dh", (N, H), a.dtype)
        xp.copyto(dh, last)
        spare = self.buffer("dh2", (N, H), a.dtype)
        tmp = self.buffer("tmp_b", (N, H), a.dtype)
        hd = self._recurrent_inputs()
        for t in range(T - 1, -1, -1):
            self._record(t, dh, norms)
            d, e = dz[t], drec[t]
            xp.multiply(dh, kz[t], out=d[:, :H])
            xp.multiply(dh, kh[t], out=d[:, 2 * H :])
            if self.reset_after:
                xp.multiply(d[:, 2 * H :], kr[t], out=d[:, H : 2 * H])
                e[:, : 2 * H] = d[:, : 2 * H]
                xp.multiply(d[:, 2 * H :], rg[t], out=e[:, 2 * H :])
                xp.matmul(e, UT, out=spare)
            else:
                xp.matmul(d[:, 2 * H :], UT[2 * H :], out=tmp)  # dL/d(r·h_{t-1})
                xp.multiply(tmp, hd[t], out=d[:, H : 2 * H])
                d[:, H : 2 * H] *= kr[t]
                e[:, : 2 * H] = d[:, : 2 * H]
                e[:, 2 * H :] = d[:, 2 * H :]
                xp.matmul(d[:, : 2 * H], UT[: 2 * H], out=spare)
                tmp *= rg[t]
                spare += tmp
            if self._recurrent_mask is not None:
                spare *= self._recurrent_mask
            xp.multiply(dh, keep[t], out=tmp)
            spare += tmp
            dh, spare = spare, dh
            if dy is not None and t > 0:
                dh += dy[t - 1]
        return drec

    def _recurrent_kernel_gradient(self, drec):
        """reset_after: false: the candidate block's recurrent product takes r·h_{t-1} (kept in rp), not h_{t-1}."""
        xp = self.xp
        if self.reset_after:
            return super()._recurrent_kernel_gradient(drec)
        T, N, G = drec.shape
        H = self.units
        dU = self.grads["recurrent_kernel"]
        xp.matmul(self._recurrent_inputs().reshape(T * N, H).T, drec[..., : 2 * H].reshape(T * N, 2 * H), out=dU[:, : 2 * H])
        xp.matmul(self._rp[..., 2 * H :].reshape(T * N, H).T, drec[..., 2 * H :].reshape(T * N, H), out=dU[:, 2 * H :])


@LAYERS.register("bidirectional")
class Bidirectional(Layer):
    """Runs a recurrent layer forwards and a copy of it backwards over the sequence and merges their outputs (Schuster & Paliwal 1997).

    The backward copy reads the sequence last (valid) step first; with return_sequences its outputs are put
    back in time order before merging. Arrays are named forward.* and backward.* (Keras's forward_layer and
    backward_layer).

    Options:
    layer: the recurrent layer, e.g. {type: lstm, units: 64}
    merge: how the two outputs combine: concat (2·units features), sum, mul or ave
    """

    independent_samples = True
    takes_mask = True

    def __init__(self, layer: Annotated[object, LAYERS], merge: Literal["concat", "sum", "mul", "ave"] = "concat"):
        super().__init__()
        if not isinstance(layer, Recurrent):
            raise ValueError(f"layer must be lstm, gru or rnn, got {layer.name}")
        spec = dict(layer.spec)
        self.children["forward"] = LAYERS.create(spec)
        self.children["backward"] = LAYERS.create({**spec, "go_backwards": not spec.get("go_backwards", False)})
        self.merge = merge
        self.kernel_names = ()

    @property
    def parts(self) -> tuple[Recurrent, Recurrent]:
        return self.children["forward"], self.children["backward"]

    def build(self, input_shape):
        fwd, bwd = self.parts
        for child in self.parts:
            child.input_shape = tuple(input_shape)
            child.output_shape = child.build(input_shape)
        out = fwd.output_shape
        return (*out[:-1], 2 * out[-1]) if self.merge == "concat" else out

    @property
    def needs_input_grad(self) -> bool:
        return self.children["forward"].needs_input_grad

    @needs_input_grad.setter
    def needs_input_grad(self, value: bool) -> None:
        for child in self.children.values():  # empty while Layer.__init__ runs
            child.needs_input_grad = value

    def forward(self, x, training=False, mask=None):
        xp = self.xp
        fwd, bwd = self.parts
        yf = fwd.forward(x, training, mask)
        yb = bwd.forward(x, training, mask)
        if fwd.return_sequences:
            yb = yb[:, ::-1]  # back into time order: position t is the state after reading x_t (zeros where masked)
        self._yf, self._yb = yf, yb
        y = self.buffer("y", (*yf.shape[:-1], self.output_shape[-1]), x.dtype)
        U = yf.shape[-1]
        if self.merge == "concat":
            y[..., :U] = yf
            y[..., U:] = yb
        elif self.merge == "sum":
            xp.add(yf, yb, out=y)
        elif self.merge == "mul":
            xp.multiply(yf, yb, out=y)
        else:
            xp.add(yf, yb, out=y)
            y *= 0.5
        return y

    def backward(self, grad_out):
        xp = self.xp
        fwd, bwd = self.parts
        U = self._yf.shape[-1]
        if self.merge == "concat":
            gf, gb = grad_out[..., :U], grad_out[..., U:]
        elif self.merge == "sum":
            gf = gb = grad_out
        elif self.merge == "mul":
            gf, gb = grad_out * self._yb, grad_out * self._yf
        else:
            gf = gb = grad_out * 0.5
        if fwd.return_sequences:
            gb = gb[:, ::-1]
        gf, gb = xp.ascontiguousarray(gf), xp.ascontiguousarray(gb)
        dxf = fwd.backward(gf)
        if dxf is not None:
            dxf = dxf.copy()
        dxb = bwd.backward(gb)
        if dxf is None:
            return None
        dxf += dxb
        return dxf

    def work_elements(self) -> int:
        return sum(child.work_elements() for child in self.parts)

    def describe(self):
        return f"bidirectional({self.children['forward'].describe()}, {self.merge})"


class _TimePool(Layer):
    """Shared by the poolings over time: (N, T, F) -> (N, F), ignoring masked steps."""

    independent_samples = True
    takes_mask = True

    def build(self, input_shape):
        check_sequence(self.name, input_shape)
        return (input_shape[1],)


@LAYERS.register("global_avgpool1d", "global_average_pooling1d", "globalaveragepooling1d")
class GlobalAvgPool1D(_TimePool):
    """Mean over the valid time steps of each sequence, (N, T, F) -> (N, F)."""

    def forward(self, x, training=False, mask=None):
        """x: (N, T, F) -> (N, F)."""
        xp = self.xp
        N, T, F = x.shape
        if mask is None or mask.all():
            self._weights = xp.full((N, T), 1.0 / T, x.dtype)
        else:
            counts = xp.maximum(mask.sum(axis=1, keepdims=True), 1)
            self._weights = (mask / counts).astype(x.dtype)
        y = self.buffer("y", (N, F), x.dtype)
        xp.matmul(self._weights[:, None, :], x, out=y[:, None, :])
        return y

    def backward(self, grad_out):
        """(N, F) -> (N, T, F): each valid step gets g / (its sequence's length)."""
        xp = self.xp
        if not self.needs_input_grad:
            return None
        dx = self.buffer("dx", (grad_out.shape[0], *self.input_shape), grad_out.dtype)
        xp.multiply(self._weights[:, :, None], grad_out[:, None, :], out=dx)
        return dx


@LAYERS.register("global_maxpool1d", "global_max_pooling1d", "globalmaxpooling1d")
class GlobalMaxPool1D(_TimePool):
    """Maximum over the valid time steps of each sequence, (N, T, F) -> (N, F); the gradient goes to the first maximum."""

    def forward(self, x, training=False, mask=None):
        """x: (N, T, F) -> (N, F)."""
        xp = self.xp
        if mask is not None and not mask.all():
            x = xp.where(mask[:, :, None], x, -np.inf)
        self._winner = xp.argmax(x, axis=1)  # (N, F): first maximum
        return xp.take_along_axis(x, self._winner[:, None, :], axis=1)[:, 0]

    def backward(self, grad_out):
        """(N, F) -> (N, T, F): g routed to each feature's winning step."""
        xp = self.xp
        if not self.needs_input_grad:
            return None
        dx = self.buffer("dx", (grad_out.shape[0], *self.input_shape), grad_out.dtype)
        dx[...] = 0.0
        xp.put_along_axis(dx, self._winner[:, None, :], grad_out[:, None, :], axis=1)
        return dx
