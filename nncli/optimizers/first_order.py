"""First-order update rules over the flat parameter vector θ.

Each docstring states the convention where the major libraries differ; the
closed-form tests in tests/test_optimizers.py pin them. Updates are in place
with preallocated slot and scratch arrays, and hyperparameters stay Python
floats so float32 arithmetic stays float32.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import to_host, xp_of
from ..registry import Fraction, NonNegativeFloat, PositiveFloat
from .base import OPTIMIZERS, Optimizer


class _Slotted(Optimizer):
    """An optimizer with per-parameter slot arrays (its state) and a scratch buffer, allocated at the first step."""

    slots: tuple[str, ...] = ()

    def __init__(self, learning_rate: float):
        super().__init__(learning_rate)
        self._slot: dict[str, np.ndarray] = {}
        self._scratch: np.ndarray | None = None  # None until the first step, and again after load_state_dict

    def _new_slots(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """Every slot's starting value: zeros."""
        xp = xp_of(theta)
        return {name: xp.zeros_like(theta) for name in self.slots}

    def _allocate(self, theta: np.ndarray) -> None:
        """The slots a checkpoint did not bring, and the scratch buffer, on θ's device (a checkpoint's slots are
        uploaded there): later steps allocate nothing."""
        xp = xp_of(theta)
        self._slot = self._new_slots(theta) | {name: xp.asarray(value) for name, value in self._slot.items()}
        self._scratch = xp.empty_like(theta)

    def step(self, theta, grad, lr):
        if self._scratch is None:
            self._allocate(theta)
        super().step(theta, grad, lr)

    def state_dict(self) -> dict:
        """Counters and slots, the slots as host arrays (what a checkpoint stores, whatever the device)."""
        return {"t": self.t, **{name: to_host(value) for name, value in self._slot.items()}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._slot = {name: np.array(state[name]) for name in self.slots if name in state}  # to θ's device at the next step
        self._scratch = None


@OPTIMIZERS.register("sgd")
class SGD(_Slotted):
    """Mini-batch stochastic gradient descent: θ ← θ - lr·g.

    Options:
    learning_rate: step size
    """

    def __init__(self, learning_rate: PositiveFloat = 0.01):
        super().__init__(learning_rate)

    def _apply(self, theta, grad, lr):
        xp = xp_of(theta)
        xp.multiply(grad, lr, out=self._scratch)
        theta -= self._scratch


@OPTIMIZERS.register("gd", "gradient_descent", "batch_gd")
class GradientDescent(SGD):
    """Full-batch gradient descent: θ ← θ - lr·∇L over the whole training set each step.

    Options:
    learning_rate: step size
    """

    full_batch = True

    def __init__(self, learning_rate: PositiveFloat = 0.1):
        super().__init__(learning_rate)


@OPTIMIZERS.register("momentum", "sgd_momentum")
class Momentum(_Slotted):
    """Heavy-ball momentum, PyTorch convention: v ← μ·v + g; θ ← θ - lr·v (Keras folds lr into v).

    Options:
    learning_rate: step size
    momentum: μ, the fraction of the previous velocity kept
    """

    slots = ("velocity",)

    def __init__(self, learning_rate: PositiveFloat = 0.01, momentum: Fraction = 0.9):
        super().__init__(learning_rate)
        self.momentum = momentum

    def _apply(self, theta, grad, lr):
        xp = xp_of(theta)
        v = self._slot["velocity"]
        v *= self.momentum
        v += grad
        xp.multiply(v, lr, out=self._scratch)
        theta -= self._scratch


@OPTIMIZERS.register("nesterov", "nag")
class Nesterov(_Slotted):
    """Nesterov momentum, PyTorch convention: v ← μ·v + g; θ ← θ - lr·(g + μ·v).

    Options:
    learning_rate: step size
    momentum: μ
    """

    slots = ("velocity",)

    def __init__(self, learning_rate: PositiveFloat = 0.01, momentum: Fraction = 0.9):
        super().__init__(learning_rate)
        self.momentum = momentum

    def _apply(self, theta, grad, lr):
        xp = xp_of(theta)
        v, s = self._slot["velocity"], self._scratch
        v *= self.momentum
        v += grad
        xp.multiply(v, self.momentum, out=s)
        s += grad
        s *= lr
        theta -= s


@OPTIMIZERS.register("adagrad")
class AdaGrad(_Slotted):
    """AdaGrad (Duchi et al. 2011), PyTorch convention: G ← G + g²; θ ← θ - lr·g/(√G + ε), G starts at 0.

    Options:
    learning_rate: step size
    epsilon: added to √G (outside the root)
    initial_accumulator_value: starting G (Keras uses 0.1, PyTorch 0)
    """

    slots = ("accumulator",)

    def __init__(
        self,
        learning_rate: PositiveFloat = 0.01,
        epsilon: PositiveFloat = 1e-10,
        initial_accumulator_value: NonNegativeFloat = 0.0,
    ):
        super().__init__(learning_rate)
        self.epsilon = epsilon
        self.initial_accumulator_value = initial_accumulator_value

    def _new_slots(self, theta):
        """G starts at initial_accumulator_value."""
        xp = xp_of(theta)
        return {"accumulator": xp.full_like(theta, self.initial_accumulator_value)}

    def _apply(self, theta, grad, lr):
        xp = xp_of(theta)
        G, s = self._slot["accumulator"], self._scratch
        xp.multiply(grad, grad, out=s)
        G += s
        xp.sqrt(G, out=s)
        s += self.epsilon
        xp.divide(grad, s, out=s)
        s *= lr
        theta -= s


@OPTIMIZERS.register("adadelta")
class Adadelta(_Slotted):
    """Adadelta (Zeiler 2012), PyTorch convention with a learning-rate factor (1.0 = the paper):
    E[g²] ← ρE[g²] + (1-ρ)g²; Δ = √(E[Δ²]+ε)/√(E[g²]+ε)·g; E[Δ²] ← ρE[Δ²] + (1-ρ)Δ²; θ ← θ - lr·Δ.

    Options:
    learning_rate: factor on the update (1.0 is the paper's rule)
    rho: decay of both running averages
    epsilon: inside both square roots
    """

    slots = ("square_avg", "delta_avg")

    def __init__(self, learning_rate: PositiveFloat = 1.0, rho: Fraction = 0.9, epsilon: PositiveFloat = 1e-6):
        super().__init__(learning_rate)
        self.rho, self.epsilon = rho, epsilon

    def _allocate(self, theta):
        xp = xp_of(theta)
        super()._allocate(theta)
        self._scratch2 = xp.empty_like(theta)  # Δ and a temporary are needed at once

    def _apply(self, theta, grad, lr):
        xp = xp_of(theta)
        rho, eps, delta, s = self.rho, self.epsilon, self._scratch, self._scratch2
        Eg, Ed = self._slot["square_avg"], self._slot["delta_avg"]
        Eg *= rho
        xp.multiply(grad, 1.0 - rho, out=s)
        s *= grad
        Eg += s
        xp.add(Ed, eps, out=delta)
        xp.sqrt(delta, out=delta)
        xp.add(Eg, eps, out=s)
        xp.sqrt(s, out=s)
        delta /= s
        delta *= grad
        Ed *= rho
        xp.multiply(delta, 1.0 - rho, out=s)
        s *= delta
        Ed += s
        delta *= lr
        theta -= delta


@OPTIMIZERS.register("rmsprop")
class RMSProp(_Slotted):
    """RMSProp (Hinton's lecture 6e): v ← ρv + (1-ρ)g²; θ ← θ - lr·g/(√v + ε), ε outside the root, ρ = 0.9.

    Options:
    learning_rate: step size
    rho: decay of the squared-gradient average (PyTorch's alpha; its default is 0.99)
    epsilon: added to √v
    """

    slots = ("square_avg",)

    def __init__(self, learning_rate: PositiveFloat = 1e-3, rho: Fraction = 0.9, epsilon: PositiveFloat = 1e-8):
        super().__init__(learning_rate)
        self.rho, self.epsilon = rho, epsilon

    def _apply(self, theta, grad, lr):
        xp = xp_of(theta)
        v, s = self._slot["square_avg"], self._scratch
        v *= self.rho
        xp.multiply(grad, grad, out=s)
        s *= 1.0 - self.rho
        v += s
        xp.sqrt(v, out=s)
        s += self.epsilon
        xp.divide(grad, s, out=s)
        s *= lr
        theta -= s


@OPTIMIZERS.register("adam")
class Adam(_Slotted):
    """Adam (Kingma & Ba 2014, Algorithm 1, as PyTorch/optax): m̂ = m/(1-β₁ᵗ), v̂ = v/(1-β₂ᵗ); θ ← θ - lr·m̂/(√v̂ + ε).

    ε sits outside the root on v̂ (Keras/TF put it on the un-corrected v, and default it to 1e-7).

    Options:
    learning_rate: step size
    beta_1: decay of the first moment m
    beta_2: decay of the second moment v
    epsilon: added to √v̂
    """

    slots = ("m", "v")

    def __init__(
        self,
        learning_rate: PositiveFloat = 1e-3,
        beta_1: Fraction = 0.9,
        beta_2: Fraction = 0.999,
        epsilon: PositiveFloat = 1e-8,
    ):
        super().__init__(learning_rate)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon

    def _apply(self, theta, grad, lr):
        xp = xp_of(theta)
        b1, b2, s = self.beta_1, self.beta_2, self._scratch
        m, v = self._slot["m"], self._slot["v"]
        m *= b1
        xp.multiply(grad, 1.0 - b1, out=s)
        m += s
        v *= b2
        xp.multiply(grad, grad, out=s)
        s *= 1.0 - b2
        v += s
        bias1 = 1.0 - b1**self.t
        bias2 = 1.0 - b2**self.t
        xp.sqrt(v, out=s)
        s *= 1.0 / math.sqrt(bias2)
        s += self.epsilon  # √v̂ + ε
        xp.divide(m, s, out=s)
        s *= lr / bias1
        theta -= s


@OPTIMIZERS.register("adamw")
class AdamW(Adam):
    """AdamW (Loshchilov & Hutter 2019), PyTorch convention: θ ← θ·(1 - lr·λ), then the Adam step.

    Decoupled weight decay shrinks all parameters (biases too) without entering the gradient moments.

    Options:
    learning_rate: step size
    beta_1: decay of the first moment m
    beta_2: decay of the second moment v
    epsilon: added to √v̂
    weight_decay: λ, multiplied by the current learning rate
    """

    def __init__(
        self,
        learning_rate: PositiveFloat = 1e-3,
        beta_1: Fraction = 0.9,
        beta_2: Fraction = 0.999,
        epsilon: PositiveFloat = 1e-8,
        weight_decay: NonNegativeFloat = 0.01,
    ):
        super().__init__(learning_rate, beta_1, beta_2, epsilon)
        self.weight_decay = weight_decay

    def _apply(self, theta, grad, lr):
        theta *= 1.0 - lr * self.weight_decay
        super()._apply(theta, grad, lr)
