"""Export layer-stack checkpoints (`model.type: sequential`) to ONNX, for onnxruntime and other runtimes.

The graph computes what `model.forward(x, training=False)` computes, in float32:

- input `input`: (N, *input_shape) in nncli's own layout, NHWC images and (time, features) sequences;
  convolutions and poolings transpose to ONNX's NCHW and back around each op (onnxruntime's optimiser
  removes the transposes that cancel);
- output `logits`: the model's output as is; and `probabilities` = softmax(logits) when the
  checkpoint's loss is cross_entropy (which applies the softmax itself in nncli);
- sequences padded at the end with NaN steps (variable lengths) are handled in the graph as
  `split_padding` does: a step whose first feature is NaN is padding, it is zeroed, the
  recurrent ops get each sequence's length (`sequence_lens`), and the global time poolings
  average or take the maximum over the valid steps only;
- evaluation mode: dropout is the identity, batchnorm uses its running statistics, rrelu its
  mean slope (lower + upper)/2;
- a conv2d's ReLU that `layers.fusion` moved after the next max-pool is exported after the
  pool, as nncli runs it (ReLU commutes with max: the same numbers).

Recurrent layers map onto ONNX LSTM, GRU and RNN ops (time-major, transposed around them),
their gate blocks permuted from Keras's order (LSTM i, f, c, o; GRU z, r, h) to ONNX's
(LSTM i, o, f, c; GRU z, r, h), GRU `reset_after` as `linear_before_reset`. Each direction
of a bidirectional layer is its own op. go_backwards is ONNX's `reverse` direction, whose
outputs come in time order, so nncli's processing order (reversed over the whole padded
length) is one reversal of the time axis.

Only layers whose every part maps exactly are exported; `export_model` refuses the others
in one line naming each of them. The data's preprocessing (scaling, standardisation) is not
part of the graph: it is recorded in the model's metadata (`nncli.preprocessing`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._version import __version__
from .checkpoint import read_checkpoint
from .errors import CheckpointError, ConfigError, UsageError
from .files import atomic_write, unique_path
from .layers import activations as A
from .layers.conv import Conv2D
from .layers.dense import Dense
from .layers.dropout import Dropout
from .layers.geometry import output_size
from .layers.normalization import BatchNorm
from .layers.pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from .layers.recurrent import GRU, LSTM, Bidirectional, GlobalAvgPool1D, GlobalMaxPool1D, Recurrent, SimpleRNN
from .layers.reshape import Flatten, Reshape

FORMATS = ("onnx",)
OPSET = 17
INSTALL_HINT = 'export to ONNX needs the onnx package: pip install "nncli[onnx]"'


def _onnx():
    """The onnx module, imported only when an export runs (it is an optional dependency)."""
    try:
        import onnx
        import onnx.checker
        import onnx.helper
        import onnx.numpy_helper
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return onnx


# -- the graph under construction --------------------------------------------------------
class _Graph:
    """Nodes and float32 initializers with unique names."""

    def __init__(self, onnx):
        self.onnx = onnx
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, array, hint: str = "const", dtype=np.float32) -> str:
        name = self.fresh(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(np.asarray(array, dtype)), name))
        return name

    def ints(self, values, hint: str = "shape") -> str:
        return self.const(np.asarray(values, np.int64), hint, np.int64)

    def op(self, op_type: str, inputs: Sequence[str], hint: str | None = None, outputs: int = 1, name: str | None = None, **attrs):
        """Add one node; its output name (or names when outputs > 1)."""
        outs = [name] if name is not None else [self.fresh(hint or op_type.lower()) for _ in range(outputs)]
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), outs, **attrs))
        return outs[0] if outputs == 1 else outs


@dataclass
class _Mask:
    """The padding of NaN-padded sequences, computed in the graph from the input."""

    lengths: str  # (N,) int32: valid steps per sequence, the recurrent ops' sequence_lens
    valid: str  # (N, T, 1) bool: the step is real
    weights: str  # (N, T, 1) float: 1/(valid steps) at valid steps, 0 elsewhere (masked mean)
    steps: int  # T


# -- activations -------------------------------------------------------------------------
def _sigmoid_of_scaled(g: _Graph, x: str, scale: float) -> str:
    return g.op("Sigmoid", [x if scale == 1.0 else g.op("Mul", [x, g.const(scale)])])


def _act_gelu(g, act, x):
    if act.approximate:  # 0.5x(1 + tanh(√(2/π)(x + 0.044715x³)))
        cube = g.op("Mul", [g.op("Mul", [x, x]), x])
        inner = g.op("Add", [x, g.op("Mul", [cube, g.const(0.044715)])])
        t = g.op("Tanh", [g.op("Mul", [inner, g.const(math.sqrt(2.0 / math.pi))])])
    else:  # x·Φ(x) = 0.5x(1 + erf(x/√2))
        t = g.op("Erf", [g.op("Mul", [x, g.const(1.0 / math.sqrt(2.0))])])
    return g.op("Mul", [g.op("Mul", [x, g.const(0.5)]), g.op("Add", [t, g.const(1.0)])])


def _act_softplus(g, act, x):  # max(x, 0) + log(1 + e^-|x|): never overflows, as nncli's
    tail = g.op("Log", [g.op("Add", [g.op("Exp", [g.op("Neg", [g.op("Abs", [x])])]), g.const(1.0)])])
    return g.op("Add", [g.op("Relu", [x]), tail])


ACTIVATIONS = {
    A.Linear: lambda g, act, x: x,
    A.Sigmoid: lambda g, act, x: g.op("Sigmoid", [x]),
    A.Tanh: lambda g, act, x: g.op("Tanh", [x]),
    A.ReLU: lambda g, act, x: g.op("Relu", [x]),
    A.LeakyReLU: lambda g, act, x: g.op("LeakyRelu", [x], alpha=float(act.alpha)),
    A.Softmax: lambda g, act, x: g.op("Softmax", [x], axis=-1),
    A.ELU: lambda g, act, x: g.op("Elu", [x], alpha=float(act.alpha)),
    A.Softplus: _act_softplus,
    A.Swish: lambda g, act, x: g.op("Mul", [x, _sigmoid_of_scaled(g, x, float(act.beta))]),
    A.GELU: _act_gelu,
    A.PReLU: lambda g, act, x: g.op("PRelu", [x, g.const(act.params["alpha"], "prelu_alpha")]),
    # evaluation: the mean slope below zero, x itself above
    A.RReLU: lambda g, act, x: g.op("LeakyRelu", [x], alpha=float(np.float32(0.5 * (act.lower + act.upper)))),
}


def _activation(g: _Graph, act, x: str) -> str:
    return x if act is None else ACTIVATIONS[type(act)](g, act, x)


# -- layers ------------------------------------------------------------------------------
NHWC_TO_NCHW, NCHW_TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]


def _nchw(g: _Graph, op_type: str, x: str, inputs: Sequence[str] = (), **attrs) -> str:
    """An NCHW op on an NHWC tensor: transpose, op, transpose back."""
    y = g.op(op_type, [g.op("Transpose", [x], perm=NHWC_TO_NCHW), *inputs], **attrs)
    return g.op("Transpose", [y], perm=NCHW_TO_NHWC)


def _pads(layer, window) -> list[int]:
    """ONNX pads [top, left, bottom, right] of TensorFlow's valid/same geometry (layers.geometry)."""
    H, W = layer.input_shape[:2]
    _, top, bottom = output_size(H, window[0], layer.strides[0], layer.padding)
    _, left, right = output_size(W, window[1], layer.strides[1], layer.padding)
    return [top, left, bottom, right]


