"""Convolution and pooling: loop-based references, tie-breaking, padding, fusion and shape errors."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import build_layer, numeric_grad, rel_error, write_config
from typer.testing import CliRunner

from nncli.cli import app
from nncli.errors import ConfigError
from nncli.layers import LAYERS
from nncli.models import Sequential

# -- loop-based references (numpy-ml's conv2D_naive idea): obviously right, slow ----------------


def tf_padding(size, window, stride, padding):
    """(out, before, after) by TensorFlow's rule: 'same' gives ceil(size/stride), odd padding goes after."""
    if padding == "valid":
        return (size - window) // stride + 1, 0, 0
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + window - size, 0)
    return out, total // 2, total - total // 2


def pad(x, ph, pw, value):
    (oh, t, b), (ow, l, r) = ph, pw
    return np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=value)


def conv_naive(x, W, b, strides, padding, g):
    """y, and for upstream gradient g: dx, dW, db; one output element at a time."""
    N, H, Wd, C = x.shape
    kh, kw, _, F = W.shape
    (sh, sw) = strides
    ph, pw = tf_padding(H, kh, sh, padding), tf_padding(Wd, kw, sw, padding)
    xp = pad(x, ph, pw, 0.0)
    y = np.zeros((N, ph[0], pw[0], F))
    dxp, dW, db = np.zeros_like(xp), np.zeros_like(W), np.zeros(F)
    for n in range(N):
        for r in range(ph[0]):
            for c in range(pw[0]):
                for f in range(F):
                    patch = xp[n, r * sh : r * sh + kh, c * sw : c * sw + kw, :]
                    y[n, r, c, f] = np.sum(patch * W[:, :, :, f]) + b[f]
                    dW[:, :, :, f] += patch * g[n, r, c, f]
                    dxp[n, r * sh : r * sh + kh, c * sw : c * sw + kw, :] += W[:, :, :, f] * g[n, r, c, f]
                    db[f] += g[n, r, c, f]
    dx = dxp[:, ph[1] : ph[1] + H, pw[1] : pw[1] + Wd]
    return y, dx, dW, db


def pool_naive(kind, x, size, strides, padding, g):
    """Max (first maximum in row-major window order wins) or TF average (real pixels only): y and dx."""
    N, H, Wd, C = x.shape
    (kh, kw), (sh, sw) = size, strides
    ph, pw = tf_padding(H, kh, sh, padding), tf_padding(Wd, kw, sw, padding)
    real = pad(np.ones_like(x), ph, pw, 0.0)
    xp = pad(x, ph, pw, 0.0)
    y = np.zeros((N, ph[0], pw[0], C))
    dxp = np.zeros_like(xp)
    for n in range(N):
        for r in range(ph[0]):
            for c in range(pw[0]):
                for ch in range(C):
                    rows, cols = slice(r * sh, r * sh + kh), slice(c * sw, c * sw + kw)
                    window, mask = xp[n, rows, cols, ch], real[n, rows, cols, ch]
                    if kind == "max":
                        values = np.where(mask > 0, window, -np.inf)
                        k = int(np.argmax(values))  # argmax: the first occurrence in row-major order
                        y[n, r, c, ch] = values.flat[k]
                        dxp[n, r * sh + k // kw, c * sw + k % kw, ch] += g[n, r, c, ch]
                    else:
                        y[n, r, c, ch] = np.sum(window * mask) / mask.sum()
                        dxp[n, rows, cols, ch] += mask * g[n, r, c, ch] / mask.sum()
    return y, dxp[:, ph[1] : ph[1] + H, pw[1] : pw[1] + Wd]


def random_geometry(seed):
    rng = np.random.default_rng(seed)
    return dict(
        N=int(rng.integers(1, 4)),
        H=int(rng.integers(1, 9)),
        W=int(rng.integers(1, 9)),
        C=int(rng.integers(1, 4)),
        k=(int(rng.integers(1, 5)), int(rng.integers(1, 5))),
        s=(int(rng.integers(1, 4)), int(rng.integers(1, 4))),
        padding=str(rng.choice(["valid", "same"])),
        F=int(rng.integers(1, 4)),
    ), rng


def fits(geo):
    return geo["padding"] == "same" or (geo["H"] >= geo["k"][0] and geo["W"] >= geo["k"][1])


@pytest.mark.parametrize("seed", range(40))
def test_conv2d_matches_loop_reference(seed):
    geo, rng = random_geometry(seed)
    spec = {"type": "conv2d", "filters": geo["F"], "kernel_size": list(geo["k"]), "strides": list(geo["s"]), "padding": geo["padding"]}
    shape = (geo["H"], geo["W"], geo["C"])
    if not fits(geo):
        with pytest.raises(ConfigError, match="larger than"):
            build_layer(spec, shape)
        return
    layer, model = build_layer(spec, shape, seed=seed)
    layer.params["b"][...] = rng.normal(size=geo["F"])
    x = rng.normal(size=(geo["N"], *shape))
    x_before = x.copy()
    y = layer.forward(x, training=True)
    g = rng.normal(size=y.shape)
    y_ref, dx_ref, dW_ref, db_ref = conv_naive(x, layer.params["W"], layer.params["b"], geo["s"], geo["padding"], g)
    np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-12)
    dx = layer.backward(g.copy())
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.grads["W"], dW_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.grads["b"], db_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(x, x_before)  # forward never modifies its input


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("seed", range(30))
def test_pooling_matches_loop_reference(kind, seed):
    geo, rng = random_geometry(100 + seed)
    spec = {"type": f"{kind}pool2d", "pool_size": list(geo["k"]), "strides": list(geo["s"]), "padding": geo["padding"]}
    shape = (geo["H"], geo["W"], geo["C"])
    if not fits(geo):
        with pytest.raises(ConfigError, match="larger than"):
            build_layer(spec, shape)
        return
    layer, _ = build_layer(spec, shape)
    # few distinct values: ties in most windows, so the first-maximum rule is exercised too
    x = rng.integers(-2, 3, size=(geo["N"], *shape)).astype(np.float64)
    y = layer.forward(x, training=True)
    g = rng.normal(size=y.shape)
    y_ref, dx_ref = pool_naive(kind, x, geo["k"], geo["s"], geo["padding"], g)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.backward(g.copy()), dx_ref, rtol=1e-12, atol=1e-12)


