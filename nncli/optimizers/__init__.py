"""Optimizers: first-order mini-batch rules and full-batch minimisers, one registry."""

from . import first_order, second_order  # noqa: F401  (registration)
from .base import OPTIMIZERS, Minimizer, Objective, Optimizer, StepResult

__all__ = ["OPTIMIZERS", "Minimizer", "Objective", "Optimizer", "StepResult"]