def _dense(g, layer, x, mask):
    y = g.op("MatMul", [x, g.const(layer.params["W"], "dense_W")])  # (N, in) or (N, T, in) times (in, units)
    if layer.use_bias:
        y = g.op("Add", [y, g.const(layer.params["b"], "dense_b")])
    return _activation(g, layer.activation, y)


def _conv2d(g, layer, x, mask):
    inputs = [g.const(layer.params["W"].transpose(3, 2, 0, 1), "conv_W")]  # (kh, kw, in, out) -> (out, in, kh, kw)
    if layer.use_bias:
        inputs.append(g.const(layer.params["b"], "conv_b"))
    y = _nchw(g, "Conv", x, inputs, kernel_shape=list(layer.kernel_size), strides=list(layer.strides), pads=_pads(layer, layer.kernel_size))
    return y if layer.activation_deferred else _activation(g, layer.activation, y)


def _maxpool2d(g, layer, x, mask):  # padded positions never win (ONNX pads MaxPool with -inf)
    y = _nchw(g, "MaxPool", x, kernel_shape=list(layer.pool_size), strides=list(layer.strides), pads=_pads(layer, layer.pool_size))
    return _activation(g, layer.post_activation, y)


def _avgpool2d(g, layer, x, mask):  # 'same': only real pixels averaged, as TensorFlow
    return _nchw(
        g, "AveragePool", x, kernel_shape=list(layer.pool_size), strides=list(layer.strides), pads=_pads(layer, layer.pool_size), count_include_pad=0
    )


