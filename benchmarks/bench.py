"""Time nncli against PyTorch on the same network: training epochs, inference, and where nncli's time goes.

    python benchmarks/bench.py                                  # the CNN, MLP and LSTM configs that exist
    python benchmarks/bench.py configs/mnist_cnn.yaml --steps 200 --rounds 7
    python benchmarks/bench.py configs/mnist_cnn.yaml --profile --no-torch
    python benchmarks/bench.py configs/mnist_cnn.yaml --device gpu --batch-size 256   # CuPy against PyTorch CUDA

For each config the network is built once in nncli and once in PyTorch (from
the nncli layer list: conv2d, pooling, flatten, reshape, dense, activations;
lstm, gru, rnn and bidirectional(concat) as batch-first torch.nn.LSTM, GRU and
RNN; dense on every step of a sequence; poolings over time), with the same
batch size, float32, optimizer and thread count; recurrent dropout,
go_backwards alone and GRU reset_after: false have no torch counterpart, and
such configs are timed in nncli only. Training is timed in rounds that
alternate the two frameworks, so that load from other processes hits both
alike; each round is one epoch, or `--steps` steps scaled up to an epoch. The
medians over rounds and the ratio nncli/PyTorch are printed. Inference is timed
the same way (images/s over the test set at the config's eval_batch_size).
`--profile` times each nncli layer's forward and backward pass over some
training steps.

The nncli step below mirrors Trainer._update: gather the batch by index into a
reused buffer, the Objective (objective.py), the optimizer step, and one host
copy of the loss and the finiteness checks. The PyTorch step is the usual loop
with loss.item() and the accuracy count, which nncli computes too. PyTorch is
optional and never a test dependency (the test that compares with it skips
without it).

`--device gpu` runs nncli on CuPy (training.device: gpu, the data uploaded
once) and PyTorch on CUDA, both with TF32 off (float32 math in both); every
step ends in a host copy in both, so wall times are synchronised.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from threadpoolctl import threadpool_limits  # noqa: E402

from nncli.backend import fetch, to_host  # noqa: E402
from nncli.experiment import load_experiment  # noqa: E402
from nncli import parallel  # noqa: E402
from nncli.objective import Objective  # noqa: E402

torch = None  # imported by main() unless --no-torch; PyTorch is optional


def import_torch() -> bool:
    global torch
    try:
        import torch as module
    except ImportError:
        return False
    torch = module
    return True

DEFAULT_CONFIGS = [
    "configs/mnist_cnn.yaml", "configs/mnist_mlp.yaml", "configs/mnist_relu_mlp.yaml", "configs/mnist_rows_lstm.yaml",
]


# -- nncli ---------------------------------------------------------------------------------
class NncliRun:
    """An nncli model, objective, optimizer and data, stepping like Trainer.step."""

    def __init__(self, experiment, dataset, seed=0):
        self.experiment, self.data = experiment, dataset
        self.model = experiment.build_model(dataset.input_shape, dataset.num_classes)
        self.model.initialize(np.random.default_rng(experiment.seeds("init")))
        self.loss = experiment.loss
        self.objective = Objective(self.model, self.loss)
        self.optimizer = experiment.make_optimizer()
        self.batch_size = min(experiment.training.batch_size, len(dataset.train))
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(dataset.train))
        self.position = 0
        self.buffers: dict[int, np.ndarray] = {}
        self.backend = self.model.backend
        self.x = self.backend.to_device(dataset.train.x)  # uploaded once, as the Trainer does
        self.y = self.backend.to_device(dataset.train.y)
        self.order_device = self.backend.to_device(self.order)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.data.train) / self.batch_size)

    def steps(self, n: int) -> float:
        """Run n training steps (wrapping around epochs); return the wall time in seconds."""
        model, opt, x_all, y_all, xp = self.model, self.optimizer, self.x, self.y, self.backend.xp
        lr = float(opt.learning_rate)
        started = time.perf_counter()
        for _ in range(n):
            if self.position >= len(self.order):
                self.order, self.position = self.rng.permutation(len(self.order)), 0
                self.order_device = self.backend.to_device(self.order)
            idx = self.order_device[self.position : self.position + self.batch_size]
            self.position += self.batch_size
            buf = self.buffers.get(len(idx))
            if buf is None:
                buf = self.buffers[len(idx)] = xp.empty((len(idx), *x_all.shape[1:]), model.dtype)
            xp.take(x_all, idx, axis=0, out=buf)
            value, correct = self.objective(buf, y_all[idx])
            finite = xp.isfinite(model.grad).all()
            opt.step(model.theta, model.grad, lr)
            value, finite, _, _ = fetch(value, finite, xp.isfinite(model.theta).all(), correct)
            if not (math.isfinite(value) and finite):
                raise RuntimeError("nncli diverged")
        return time.perf_counter() - started

    def epoch(self) -> float:
        self.position = len(self.order)  # start a fresh shuffled epoch
        return self.steps(self.steps_per_epoch)

    def infer(self, x: np.ndarray, batch: int) -> float:
        """Evaluation-mode predictions, batches split across threads where `nncli eval` splits them."""
        forward = parallel.evaluation_forward(self.model)
        started = time.perf_counter()
        for start in range(0, len(x), batch):
            predicted = self.loss.predictions(forward(x[start : start + batch]))
        to_host(predicted)  # on a GPU: wait for the last batch
        return time.perf_counter() - started


# -- PyTorch -------------------------------------------------------------------------------
class Unsupported(Exception):
    pass


def torch_activation(spec):
    if spec is None:
        return None
    name, options = (spec, {}) if isinstance(spec, str) else (spec["type"], spec)
    table = {
        "relu": lambda: torch.nn.ReLU(),
        "sigmoid": lambda: torch.nn.Sigmoid(),
        "tanh": lambda: torch.nn.Tanh(),
        "leaky_relu": lambda: torch.nn.LeakyReLU(options.get("alpha", 0.01)),
        "softmax": lambda: torch.nn.Softmax(dim=-1),
        "linear": lambda: torch.nn.Identity(),
    }
    if name not in table:
        raise Unsupported(f"activation {name}")
    return table[name]()


def tf_pads(layer) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) padding of an nncli conv/pool layer, for torch.nn.functional.pad order."""
    H, W = layer.input_shape[:2]
    ph, pw = layer._padded
    return layer._left, pw - W - layer._left, layer._top, ph - H - layer._top


