"""NHWC image geometry shared by convolution and pooling: window counts, padding, strided window views."""

from __future__ import annotations

from typing import Literal

import numpy as np

from .base import ShapeError

Padding = Literal["valid", "same"]


def output_size(size: int, window: int, stride: int, padding: str) -> tuple[int, int, int]:
    """(output size, padding before, padding after) along one axis.

    'valid': windows inside the input only, floor((size - window)/stride) + 1.
    'same': ceil(size/stride) outputs, zero padding split as TensorFlow does
    (the odd extra pixel goes after: bottom/right).
    """
    if padding == "same":
        out = -(-size // stride)
        total = max((out - 1) * stride + window - size, 0)
        return out, total // 2, total - total // 2
    if size < window:
        return 0, 0, 0
    return (size - window) // stride + 1, 0, 0


def check_image(name: str, input_shape) -> None:
    """Raise ShapeError unless the per-sample shape is an image (height, width, channels)."""
    if len(input_shape) != 3:
        hint = "; add a reshape layer, e.g. {type: reshape, target_shape: [28, 28, 1]}" if len(input_shape) == 1 else ""
        raise ShapeError(f"{name} expects images (height, width, channels), got {tuple(input_shape)}{hint}")


def window_views(x: np.ndarray, size: tuple[int, int], strides: tuple[int, int], out: tuple[int, int]):
    """[(i, j, view)] in row-major window order: view[n, r, c] = x[n, r·sh + i, c·sw + j] (no copies)."""
    (kh, kw), (sh, sw), (oh, ow) = size, strides, out
    return [
        (i, j, x[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw])
        for i in range(kh)
        for j in range(kw)
    ]


def pad_into(x: np.ndarray, buf: np.ndarray, top: int, left: int, fill: float) -> np.ndarray:
    """Copy x (N, H, W, C) into buf at (top, left) and set the border to `fill` (buf is a reused work array)."""
    _, H, W, _ = x.shape
    buf[:, :top] = fill
    buf[:, top + H :] = fill
    buf[:, top : top + H, :left] = fill
    buf[:, top : top + H, left + W :] = fill
    buf[:, top : top + H, left : left + W] = x
    return buf
