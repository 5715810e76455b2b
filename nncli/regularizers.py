"""Weight and activity penalties added to the training objective.

Convention (Keras): l1 is λ·Σ|w| and l2 is λ·Σw², with no ½, so the l2
gradient is 2λ·w. (`training.weight_decay` is the other common convention,
½·wd·Σw² with gradient wd·w as torch's `weight_decay`: see
`Sequential`.) A regulariser is a pure function of an array: `penalty(w)`
returns a float, `add_gradient(w, grad)` adds dR/dw into `grad` in place.

Where they apply:
- `kernel_regularizer` (dense; any layer with a kernel): on the kernel W
  only, not the bias; the penalty is added to every batch's mean loss.
- `activity_regularizer` (dense): on the layer's output y, averaged over the
  samples of the batch (λ·Σ|y| / N for l1), as Keras does, so its weight does
  not depend on the batch size.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np

from .backend import xp_of
from .registry import NonNegativeFloat, Registry

REGULARIZERS = Registry("regularizer")

Regularizer_ = Annotated[object, REGULARIZERS]  # option type: a regularizer name or mapping


class Regularizer:
    """penalty(w) -> float; add_gradient(w, grad, scale) adds scale·dR/dw into grad."""

    registered_name = "regularizer"
    spec: dict

    @property
    def active(self) -> bool:
        """False when every coefficient is 0 (then the model skips it: no cost)."""
        raise NotImplementedError

    def penalty(self, w: np.ndarray) -> float:
        raise NotImplementedError

    def add_gradient(self, w: np.ndarray, grad: np.ndarray, scale: float = 1.0) -> None:
        raise NotImplementedError


def _sum_abs(w: np.ndarray) -> float:
    xp = xp_of(w)
    return xp.sum(xp.abs(w), dtype=np.float64)  # a device scalar: read with the step's one host copy


def _sum_squares(w: np.ndarray) -> float:
    xp = xp_of(w)
    w = w.reshape(-1)  # a view for the contiguous arrays the model passes
    return xp.dot(w, w).astype(np.float64)


@REGULARIZERS.register("l1_l2", "l1l2", "elastic_net")
class L1L2(Regularizer):
    """l1·‖w‖₁ + l2·Σw² (elastic net).

    Options:
    l1: coefficient of ‖w‖₁ (sum of absolute values)
    l2: coefficient of Σw²
    """

    def __init__(self, l1: NonNegativeFloat = 0.0, l2: NonNegativeFloat = 0.0):
        self.l1, self.l2 = l1, l2

    @property
    def active(self):
        return self.l1 > 0 or self.l2 > 0

    def penalty(self, w):
        value = 0.0
        if self.l1 > 0:
            value += self.l1 * _sum_abs(w)
        if self.l2 > 0:
            value += self.l2 * _sum_squares(w)
        return value

    def add_gradient(self, w, grad, scale=1.0):
        xp = xp_of(w)
        if self.l1 > 0:
            grad += (self.l1 * scale) * xp.sign(w)
        if self.l2 > 0:
            grad += (2.0 * self.l2 * scale) * w


# l1 and l2 are l1_l2 with the other coefficient 0; their own constructors give them their own option and default.
@REGULARIZERS.register("l1")
class L1(L1L2):
    """λ·‖w‖₁, the sum of absolute values: pushes weights to exactly zero (sparsity); gradient λ·sign(w), 0 at w = 0.

    Options:
    l1: the coefficient λ
    """

    def __init__(self, l1: NonNegativeFloat = 0.01):
        super().__init__(l1=l1)


@REGULARIZERS.register("l2")
class L2(L1L2):
    """λ·Σw² (Keras convention, no ½): shrinks large weights; gradient 2λ·w.

    Options:
    l2: the coefficient λ
    """

    def __init__(self, l2: NonNegativeFloat = 0.01):
        super().__init__(l2=l2)