def test_global_avgpool_is_the_spatial_mean():
    layer, _ = build_layer("global_avgpool2d", (3, 4, 2))
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 2))
    np.testing.assert_allclose(layer.forward(x), x.mean(axis=(1, 2)))
    g = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose(layer.backward(g), np.broadcast_to(g[:, None, None, :] / 12, x.shape))


def test_maxpool_routes_tied_gradients_to_the_first_maximum_only():
    layer, _ = build_layer({"type": "maxpool2d"}, (4, 4, 1))
    x = np.zeros((1, 4, 4, 1))  # a blank window: four tied maxima
    x[0, 0:2, 2:4, 0] = [[1.0, 3.0], [3.0, 3.0]]  # three tied maxima, the first at (0, 1)
    x[0, 2:4, 0:2, 0] = [[-1.0, -2.0], [-1.0, -1.0]]
    x[0, 2:4, 2:4, 0] = [[0.0, 0.0], [0.0, 5.0]]
    layer.forward(x, training=True)
    dx = layer.backward(np.ones((1, 2, 2, 1)))[0, :, :, 0]
    expected = np.array([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(dx, expected)


def test_tf_same_padding_puts_the_odd_pixel_bottom_right():
    # 4×4 input, 2×2 kernel of ones, 'same': TF pads 0 rows on top and 1 at the bottom
    layer, _ = build_layer({"type": "conv2d", "filters": 1, "kernel_size": 2, "padding": "same", "use_bias": False}, (4, 4, 1))
    layer.params["W"][...] = 1.0
    x = np.arange(16.0).reshape(1, 4, 4, 1)
    y = layer.forward(x)[0, :, :, 0]
    assert y[0, 0] == 0 + 1 + 4 + 5  # window starts at the top-left pixel: no padding before
    assert y[3, 3] == 15  # bottom-right output sees one real pixel
    pool, _ = build_layer({"type": "avgpool2d", "pool_size": 2, "strides": 1, "padding": "same"}, (4, 4, 1))
    assert pool.forward(x)[0, 3, 3, 0] == 15  # the average counts real pixels only


# -- the ReLU / max-pool fusion ----------------------------------------------------------------

FUSED = [
    {"type": "conv2d", "filters": 3, "kernel_size": 3, "activation": "relu"},
    {"type": "maxpool2d"},
    {"type": "conv2d", "filters": 2, "kernel_size": 2, "activation": "relu"},
    {"type": "maxpool2d", "pool_size": 2, "strides": 1},
    {"type": "flatten"},
    {"type": "dense", "units": 3},
]
UNFUSED = [
    {"type": "conv2d", "filters": 3, "kernel_size": 3},
    {"type": "relu"},
    {"type": "maxpool2d"},
    {"type": "conv2d", "filters": 2, "kernel_size": 2},
    {"type": "relu"},
    {"type": "maxpool2d", "pool_size": 2, "strides": 1},
    {"type": "flatten"},
    {"type": "dense", "units": 3},
]


def test_relu_fused_into_maxpool_is_exact():
    fused = Sequential.from_specs(FUSED, (9, 8, 2), np.float64)
    plain = Sequential.from_specs(UNFUSED, (9, 8, 2), np.float64)
    assert fused.layers[0].activation_deferred and fused.layers[1].post_activation is fused.layers[0].activation
    assert not any(getattr(layer, "activation_deferred", False) for layer in plain.layers)
    fused.initialize(np.random.default_rng(0))
    plain.theta[...] = fused.theta
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 9, 8, 2))
    x[0] = 0.0  # blank image: every window tied, every ReLU at its kink
    x[1, :, :, :] = -1.0
    fused.layers[0].params["b"][...] = [0.0, -0.5, 0.5]
    plain.layers[0].params["b"][...] = [0.0, -0.5, 0.5]
    g = rng.normal(size=(4, 3))
    np.testing.assert_array_equal(fused.forward(x, training=True), plain.forward(x, training=True))
    fused.backward(g.copy())
    plain.backward(g.copy())
    np.testing.assert_array_equal(fused.grad, plain.grad)
    np.testing.assert_array_equal(fused.forward(x), plain.forward(x))  # evaluation mode too


