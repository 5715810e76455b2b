"""Shared test tools: finite-difference gradient checks and tiny synthetic data sets."""

from __future__ import annotations

import csv
import gzip
import os
import struct
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml

from nncli.checkpoint import read_checkpoint, save_checkpoint
from nncli.layers import LAYERS
from nncli.models import Sequential

EPS = 1e-6


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a-b| / max(|a|+|b|): scale-free, 0 for identical arrays."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(1e-8, float(np.max(np.abs(a) + np.abs(b)))))


def numeric_grad(f, x: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Central differences of the scalar f() with respect to every element of x (modified in place, restored)."""
    grad = np.zeros_like(x, dtype=np.float64)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


def build_layer(spec, input_shape, seed=0):
    """A float64 one-layer model (so the layer owns views into θ), with dL/dx enabled."""
    layer = LAYERS.create(spec)
    model = Sequential([layer], input_shape, dtype=np.float64)
    model.initialize(np.random.default_rng(seed))
    layer.needs_input_grad = True
    return layer, model


def check_layer_gradients(spec, input_shape, batch=3, seed=0, training=True, x=None, tol=1e-6, setup=None):
    """Finite-difference check of dL/dx and every dL/dparam for L = Σ layer(x)·R.

    `setup(layer)` runs after initialisation (e.g. to set running statistics for an evaluation-mode check).
    """
    layer, model = build_layer(spec, input_shape, seed)
    if setup is not None:
        setup(layer)
    rng = np.random.default_rng(seed + 1)
    if x is None:
        x = rng.normal(size=(batch, *input_shape))
    batch = len(x)
    probe = rng.normal(size=(batch, *layer.output_shape))
    forward_rng_seed = seed + 2

    def forward():
        for random_layer in layer.random_layers():
            random_layer.rng = np.random.default_rng(forward_rng_seed)
        return layer.forward(x, training=training)

    def loss():
        return float(np.sum(forward() * probe))

    forward()
    dx = layer.backward(probe.copy())
    analytic = {name: g.copy() for name, g in model.named_grads()}
    errors = {"x": rel_error(dx, numeric_grad(loss, x))}
    for name, param in model.named_params():
        errors[name] = rel_error(analytic[name], numeric_grad(loss, param))
    bad = {k: v for k, v in errors.items() if not v < tol}
    assert not bad, f"{spec}: relative errors {bad}"
    return errors


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    codes = {np.dtype("uint8"): 0x08, np.dtype("int8"): 0x09, np.dtype(">i2"): 0x0B, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    path = Path(str(path) + ".gz") if gz else Path(path)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def make_digits(folder: Path, n_train=240, n_test=60, size=8, classes=3, seed=0, gz=True) -> Path:
    """A learnable toy IDX data set: class k lights up horizontal band k of a size×size image, plus noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)

    def images(n):
        labels = rng.integers(0, classes, n).astype(np.uint8)
        img = rng.integers(0, 60, (n, size, size)).astype(np.float64)
        band = size // classes
        for k in range(classes):
            img[labels == k, k * band : (k + 1) * band, :] += 180
        return np.clip(img, 0, 255).astype(np.uint8), labels

    for prefix, n in (("train", n_train), ("t10k", n_test)):
        img, lab = images(n)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", img, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", lab, gz)
    return folder