RECURRENT = ("lstm", "gru", "rnn", "bidirectional")


def recurrent_cell(layer):
    """The lstm, gru or rnn layer itself, or a bidirectional layer's forward copy (its options are the backward copy's)."""
    return layer.parts[0] if layer.name == "bidirectional" else layer


def torch_recurrent(layer):
    """torch.nn.LSTM, GRU or RNN (batch-first, float32) for an nncli lstm, gru, rnn or bidirectional(concat) layer."""
    nn, cell = torch.nn, recurrent_cell(layer)
    if layer.name == "bidirectional" and layer.merge != "concat":
        raise Unsupported(f"bidirectional merge {layer.merge}")
    if cell.go_backwards:
        raise Unsupported(f"{cell.name} go_backwards")
    if cell.dropout or cell.recurrent_dropout:
        raise Unsupported(f"{cell.name} dropout")  # torch's dropout option drops between stacked layers, not this
    gated = cell.name in ("lstm", "gru")
    if gated and (cell.activation, cell.recurrent_activation) != ("tanh", "sigmoid"):
        raise Unsupported(f"{cell.name} activation {cell.activation}/{cell.recurrent_activation}")
    if cell.name == "gru" and not cell.reset_after:
        raise Unsupported("gru reset_after false")  # torch's GRU is the reset_after form
    if cell.name == "rnn" and cell.activation not in ("tanh", "relu"):
        raise Unsupported(f"rnn activation {cell.activation}")
    kind = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell.name]
    options = {} if gated else {"nonlinearity": cell.activation}
    return kind(layer.input_shape[1], cell.units, bias=cell.use_bias, batch_first=True,
                bidirectional=layer.name == "bidirectional", **options)