def test_only_relu_before_a_maxpool_is_fused():
    for act in ("sigmoid", "tanh", {"type": "leaky_relu", "alpha": 0.1}):  # float ties could pick another winner
        model = Sequential.from_specs([{"type": "conv2d", "filters": 2, "kernel_size": 2, "activation": act}, {"type": "maxpool2d"}], (4, 4, 1))
        assert not model.layers[0].activation_deferred and model.layers[1].post_activation is None
    model = Sequential.from_specs([{"type": "conv2d", "filters": 2, "kernel_size": 2, "activation": "relu"}, {"type": "avgpool2d"}], (4, 4, 1))
    assert not model.layers[0].activation_deferred


def test_fused_model_gradient_matches_finite_differences():
    model = Sequential.from_specs(FUSED, (9, 8, 2), np.float64)
    model.initialize(np.random.default_rng(3))
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 9, 8, 2))
    probe = rng.normal(size=(2, 3))

    def loss():
        return float(np.sum(model.forward(x, training=True) * probe))

    loss()
    model.backward(probe.copy())
    analytic = model.grad.copy()
    assert rel_error(analytic, numeric_grad(loss, model.theta)) < 1e-6


# -- shapes, options and memory ----------------------------------------------------------------


def test_conv_weights_follow_the_contract_layout():
    layer, model = build_layer({"type": "conv2d", "filters": 4, "kernel_size": [3, 2]}, (6, 5, 3))
    assert layer.params["W"].shape == (3, 2, 3, 4) and layer.params["b"].shape == (4,)
    assert [k for k, _ in model.named_params()] == ["0.conv2d/W", "0.conv2d/b"]
    assert layer.output_shape == (4, 4, 4)
    assert layer.spec["kernel_size"] == [3, 2] and layer.spec["strides"] == [1, 1]


def test_scalar_kernel_size_and_strides_expand():
    layer = LAYERS.create({"type": "conv2d", "filters": 1, "kernel_size": 3, "strides": 2})
    assert layer.kernel_size == (3, 3) and layer.strides == (2, 2)
    pool = LAYERS.create("maxpool2d")
    assert pool.pool_size == (2, 2) and pool.strides == (2, 2)


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="padding"):
        LAYERS.create({"type": "conv2d", "filters": 1, "kernel_size": 3, "padding": "full"}, ("model", "layers", 0))
    with pytest.raises(ConfigError, match=">= 1"):
        LAYERS.create({"type": "conv2d", "filters": 1, "kernel_size": 0})
    with pytest.raises(ConfigError, match="at most one -1"):
        LAYERS.create({"type": "reshape", "target_shape": [-1, -1]})


