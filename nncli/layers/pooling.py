"""Pooling over NHWC images: max, average and global average.

Windows are strided views of the input (one per offset in the window, so
Python loops run over pool offsets only); forward is elementwise arithmetic
between those views, which beats a reduction over window axes by a wide margin.
"""

from __future__ import annotations

import numpy as np

from ..registry import PositiveInt
from .base import LAYERS, Layer, ShapeError
from .geometry import Padding, check_image, output_size, pad_into, window_views


class _Pool2D(Layer):
    """Shared geometry: pool_size, strides (default pool_size), valid/same padding as TensorFlow."""

    independent_samples = True
    pad_value = 0.0

    def __init__(
        self,
        pool_size: tuple[PositiveInt, PositiveInt] = (2, 2),
        strides: tuple[PositiveInt, PositiveInt] | None = None,
        padding: Padding = "valid",
    ):
        super().__init__()
        self.pool_size = tuple(pool_size)
        self.strides = tuple(strides) if strides is not None else self.pool_size
        self.padding = padding

    def build(self, input_shape):
        check_image(self.name, input_shape)
        H, W, C = input_shape
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        oh, self._top, bottom = output_size(H, ph, sh, self.padding)
        ow, self._left, right = output_size(W, pw, sw, self.padding)
        if oh == 0 or ow == 0:
            raise ShapeError(f"pool window {ph}×{pw} is larger than its {H}×{W} input (padding: valid)")
        self._padded = (H + self._top + bottom, W + self._left + right)
        self._needs_pad = self._padded != (H, W)
        self._out = (oh, ow)
        # Windows that tile the (padded) input without overlap or gaps: backward writes each
        # window offset's slice once instead of zeroing and accumulating.
        self._tiles = self.strides == self.pool_size
        return (oh, ow, C)

    def _padded_input(self, x: np.ndarray) -> np.ndarray:
        if not self._needs_pad:
            return x
        buf = self.buffer("xp", (x.shape[0], *self._padded, x.shape[3]), x.dtype)
        return pad_into(x, buf, self._top, self._left, self.pad_value)

    def _views(self, x: np.ndarray):
        return [v for _, _, v in window_views(x, self.pool_size, self.strides, self._out)]

    def _dx_buffer(self, N: int, dtype) -> np.ndarray:
        """Zeroed where backward will not write: everywhere, or only the strip past the last window."""
        dxp = self.buffer("dxp", (N, *self._padded, self.input_shape[2]), dtype)
        if not self._tiles:
            dxp.fill(0.0)
        else:
            (ph, pw), (oh, ow) = self.pool_size, self._out
            dxp[:, ph * oh :] = 0.0
            dxp[:, : ph * oh, pw * ow :] = 0.0
        return dxp

    def _crop(self, dxp: np.ndarray) -> np.ndarray:
        if not self._needs_pad:
            return dxp
        H, W = self.input_shape[:2]
        return dxp[:, self._top : self._top + H, self._left : self._left + W]

    def describe(self):
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        extra = f", strides {sh}×{sw}" if (sh, sw) != (ph, pw) else ""
        extra += ", same" if self.padding == "same" else ""
        return f"{self.name}({ph}×{pw}{extra})"