def make_csv(path: Path, n=200, seed=0) -> Path:
    """A learnable two-class table: the label is the sign of a linear score of 3 features."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)) * [1.0, 10.0, 0.1] + [0.0, 50.0, 1.0]
    score = x[:, 0] + (x[:, 1] - 50) / 10 - (x[:, 2] - 1) / 0.1
    y = (score + 0.3 * rng.normal(size=n) > 0).astype(int)
    lines = ["a,b,c,label"] + [f"{r[0]:.5f},{r[1]:.5f},{r[2]:.5f},{t}" for r, t in zip(x, y)]
    path.write_text("\n".join(lines) + "\n")
    return path


def minimiser_config(data_path: Path, optimizer: str, units: int = 3, epochs: int = 4) -> dict:
    """A small tanh net on a make_csv table, fitted in float64 by a full-batch minimiser (one iteration per epoch)."""
    return {
        "name": "n", "seed": 1,
        "data": {"source": "csv", "path": str(data_path), "target": "label", "validation_split": 0.25},
        "model": {"layers": [{"type": "dense", "units": units, "activation": "tanh"}, {"type": "dense", "units": 2}]},
        "loss": "cross_entropy", "optimizer": {"type": optimizer}, "training": {"epochs": epochs, "dtype": "float64"},
    }  # fmt: skip


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def mlp_config(data_path: Path, **training) -> dict:
    return {
        "name": "tiny",
        "seed": 0,
        "data": {"source": "idx", "path": str(data_path), "validation_split": 0.2},
        "model": {"layers": [{"type": "flatten"}, {"type": "dense", "units": 8, "activation": "relu"}, {"type": "dense", "units": 3}]},
        "loss": "cross_entropy",
        "optimizer": {"type": "adam", "learning_rate": 0.01},
        "training": {"epochs": 2, "batch_size": 16, **training},
    }


def rewrite_checkpoint(src, dst, change_meta=None, change_arrays=None):
    """Copy a checkpoint with its meta or arrays changed, written the normal way."""
    ckpt = read_checkpoint(src)
    meta = {k: v for k, v in ckpt.meta.items() if k not in ("format", "version")}
    arrays = dict(ckpt.arrays)
    if change_meta:
        change_meta(meta)
    if change_arrays:
        change_arrays(arrays)
    save_checkpoint(dst, meta, arrays)
    return dst


def csv_rows(run_dir: Path, name: str = "history.csv") -> list[dict]:
    """A run folder's CSV file (history.csv, gradients.csv) as dicts of strings."""
    with open(run_dir / name, newline="") as f:
        return list(csv.DictReader(f))


def history_lines(run_dir: Path) -> list[str]:
    """history.csv's lines without the `seconds` column (the only value that may differ between identical runs)."""
    lines = (run_dir / "history.csv").read_text().splitlines()
    return [",".join(line.split(",")[:-1]) for line in lines]


def run_arrays(checkpoint: Path) -> dict[str, np.ndarray]:
    """Weights, layer state and optimizer state of a checkpoint."""
    arrays = read_checkpoint(checkpoint).arrays
    return {k: v for k, v in arrays.items() if k.startswith(("param/", "state/", "optim/"))}


def assert_same_run(a, b) -> None:
    """Two TrainResults are the same run: history (but seconds) and every array, bit for bit."""
    assert history_lines(a.run_dir) == history_lines(b.run_dir)
    pa, pb = run_arrays(a.final_checkpoint), run_arrays(b.final_checkpoint)
    assert pa.keys() == pb.keys()
    for key in pa:
        np.testing.assert_array_equal(pa[key], pb[key], err_msg=key)


@contextmanager
def without_root_file_access():
    """Inside the block, file permissions apply to this thread even when it runs as root.

    Root reads a file of mode 000 anyway; dropping CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH from the thread's effective capabilities (kept in the
    permitted set, so they come back afterwards) makes open() fail with EACCES as
    it does for everybody else. Skips the test where capabilities cannot be set.
    """
    if os.geteuid() != 0:
        yield
        return
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    libc = ctypes.CDLL(None, use_errno=True)
    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3, this thread
    if libc.capget(ctypes.byref(header), data) != 0:
        pytest.skip("running as root and capget() fails: cannot test a file root may not read")
    saved = data[0].effective
    data[0].effective &= ~((1 << 1) | (1 << 2))  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
    if libc.capset(ctypes.byref(header), data) != 0:
        pytest.skip("running as root and capset() fails: cannot test a file root may not read")
    try:
        yield
    finally:
        data[0].effective = saved
        libc.capset(ctypes.byref(header), data)


def cli(*args):
    """`nncli ARGS...` in this process (typer's CliRunner), every argument as a string."""
    from typer.testing import CliRunner

    from nncli.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def one_error_line(result, *fragments, code: int = 2) -> str:
    """The command failed with `code` and said so in one `error:` line holding every fragment; returns it."""
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