def torch_model(model, nhwc_flatten=False):
    """A torch.nn.Sequential computing the same function as the nncli model (NCHW images inside)."""
    nn, mods = torch.nn, []

    class NhwcFlatten(nn.Module):
        """Flatten in NHWC order, so weights copied from nncli line up (only used by --check)."""

        def forward(self, x):
            return torch.flatten(x.permute(0, 2, 3, 1), 1)

    class Reshape(nn.Module):
        """nncli's reshape (C order over NHWC images): NCHW images come in and go out as NCHW."""

        def __init__(self, shape, image_in):
            super().__init__()
            self.shape, self.image_in = shape, image_in

        def forward(self, x):
            if self.image_in:
                x = x.permute(0, 2, 3, 1)
            x = x.reshape(x.shape[0], *self.shape)
            return x.permute(0, 3, 1, 2) if len(self.shape) == 3 else x

    class Recurrent(nn.Module):
        """A torch recurrent module returns (outputs, state): keep what the nncli layer returns, every step's
        output with return_sequences, else the final state (for bidirectional, the backward direction's
        final state is its output at step 0)."""

        def __init__(self, rnn, return_sequences):
            super().__init__()
            self.rnn, self.return_sequences = rnn, return_sequences

        def forward(self, x):
            out = self.rnn(x)[0]  # (N, T, directions·units)
            if self.return_sequences:
                return out
            if not self.rnn.bidirectional:
                return out[:, -1]
            H = self.rnn.hidden_size
            return torch.cat([out[:, -1, :H], out[:, 0, H:]], 1)

    class TimePool(nn.Module):
        """global_avgpool1d / global_maxpool1d: mean or max over the time axis (no masks in benchmark data). The max
        is torch.max's, whose gradient goes to the first maximum as nncli's does (amax would split it among ties,
        and MNIST's blank rows give exact ties)."""

        def __init__(self, kind):
            super().__init__()
            self.kind = kind

        def forward(self, x):
            return x.mean(1) if self.kind == "global_avgpool1d" else x.max(1).values

    for layer in model.layers:
        name, spec = layer.name, layer.spec
        if name == "conv2d":
            pads = tf_pads(layer)
            if any(pads):
                mods.append(nn.ZeroPad2d(pads))
            mods.append(nn.Conv2d(layer.input_shape[2], layer.filters, layer.kernel_size, layer.strides, bias=layer.use_bias))
            act = torch_activation(spec["activation"])
        elif name in ("maxpool2d", "avgpool2d"):
            pads = tf_pads(layer)
            if any(pads):
                mods.append(nn.ConstantPad2d(pads, -math.inf if name == "maxpool2d" else 0.0))
            pool = nn.MaxPool2d if name == "maxpool2d" else nn.AvgPool2d
            mods.append(pool(layer.pool_size, layer.strides))
            act = None
        elif name == "global_avgpool2d":
            mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            act = None
        elif name in ("global_avgpool1d", "global_maxpool1d"):
            mods.append(TimePool(name))
            act = None
        elif name == "flatten":
            mods.append(NhwcFlatten() if nhwc_flatten and len(layer.input_shape) == 3 else nn.Flatten())
            act = None
        elif name == "reshape":
            mods.append(Reshape(layer.output_shape, len(layer.input_shape) == 3))
            act = None
        elif name == "dense":  # on a sequence (T, F) too: nn.Linear maps the last axis
            mods.append(nn.Linear(layer.input_shape[-1], layer.units, bias=layer.use_bias))
            act = torch_activation(spec["activation"])
        elif name in RECURRENT:
            mods.append(Recurrent(torch_recurrent(layer), recurrent_cell(layer).return_sequences))
            act = None
        else:
            act = torch_activation(spec)
        if act is not None:
            mods.append(act)
    return nn.Sequential(*mods)