def _global_avgpool2d(g, layer, x, mask):
    return g.op("ReduceMean", [x], axes=[1, 2], keepdims=0)


def _batchnorm(g, layer, x, mask):
    """Evaluation: y = x·scale + shift per channel (the last axis), scale and shift computed as nncli does."""
    dtype = np.float32
    inv_std = np.reciprocal(np.sqrt(np.add(layer.state["running_var"].astype(dtype), dtype(layer.epsilon))))
    scale = (layer.params["gamma"].astype(dtype) * inv_std).astype(dtype)
    shift = (layer.params["beta"].astype(dtype) - layer.state["running_mean"].astype(dtype) * scale).astype(dtype)
    return g.op("Add", [g.op("Mul", [x, g.const(scale, "bn_scale")]), g.const(shift, "bn_shift")])


def _identity(g, layer, x, mask):
    return x


def _reshape(g, layer, x, mask):  # C order in nncli's own layout (flatten: NHWC order)
    return g.op("Reshape", [x, g.ints([-1, *layer.output_shape])])


def _activation_layer(g, layer, x, mask):
    return _activation(g, layer, x)


# recurrent: Keras gate blocks in ONNX's order, and the ONNX names of the cell activations
GATE_ORDER = {LSTM: (0, 3, 1, 2), GRU: (0, 1, 2), SimpleRNN: (0,)}  # LSTM i,f,c,o -> i,o,f,c; GRU z,r,h as is
OP_TYPE = {LSTM: "LSTM", GRU: "GRU", SimpleRNN: "RNN"}
CELL_ACTIVATIONS = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu", "linear": "Affine"}


def _blocks(array: np.ndarray, order: Sequence[int], H: int) -> np.ndarray:
    return np.concatenate([array[..., k * H : (k + 1) * H] for k in order], axis=-1)


def _reverse_time(g: _Graph, x: str, axis: int) -> str:
    return g.op("Slice", [x, g.ints([-1]), g.ints([-(2**63)]), g.ints([axis]), g.ints([-1])])


