"""Layers, one module per family; importing this package registers them all."""

from . import activations, conv, dense, dropout, normalization, pooling, recurrent, reshape  # noqa: F401  (registration)
from .activations import ACTIVATIONS
from .base import LAYERS, Layer, ShapeError

__all__ = ["ACTIVATIONS", "LAYERS", "Layer", "ShapeError"]