@LAYERS.register("maxpool2d", "max_pooling2d", "maxpooling2d")
class MaxPool2D(_Pool2D):
    """Maximum over each window; backward routes each window's gradient to ONE winner, the first maximum in row-major order (as PyTorch).

    Options:
    pool_size: window height and width (one number for a square window)
    strides: step between windows; null means pool_size (non-overlapping windows)
    padding: valid or same (as TensorFlow; padded positions never win)
    """

    pad_value = -np.inf

    def __init__(
        self,
        pool_size: tuple[PositiveInt, PositiveInt] = (2, 2),
        strides: tuple[PositiveInt, PositiveInt] | None = None,
        padding: Padding = "valid",
    ):
        super().__init__(pool_size, strides, padding)
        # The ReLU of the conv2d before, applied here after pooling: set by fusion.fuse.
        self.post_activation: Layer | None = None

    def forward(self, x, training=False):
        """x: (N, H, W, C) -> (N, oh, ow, C); in training, records the winning window offset per output."""
        xp = self.xp
        views = self._views(self._padded_input(x))
        shape = (x.shape[0], *self._out, x.shape[3])
        y = self.buffer("y", shape, x.dtype)
        xp.copyto(y, views[0])
        if training:
            # Strictly greater replaces the winner, so among tied maxima the first offset keeps it.
            # NOTE: winner = max(winner, k·[view > y]) is branch-free (k grows); a masked copyto
            # mispredicts on every other element and was 10× slower.
            dtype = np.uint8 if len(views) < 256 else np.int32
            winner = self.buffer("winner", shape, dtype)
            mask = self.buffer("mask", shape, np.bool_)
            step = self.buffer("step", shape, dtype)
            winner.fill(0)
            for k, view in enumerate(views[1:], start=1):
                xp.greater(view, y, out=mask)
                xp.multiply(mask, k, out=step, dtype=dtype)
                xp.maximum(winner, step, out=winner)
                xp.maximum(y, view, out=y)
            self._winner = winner
        else:
            for view in views[1:]:
                xp.maximum(y, view, out=y)
        if self.post_activation is not None:
            y = self.post_activation.forward(y, training, out=y)
        return y

    def backward(self, grad_out):
        """(N, oh, ow, C) -> (N, H, W, C): dx = grad at each window's winner, 0 elsewhere."""
        xp = self.xp
        g = grad_out
        if self.post_activation is not None:
            g = self.post_activation.backward(g)
        if not self.needs_input_grad:
            return None
        N = g.shape[0]
        dxp = self._dx_buffer(N, g.dtype)
        mask = self.buffer("mask", g.shape, np.bool_)
        routed = None if self._tiles else self.buffer("routed", g.shape, g.dtype)
        for k, view in enumerate(self._views(dxp)):
            xp.equal(self._winner, k, out=mask)
            if routed is None:
                xp.multiply(g, mask, out=view)
            else:  # windows overlap: accumulate
                xp.multiply(g, mask, out=routed)
                view += routed
        return self._crop(dxp)


@LAYERS.register("avgpool2d", "average_pooling2d", "averagepooling2d")
class AvgPool2D(_Pool2D):
    """Mean over each window; with padding: same, only real pixels are averaged (as TensorFlow, unlike PyTorch's default).

    Options:
    pool_size: window height and width (one number for a square window)
    strides: step between windows; null means pool_size (non-overlapping windows)
    padding: valid or same
    """

    def build(self, input_shape):
        shape = super().build(input_shape)
        # 1/(number of real pixels) per output position, (oh, ow, 1): a host constant, uploaded per dtype
        ones = np.zeros((1, *self._padded, 1))
        H, W = input_shape[:2]
        ones[:, self._top : self._top + H, self._left : self._left + W] = 1.0
        count = sum(self._views(ones))[0]
        self._scale64 = 1.0 / count
        self._scale = {}
        return shape

    def _inverse_count(self, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        if dtype not in self._scale:
            self._scale[dtype] = self.backend.to_device(self._scale64.astype(dtype))
        return self._scale[dtype]

    def forward(self, x, training=False):
        """x: (N, H, W, C) -> (N, oh, ow, C)."""
        xp = self.xp
        views = self._views(self._padded_input(x))
        y = self.buffer("y", (x.shape[0], *self._out, x.shape[3]), x.dtype)
        xp.copyto(y, views[0])
        for view in views[1:]:
            y += view
        y *= self._inverse_count(x.dtype)
        return y

    def backward(self, grad_out):
        """(N, oh, ow, C) -> (N, H, W, C): each window's gradient shared equally by its real pixels."""
        xp = self.xp
        if not self.needs_input_grad:
            return None
        g = grad_out
        g *= self._inverse_count(g.dtype)
        dxp = self._dx_buffer(g.shape[0], g.dtype)
        for view in self._views(dxp):
            if self._tiles:
                xp.copyto(view, g)
            else:
                view += g
        return self._crop(dxp)


@LAYERS.register("global_avgpool2d", "global_average_pooling2d", "globalaveragepooling2d")
class GlobalAvgPool2D(Layer):
    """Mean over height and width, (N, H, W, C) -> (N, C): a parameter-free head in place of flatten + dense."""

    independent_samples = True

    def build(self, input_shape):
        check_image(self.name, input_shape)
        return (input_shape[2],)

    def forward(self, x, training=False):
        """x: (N, H, W, C) -> (N, C)."""
        xp = self.xp
        y = self.buffer("y", (x.shape[0], x.shape[3]), x.dtype)
        xp.sum(x, axis=(1, 2), out=y)
        y *= 1.0 / (x.shape[1] * x.shape[2])
        return y

    def backward(self, grad_out):
        """(N, C) -> (N, H, W, C): dx[n, h, w, c] = g[n, c] / (H·W)."""
        xp = self.xp
        if not self.needs_input_grad:
            return None
        H, W, C = self.input_shape
        dx = self.buffer("dx", (grad_out.shape[0], H, W, C), grad_out.dtype)
        xp.multiply(grad_out[:, None, None, :], 1.0 / (H * W), out=dx)
        return dx