def _recurrent_op(g: _Graph, layer: Recurrent, x_tm: str, mask: _Mask | None) -> tuple[str, str]:
    """One direction: (Y (T, N, H) in time order, zeros past each sequence's length; Y_h (N, H), the last state).

    go_backwards is ONNX's reverse direction: it starts at each sequence's own last valid step, as nncli."""
    kind = type(layer)
    H, order = layer.units, GATE_ORDER[kind]
    W = _blocks(layer.params["kernel"], order, H).T[None]  # (1, G·H, D)
    R = _blocks(layer.params["recurrent_kernel"], order, H).T[None]  # (1, G·H, H)
    G = W.shape[1]
    if not layer.use_bias:
        Wb, Rb = np.zeros(G), np.zeros(G)
    elif kind is GRU and layer.reset_after:  # input and recurrent biases
        Wb, Rb = _blocks(layer.params["bias"][0], order, H), _blocks(layer.params["bias"][1], order, H)
    else:
        Wb, Rb = _blocks(layer.params["bias"], order, H), np.zeros(G)
    inputs = [x_tm, g.const(W, "rnn_W"), g.const(R, "rnn_R"), g.const(np.concatenate([Wb, Rb])[None], "rnn_B")]
    inputs.append(mask.lengths if mask is not None else "")
    if kind is LSTM:  # f for the gates, g for the candidate, h for the output activation(c)
        cells = [layer.recurrent_activation, layer.activation, layer.activation]
    elif kind is GRU:
        cells = [layer.recurrent_activation, layer.activation]
    else:
        cells = [layer.activation]
    attrs = {"activations": [CELL_ACTIVATIONS[c] for c in cells], "hidden_size": H}
    if "linear" in cells:  # Affine(alpha=1, beta=0): its scale and shift, one value each per Affine, in order
        attrs["activation_alpha"] = [1.0] * cells.count("linear")
        attrs["activation_beta"] = [0.0] * cells.count("linear")
    if layer.go_backwards:
        attrs["direction"] = "reverse"
    if kind is GRU:
        attrs["linear_before_reset"] = int(bool(layer.reset_after))
    y, y_h = g.op(OP_TYPE[kind], inputs, hint=OP_TYPE[kind].lower(), outputs=2, **attrs)
    axes = g.ints([1])
    return g.op("Squeeze", [y, axes]), g.op("Squeeze", [y_h, g.ints([0])])


def _recurrent_output(g: _Graph, layer: Recurrent, x_tm: str, mask: _Mask | None, flip: bool = False) -> str:
    """The layer's nncli output: (N, H), or (N, T, H) in processing order (reversed when go_backwards), reversed
    once more when `flip` (the backward half of a bidirectional layer, put back in time order)."""
    y, y_h = _recurrent_op(g, layer, x_tm, mask)
    if not layer.return_sequences:
        return y_h
    y = g.op("Transpose", [y], perm=[1, 0, 2])
    return _reverse_time(g, y, 1) if layer.go_backwards != flip else y


def _time_major(g: _Graph, x: str) -> str:
    return g.op("Transpose", [x], perm=[1, 0, 2])


def _recurrent(g, layer, x, mask):
    return _recurrent_output(g, layer, _time_major(g, x), mask)


def _bidirectional(g, layer, x, mask):
    fwd, bwd = layer.parts
    x_tm = _time_major(g, x)
    yf = _recurrent_output(g, fwd, x_tm, mask)
    yb = _recurrent_output(g, bwd, x_tm, mask, flip=True)
    if layer.merge == "concat":
        return g.op("Concat", [yf, yb], axis=-1)
    if layer.merge == "sum":
        return g.op("Add", [yf, yb])
    if layer.merge == "mul":
        return g.op("Mul", [yf, yb])
    return g.op("Mul", [g.op("Add", [yf, yb]), g.const(0.5)])


def _global_avgpool1d(g, layer, x, mask):
    if mask is None:
        return g.op("ReduceMean", [x], axes=[1], keepdims=0)
    return g.op("ReduceSum", [g.op("Mul", [x, mask.weights]), g.ints([1])], keepdims=0)


def _global_maxpool1d(g, layer, x, mask):
    if mask is not None:
        x = g.op("Where", [mask.valid, x, g.const(-np.inf)])
    return g.op("ReduceMax", [x], axes=[1], keepdims=0)