def describe_torch(net) -> str:
    """The torch modules in order, recurrent ones with their sizes: Reshape → LSTM(28, 128, batch_first=True) → Linear."""
    names = []
    for mod in net:
        rnns = [m for m in mod.modules() if isinstance(m, torch.nn.RNNBase)]
        names.append(repr(rnns[0]) if rnns else type(mod).__name__)
    return " → ".join(names)


def torch_optimizer(spec, params):
    kind, lr = spec["type"], spec.get("learning_rate")
    if kind == "adam":
        return torch.optim.Adam(params, lr, betas=(spec["beta_1"], spec["beta_2"]), eps=spec["epsilon"])
    if kind == "adamw":
        return torch.optim.AdamW(params, lr, betas=(spec["beta_1"], spec["beta_2"]), eps=spec["epsilon"], weight_decay=spec["weight_decay"])
    if kind == "sgd":
        return torch.optim.SGD(params, lr)
    if kind in ("momentum", "nesterov"):
        return torch.optim.SGD(params, lr, momentum=spec["momentum"], nesterov=kind == "nesterov")
    raise Unsupported(f"optimizer {kind}")


def torch_loss(name):
    if name == "cross_entropy":
        return torch.nn.CrossEntropyLoss()
    raise Unsupported(f"loss {name}")


def recurrent_arrays(cell, rnn, suffix):
    """(cell, array name, torch parameter, to_torch) for one direction of a torch recurrent module: kernel ->
    weight_ih and recurrent_kernel -> weight_hh transposed, bias -> bias_ih; the GRU's gate blocks z, r, h become
    torch's r, z, n and its recurrent bias (row 1) is bias_hh. LSTM and RNN have one bias: bias_hh stays 0."""
    H = cell.units
    order = (1, 0, 2) if cell.name == "gru" else range(cell.gates)
    blocks = lambda a: np.concatenate([a[..., k * H : (k + 1) * H] for k in order], -1)  # noqa: E731
    param = lambda name: getattr(rnn, f"{name}_l0{suffix}")  # noqa: E731
    yield cell, "kernel", param("weight_ih"), lambda a: blocks(a).T
    yield cell, "recurrent_kernel", param("weight_hh"), lambda a: blocks(a).T
    if cell.use_bias and cell.name == "gru":
        yield cell, "bias", param("bias_ih"), lambda a: blocks(a[0])
        yield cell, "bias", param("bias_hh"), lambda a: blocks(a[1])
    elif cell.use_bias:
        yield cell, "bias", param("bias_ih"), blocks


def torch_arrays(model, net):
    """(nncli layer, array name, torch parameter, to_torch) for every nncli array. to_torch maps nncli's layout
    to torch's: conv W (kh, kw, in, out) -> (out, in, kh, kw), dense W (in, out) -> (out, in), recurrent arrays as
    in recurrent_arrays. It is linear, so it maps the gradients the same way."""
    nn = torch.nn
    targets = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.RNNBase))]
    sources = [layer for layer in model.layers if layer.name in ("conv2d", "dense", *RECURRENT)]
    for layer, mod in zip(sources, targets):
        if isinstance(mod, nn.RNNBase):
            cells = layer.parts if layer.name == "bidirectional" else (layer,)
            for cell, suffix in zip(cells, ("", "_reverse")):
                yield from recurrent_arrays(cell, mod, suffix)
            continue
        yield layer, "W", mod.weight, lambda a: a.transpose(3, 2, 0, 1) if a.ndim == 4 else a.T
        if layer.use_bias:
            yield layer, "b", mod.bias, lambda a: a


def copy_weights(model, net):
    """nncli θ -> torch parameters (those with no nncli array are zeros); returns torch_arrays' list."""
    arrays = list(torch_arrays(model, net))
    with torch.no_grad():
        for param in net.parameters():
            param.zero_()
        for layer, name, param, to_torch in arrays:
            param.copy_(torch.from_numpy(np.ascontiguousarray(to_torch(layer.params[name]))))
    return arrays