@pytest.mark.parametrize(
    "layers,index,message",
    [
        ([{"type": "conv2d", "filters": 2, "kernel_size": 9}], 0, "kernel 9×9 is larger than its 8×8 input"),
        ([{"type": "conv2d", "filters": 2, "kernel_size": 3}, {"type": "dense", "units": 3}], 1, "add a flatten layer"),
        ([{"type": "flatten"}, {"type": "conv2d", "filters": 2, "kernel_size": 3}], 1, "add a reshape layer"),
        ([{"type": "maxpool2d", "pool_size": 4}, {"type": "maxpool2d", "pool_size": 3}], 1, "pool window 3×3 is larger than its 2×2 input"),
        ([{"type": "reshape", "target_shape": [7, -1]}], 0, "cannot reshape (8, 8, 1)"),
    ],
)
def test_summary_names_the_layer_with_a_shape_error(tmp_path, digits, layers, index, message):
    config = {
        "name": "bad",
        "data": {"source": "idx", "path": str(digits)},
        "model": {"layers": layers},
    }
    path = write_config(tmp_path / "bad.yaml", config)
    result = CliRunner().invoke(app, ["summary", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error:") and "Traceback" not in result.output
    assert f"model.layers.{index}" in result.stderr and message in result.stderr


def test_reshape_then_conv_builds_from_flat_input():
    model = Sequential.from_specs(
        [{"type": "reshape", "target_shape": [4, 4, 1]}, {"type": "conv2d", "filters": 2, "kernel_size": 3}, {"type": "global_avgpool2d"}],
        (16,),
    )
    assert model.output_shape == (2,)
    model.initialize(np.random.default_rng(0))
    assert model.forward(np.ones((3, 16), np.float32)).shape == (3, 2)


def test_work_buffers_are_reused_across_batches():
    model = Sequential.from_specs(FUSED, (9, 8, 2))
    model.initialize(np.random.default_rng(0))
    x = np.random.default_rng(1).normal(size=(5, 9, 8, 2)).astype(np.float32)
    model.forward(x, training=True)
    model.backward(np.ones((5, 3), np.float32))
    ids = {id(buf) for layer in model.layers for slots in layer._buffers.values() for buf in slots.values()}
    model.forward(x, training=True)
    model.backward(np.ones((5, 3), np.float32))
    again = {id(buf) for layer in model.layers for slots in layer._buffers.values() for buf in slots.values()}
    assert ids == again
    assert model.grad.dtype == np.float32 and model.forward(x).dtype == np.float32


# -- the seed CNN config -----------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent
MNIST = REPO / "datasets" / "mnist"
CNN_CONFIG = REPO / "configs" / "mnist_cnn.yaml"


def test_mnist_cnn_summary_reports_93322_parameters():
    result = CliRunner().invoke(app, ["summary", str(CNN_CONFIG), "--set", f"data.path={MNIST}"])
    assert result.exit_code == 0, result.output
    assert "93,322" in result.stdout
    assert "conv2d(32, 3×3, relu)" in result.stdout and "(5, 5, 64)" in result.stdout


@pytest.mark.slow
def test_mnist_cnn_reaches_99_percent_test_accuracy_in_5_epochs(tmp_path):
    """The acceptance run: `nncli train configs/mnist_cnn.yaml`, then `nncli eval` on the last checkpoint."""
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(CNN_CONFIG), "--set", f"data.path={MNIST}", "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    last = result.stdout.strip().splitlines()[-1]
    assert last.endswith("last.npz")
    result = runner.invoke(app, ["eval", last, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.splitlines()[0])
    assert report["n"] == 10_000 and report["accuracy"] >= 0.99, report["accuracy"]


def test_activation_statistics_see_the_relu_the_pool_applies():
    from nncli.diagnostics import activation_statistics

    fused = Sequential.from_specs(FUSED, (9, 8, 2), np.float64)
    plain = Sequential.from_specs(UNFUSED, (9, 8, 2), np.float64)
    fused.initialize(np.random.default_rng(0))
    plain.theta[...] = fused.theta
    x = np.random.default_rng(1).normal(size=(6, 9, 8, 2))
    mine, theirs = activation_statistics(fused, x), activation_statistics(plain, x)
    assert mine[0] == theirs[1] and mine[2] == theirs[4]  # conv0's ReLU is layer 1 of the unfused stack
    assert 0.2 < mine[0][0] < 0.8  # a real fraction of ReLU zeros, not the pre-activation's