LAYER_OPS = {
    Dense: _dense,
    Conv2D: _conv2d,
    MaxPool2D: _maxpool2d,
    AvgPool2D: _avgpool2d,
    GlobalAvgPool2D: _global_avgpool2d,
    BatchNorm: _batchnorm,
    Dropout: _identity,
    Flatten: _reshape,
    Reshape: _reshape,
    LSTM: _recurrent,
    GRU: _recurrent,
    SimpleRNN: _recurrent,
    Bidirectional: _bidirectional,
    GlobalAvgPool1D: _global_avgpool1d,
    GlobalMaxPool1D: _global_maxpool1d,
    **{cls: _activation_layer for cls in ACTIVATIONS},
}


def _exportable(layer) -> bool:
    """Is every part of this layer one the exporter maps exactly (exact classes: a subclass may compute otherwise)?"""
    if type(layer) not in LAYER_OPS:
        return False
    if isinstance(layer, (Dense, Conv2D)) and layer.activation is not None and type(layer.activation) not in ACTIVATIONS:
        return False
    if isinstance(layer, MaxPool2D) and layer.post_activation is not None and type(layer.post_activation) not in ACTIVATIONS:
        return False
    if isinstance(layer, Bidirectional) and any(type(part) not in GATE_ORDER for part in layer.parts):
        return False
    if isinstance(layer, Recurrent):
        cells = [layer.activation] + ([layer.recurrent_activation] if not isinstance(layer, SimpleRNN) else [])
        return all(c in CELL_ACTIVATIONS for c in cells)
    return True


def exportable_layers() -> list[str]:
    """The registered names of the layers `export_model` maps (for messages and the README)."""
    return sorted({cls.registered_name for cls in LAYER_OPS})


def refuse_unexportable(layers: Sequence, where: str = "") -> None:
    """One ConfigError naming every layer that cannot be exported (`model.layers.3 foo`), if any: a layer with no
    mapping, or a recurrent layer reading a go_backwards layer's sequences (reading order: the padding comes
    first, and ONNX's recurrent ops take `sequence_lens` for padding at the end)."""
    bad = [f"model.layers.{i} {layer.describe()}" for i, layer in enumerate(layers) if not _exportable(layer)]
    reversed_steps = False  # the sequences in hand are a go_backwards layer's, in reading order
    for i, layer in enumerate(layers):
        if reversed_steps and isinstance(layer, (Recurrent, Bidirectional)):
            bad.append(f"model.layers.{i} {layer.describe()} (reads the reversed sequences of a go_backwards layer)")
        if len(layer.output_shape) != 2:
            reversed_steps = False
        elif isinstance(layer, Recurrent) and layer.go_backwards:
            reversed_steps = True
    if bad:
        prefix = f"{where}: " if where else ""
        raise ConfigError(
            f"{prefix}cannot export to ONNX: {', '.join(bad)} (export covers {', '.join(exportable_layers())})"
        )


def _padding_mask(g: _Graph, x: str, steps: int) -> tuple[str, _Mask]:
    """split_padding in the graph: steps whose first feature is NaN are zeroed; their count and masks."""
    first = g.op("Slice", [x, g.ints([0]), g.ints([1]), g.ints([2])])  # (N, T, 1)
    padded = g.op("IsNaN", [first])
    valid = g.op("Not", [padded])
    x = g.op("Where", [padded, g.const(0.0), x], hint="unpadded")
    ones = g.op("Cast", [valid], to=1)  # float
    count = g.op("ReduceSum", [ones, g.ints([1])], keepdims=1)  # (N, 1, 1)
    weights = g.op("Div", [ones, g.op("Max", [count, g.const(1.0)])])
    lengths = g.op("Cast", [g.op("Reshape", [count, g.ints([-1])])], to=6)  # int32 (N,)
    return x, _Mask(lengths, valid, weights, steps)