class TorchRun:
    def __init__(self, nn_run: NncliRun, seed=0):
        exp = nn_run.experiment
        self.device = torch.device("cpu" if nn_run.backend.on_host else "cuda")
        self.net = torch_model(nn_run.model).to(self.device)
        self.loss = torch_loss(exp.loss.spec["type"])
        self.optimizer = torch_optimizer(exp.optimizer_spec, self.net.parameters())
        self.batch_size = nn_run.batch_size
        self.steps_per_epoch = nn_run.steps_per_epoch
        self.x = self._nchw(nn_run.data.train.x).to(self.device)
        self.y = torch.from_numpy(nn_run.data.train.y.astype(np.int64)).to(self.device)
        self.rng = np.random.default_rng(seed)
        self.order, self.position = self._order(), 0

    def _order(self):
        return torch.from_numpy(self.rng.permutation(len(self.y))).to(self.device)

    @staticmethod
    def _nchw(x):
        t = torch.from_numpy(np.ascontiguousarray(x))
        return t.permute(0, 3, 1, 2).contiguous() if t.ndim == 4 else t

    def steps(self, n: int) -> float:
        net, loss_fn, opt, bs = self.net, self.loss, self.optimizer, self.batch_size
        net.train()
        started = time.perf_counter()
        for _ in range(n):
            if self.position >= len(self.order):
                self.order, self.position = self._order(), 0
            idx = self.order[self.position : self.position + bs]
            self.position += bs
            xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)
            out = net(xb)
            loss = loss_fn(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value, _ = loss.item(), int((out.argmax(1) == yb).sum())
            if not math.isfinite(value):
                raise RuntimeError("pytorch diverged")
        return time.perf_counter() - started

    def epoch(self) -> float:
        self.position = len(self.order)
        return self.steps(self.steps_per_epoch)

    def infer(self, x, batch: int) -> float:
        self.net.eval()
        started = time.perf_counter()
        with torch.inference_mode():
            for start in range(0, len(x), batch):
                predicted = self.net(x[start : start + batch]).argmax(1)
            predicted.cpu()  # on a GPU: wait for the last batch
        return time.perf_counter() - started


def check_against_torch(nn_run: NncliRun) -> tuple[float, float, float]:
    """(nncli loss, PyTorch loss, worst relative gradient difference over all arrays) on one training batch,
    same weights in both."""
    model = nn_run.model
    net = torch_model(model, nhwc_flatten=True)
    arrays = copy_weights(model, net)
    x, y = nn_run.data.train.x[: nn_run.batch_size], nn_run.data.train.y[: nn_run.batch_size]
    value, _ = nn_run.objective(np.ascontiguousarray(x, model.dtype), y)
    out = net(TorchRun._nchw(x))
    loss = torch_loss(nn_run.experiment.loss.spec["type"])(out, torch.from_numpy(y.astype(np.int64)))
    loss.backward()
    worst = 0.0
    for layer, name, param, to_torch in arrays:
        g, tg = to_torch(layer.grads[name]), param.grad.numpy()
        worst = max(worst, float(np.max(np.abs(g - tg)) / max(1e-12, np.max(np.abs(tg)))))
    return value, loss.item(), worst


# -- profile -------------------------------------------------------------------------------
def profile(nn_run: NncliRun, steps: int) -> None:
    """Per-layer forward/backward wall time over `steps` training steps (the calling thread's half when split)."""
    model = nn_run.model
    times: dict[str, float] = defaultdict(float)
    saved = []

    def timed(obj, attr, key):
        original = getattr(obj, attr)

        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            result = original(*args, **kwargs)
            times[key] += time.perf_counter() - t
            return result

        saved.append((obj, attr))
        setattr(obj, attr, wrapper)

    for i, layer in enumerate(model.layers):
        timed(layer, "forward", (i, "forward"))
        timed(layer, "backward", (i, "backward"))
    timed(nn_run.loss, "forward", ("loss", "forward"))
    timed(nn_run.loss, "backward", ("loss", "backward"))
    timed(nn_run.optimizer, "step", ("optimizer", "step"))
    nn_run.steps(5)
    times.clear()
    total = nn_run.steps(steps)
    for obj, attr in saved:
        delattr(obj, attr)  # back to the class's method
    split = nn_run.objective.splits(nn_run.batch_size)
    ms = lambda s: 1e3 * s / steps  # noqa: E731
    print(f"  profile over {steps} steps: {ms(total):.2f} ms/step" + (
        f" (batch split in two threads: per-layer times are the main thread's half of {nn_run.batch_size - nn_run.batch_size // 2} samples, "
        "the other half runs alongside)" if split else ""))
    print(f"    {'layer':34s} {'forward':>9s} {'backward':>9s} {'share':>6s}")
    accounted = 0.0
    for i, layer in enumerate(model.layers):
        f, b = times[(i, "forward")], times[(i, "backward")]
        accounted += f + b
        print(f"    {f'{i} {layer.describe()}':34s} {ms(f):8.3f}m {ms(b):8.3f}m {100 * (f + b) / total:5.1f}%")
    for key in ("loss", "optimizer"):
        f = sum(v for (k, _), v in times.items() if k == key)
        accounted += f
        print(f"    {key:34s} {ms(f):8.3f}m {'':9s} {100 * f / total:5.1f}%")
    rest = total - accounted
    print(f"    {'other (gather, split/combine, checks)':34s} {ms(rest):8.3f}m {'':9s} {100 * rest / total:5.1f}%")
    print("    (m = milliseconds per step)")


# -- driver --------------------------------------------------------------------------------
def median(values):
    return statistics.median(values)


def report(kind: str, values: dict[str, list[float]], unit: str, fmt: str, note: str) -> None:
    """One summary line: nncli's median, and PyTorch's with the ratio when it ran."""
    a = median(values["nncli"])
    text = f"  {kind}: nncli {a:{fmt}} {unit}"
    if "pytorch" in values:
        b = median(values["pytorch"])
        text += f"  pytorch {b:{fmt}} {unit}  ratio nncli/pytorch {a / b:.2f}"
    print(f"{text}  ({note})", flush=True)


def bench_config(path: str, args) -> None:
    overrides = list(args.set or []) + [f"training.device={args.device}"]
    if args.batch_size:
        overrides.append(f"training.batch_size={args.batch_size}")
    if args.data_path:
        overrides.append(f"data.path={args.data_path}")
    experiment = load_experiment(path, overrides)
    dataset = experiment.data.load(experiment.seeds("data"))
    nn_run = NncliRun(experiment, dataset)
    model = nn_run.model
    print(
        f"{path}: {model.num_params:,} params, batch {nn_run.batch_size}, {nn_run.steps_per_epoch} steps/epoch "
        f"({len(dataset.train):,} samples), {args.threads} threads, {model.dtype}, {experiment.optimizer_spec['type']}, "
        f"on {model.backend.description}",
        flush=True,
    )
    t_run = None
    if torch is not None and not args.no_torch:
        try:
            t_run = TorchRun(nn_run)
        except Unsupported as exc:
            print(f"  pytorch: skipped ({exc} has no mapping here)")
    if t_run is not None:
        print(f"  pytorch: {describe_torch(t_run.net)}")
    if args.check and t_run is not None:
        ours, theirs, worst = check_against_torch(nn_run)
        print(f"  check: loss nncli {ours:.6f} pytorch {theirs:.6f}; worst relative gradient difference {worst:.1e}")

    # warm up: work buffers, caches, lazy initialisation
    nn_run.steps(5)
    if t_run is not None:
        t_run.steps(5)
    runs = [("nncli", nn_run)] + ([("pytorch", t_run)] if t_run is not None else [])
    per_epoch = {name: [] for name, _ in runs}
    for r in range(args.rounds):
        line = []
        for name, run in runs if r % 2 == 0 else runs[::-1]:  # alternate who goes first
            seconds = run.steps(args.steps) * run.steps_per_epoch / args.steps if args.steps else run.epoch()
            per_epoch[name].append(seconds)
            line.append(f"{name} {seconds:.2f}")
        print(f"  round {r + 1}: s/epoch  " + "  ".join(sorted(line)), flush=True)
    what = f"{args.steps} steps × {args.rounds} rounds, scaled to an epoch" if args.steps else f"{args.rounds} epochs"
    report("train", per_epoch, "s/epoch", ".2f", f"medians of {what}")

    # inference over the test set, alternating
    test = dataset.test if dataset.test is not None else dataset.train
    batch = experiment.training.eval_batch_size
    x = nn_run.backend.to_device(np.ascontiguousarray(test.x, model.dtype))
    tx = TorchRun._nchw(np.ascontiguousarray(test.x, model.dtype)).to(t_run.device) if t_run is not None else None
    nn_run.infer(x[:batch], batch)
    if t_run is not None:
        t_run.infer(tx[:batch], batch)
    inputs = {"nncli": x, "pytorch": tx}
    rates = {name: [] for name, _ in runs}
    for r in range(args.rounds):
        for name, run in runs if r % 2 == 0 else runs[::-1]:  # alternate who goes first, as for training
            rates[name].append(images_per_second(run, inputs[name], batch))
    report("infer", rates, "img/s", ",.0f", f"batch {batch}, {len(x):,} test images, medians of {args.rounds}")

    if args.profile:
        profile(nn_run, args.profile_steps or min(200, 2 * nn_run.steps_per_epoch))


def images_per_second(run, x, batch: int, min_seconds: float = 0.5) -> float:
    """Whole passes over x until at least min_seconds have passed: a small MLP's single pass takes a few
    milliseconds, too short to time against the machine's noise."""
    seconds, passes = 0.0, 0
    while seconds < min_seconds:
        seconds += run.infer(x, batch)
        passes += 1
    return passes * len(x) / seconds


def main(argv=None) -> None:
    global torch
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", help="nncli configs (default: the CNN, MLP and LSTM configs that exist)")
    parser.add_argument("--steps", type=int, default=0, help="time this many steps per round instead of whole epochs")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="BLAS / PyTorch threads")
    parser.add_argument("--batch-size", type=int, default=0, help="override training.batch_size")
    parser.add_argument("--data-path", default=None, help="override data.path")
    parser.add_argument("--set", action="append", help="any config override KEY=VALUE (repeatable)")
    parser.add_argument("--profile", action="store_true", help="print where nncli's time goes, per layer")
    parser.add_argument("--profile-steps", type=int, default=0, help="steps to profile (default 200)")
    parser.add_argument("--check", action="store_true", help="compare loss and gradients with PyTorch on one batch")
    parser.add_argument("--no-torch", action="store_true", help="time nncli only")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="gpu: nncli on CuPy, PyTorch on CUDA")
    args = parser.parse_args(argv)
    os.chdir(REPO)  # configs name data paths relative to the repository
    configs = args.configs or [c for c in DEFAULT_CONFIGS if (REPO / c).exists()]
    if not args.no_torch and import_torch():
        torch.set_num_threads(args.threads)
        if args.device == "gpu":  # float32 math in both frameworks (CuPy's cuBLAS calls run without TF32 unless CUPY_TF32 is set)
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            if not torch.cuda.is_available():
                print("pytorch: no CUDA in this torch build; nncli is timed alone")
                torch = None
    print(
        f"numpy {np.__version__}, " + (f"torch {torch.__version__}" if torch is not None else "no torch")
        + f", {args.threads} threads, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    with threadpool_limits(args.threads, user_api="blas"):
        for path in configs:
            bench_config(path, args)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
