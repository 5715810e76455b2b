"""Model kinds: the contract (base.py) and the registered kinds, one module each."""

from .base import DEFAULT_KIND, MODELS, MemoryNeed, ModelKind, ModelPlan, PlanRow, available_memory, human_bytes
from . import hopfield  # noqa: F401  (registration)
from .sequential import LayerStack, Sequential

__all__ = [
    "DEFAULT_KIND", "MODELS", "LayerStack", "MemoryNeed", "ModelKind", "ModelPlan", "PlanRow", "Sequential",
    "available_memory", "human_bytes",
]  # fmt: skip