def export_model(model, input_shape: Sequence[int], probabilities: bool, metadata: dict | None = None, target_scale=None):
    """An onnx.ModelProto computing `model.forward(x, training=False)` (a Sequential) for x of shape (N, *input_shape).

    A regression trained on standardised targets gives `target_scale` = (mean, std): the output `prediction` is
    then logits·std + mean, in the target's own units (what `nncli predict` writes).

    Outputs `logits` (the forward output) and, when `probabilities`, softmax(logits). Refuses (ConfigError,
    one line) a model with any layer it cannot map exactly, naming each. `metadata` goes to metadata_props.
    """
    onnx = _onnx()
    refuse_unexportable(model.layers)
    helper = onnx.helper
    g = _Graph(onnx)
    input_shape = tuple(int(d) for d in input_shape)
    x, mask = "input", None
    if len(input_shape) == 2:  # sequences: NaN-padded steps are masked, as Sequential.layer_outputs
        x, mask = _padding_mask(g, x, input_shape[0])
    for layer in model.layers:
        x = LAYER_OPS[type(layer)](g, layer, x, mask)
        if mask is not None and (len(layer.output_shape) != 2 or layer.output_shape[0] != mask.steps):
            mask = None  # the time axis is gone
        elif mask is not None and isinstance(layer, Recurrent) and layer.go_backwards:  # outputs in reading order
            mask = _Mask(mask.lengths, _reverse_time(g, mask.valid, 1), _reverse_time(g, mask.weights, 1), mask.steps)
    out_shape = ["N", *model.output_shape]
    g.op("Identity", [x], name="logits")
    outputs = [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, out_shape)]
    if probabilities:
        g.op("Softmax", ["logits"], name="probabilities", axis=-1)
        outputs.append(helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT, out_shape))
    if target_scale is not None:
        mean, std = (np.asarray(v, np.float32) for v in target_scale)
        g.op("Add", [g.op("Mul", ["logits", g.const(std)]), g.const(mean)], name="prediction")
        outputs.append(helper.make_tensor_value_info("prediction", onnx.TensorProto.FLOAT, out_shape))
    inputs = [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["N", *input_shape])]
    graph = helper.make_graph(g.nodes, "nncli", inputs, outputs, g.initializers)
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="nncli", producer_version=__version__
    )
    proto.ir_version = min(proto.ir_version, 8)  # opset 17's IR version: readable by older runtimes too
    proto.doc_string = "nncli model; input in nncli's layout (NHWC images, NaN-padded (time, features) sequences)"
    helper.set_model_props(proto, {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(checkpoint: str | Path, out: str | Path | None = None) -> Path:
    """Write a checkpoint's model as ONNX to `out` (default: the checkpoint path with .onnx; a folder: the checkpoint's
    name in it); never overwrites: a taken name becomes name-2.onnx, -3, .... Everything is checked before anything
    is written. Returns the path."""
    _onnx()
    path = Path(checkpoint)
    ckpt = read_checkpoint(path)
    experiment = ckpt.experiment()
    kind = experiment.model.spec["type"]
    if kind != "sequential":
        raise CheckpointError(f"{path}: a {kind} model; export covers layer-stack models (model.type: sequential) only")
    model = ckpt.build_model(experiment)
    refuse_unexportable(model.layers, str(path))
    loss = experiment.loss
    preprocessing = ckpt.meta.get("preprocessing", {})
    proto = export_model(
        model,
        ckpt.meta["input_shape"],
        probabilities=loss is not None and loss.registered_name == "cross_entropy",
        target_scale=(preprocessing["target_mean"], preprocessing["target_std"]) if "target_mean" in preprocessing else None,
        metadata={
            "nncli.checkpoint": path.name,
            "nncli.input_shape": list(ckpt.meta["input_shape"]),
            "nncli.preprocessing": ckpt.meta.get("preprocessing", {}),
        },
    )
    data = proto.SerializeToString()
    wanted = path.with_suffix(".onnx") if out is None else Path(out)
    if wanted.is_dir():  # --out FOLDER: the checkpoint's name in it
        wanted = wanted / path.with_suffix(".onnx").name
    target = unique_path(wanted)  # reserved (empty) until written
    try:
        atomic_write(target, lambda f: f.write(data))
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target
