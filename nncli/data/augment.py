"""Image augmentation for training batches: random shifts, rotations, padded crops, flips.

One inverse affine map per image, applied to the whole batch at once by
bilinear sampling (four gathers), so there is no Python loop over images or
pixels. Pixels that come from outside the image are 0 (background). Only
training batches are augmented, with a Generator seeded from the run seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..registry import NonNegativeFloat, NonNegativeInt


@dataclass(frozen=True)
class Augment:
    """Random transformations of NHWC training images (`data.augment`).

    Options:
    shift: largest translation in pixels, drawn uniformly in [-shift, shift] per axis
    rotation: largest rotation in degrees, drawn uniformly in [-rotation, rotation]
    crop_padding: pad by this many pixels and crop back at a random integer offset
    flip_horizontal: mirror left-right with probability 1/2 (not for digits)
    flip_vertical: mirror top-bottom with probability 1/2
    """

    shift: NonNegativeFloat = 0.0
    rotation: NonNegativeFloat = 0.0
    crop_padding: NonNegativeInt = 0
    flip_horizontal: bool = False
    flip_vertical: bool = False

    @property
    def active(self) -> bool:
        return bool(self.shift or self.rotation or self.crop_padding or self.flip_horizontal or self.flip_vertical)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(N, H, W, C) -> a new array of the same shape and dtype, each image transformed."""
        n, h, w, _ = x.shape
        angle = np.radians(rng.uniform(-self.rotation, self.rotation, n)) if self.rotation else np.zeros(n)
        shift = rng.uniform(-self.shift, self.shift, (n, 2)) if self.shift else np.zeros((n, 2))
        if self.crop_padding:
            shift = shift + rng.integers(-self.crop_padding, self.crop_padding + 1, (n, 2))
        flip_x = rng.random(n) < 0.5 if self.flip_horizontal else np.zeros(n, bool)
        flip_y = rng.random(n) < 0.5 if self.flip_vertical else np.zeros(n, bool)

        # Inverse map: for every output pixel, where in the source image it comes from.
        cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
        yy, xx = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")  # (H, W)
        cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
        src_y = cos * yy - sin * xx + cy - shift[:, 0, None, None]
        src_x = sin * yy + cos * xx + cx - shift[:, 1, None, None]
        src_y = np.where(flip_y[:, None, None], (h - 1) - src_y, src_y)
        src_x = np.where(flip_x[:, None, None], (w - 1) - src_x, src_x)
        return _bilinear(x, src_y, src_x)


def _bilinear(x: np.ndarray, src_y: np.ndarray, src_x: np.ndarray) -> np.ndarray:
    """Sample x (N, H, W, C) at fractional (N, H', W') coordinates; outside the image is 0."""
    n, h, w, _ = x.shape
    y0, x0 = np.floor(src_y), np.floor(src_x)
    wy, wx = (src_y - y0)[..., None], (src_x - x0)[..., None]
    y0, x0 = y0.astype(np.intp), x0.astype(np.intp)
    batch = np.arange(n)[:, None, None]
    out = np.zeros((n, *src_y.shape[1:], x.shape[3]), np.float64)
    for dy, dx, weight in ((0, 0, (1 - wy) * (1 - wx)), (0, 1, (1 - wy) * wx), (1, 0, wy * (1 - wx)), (1, 1, wy * wx)):
        yi, xi = y0 + dy, x0 + dx
        inside = ((yi >= 0) & (yi < h) & (xi >= 0) & (xi < w))[..., None]
        values = x[batch, np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]
        out += np.where(inside, values, 0.0) * weight
    return out.astype(x.dtype)
