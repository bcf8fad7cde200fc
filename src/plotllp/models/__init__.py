"""Networks that map inputs to class logits. Any ``torch.nn.Module`` that does so works with every stage."""

from __future__ import annotations

from torch import nn

from ..errors import LLPInputError
from .mlp import MLP

__all__ = ["MLP", "build_model", "MODELS"]

#: name -> builder(input_shape, num_classes, width, depth)
MODELS = {
    "mlp": lambda shape, k, width=64, depth=3: MLP.for_input(shape, k, width=width, depth=depth),
}


def build_model(name: str, input_shape, num_classes: int, *, width: int = 64, depth: int = 3) -> nn.Module:
    """A fresh network called ``name`` for inputs of ``input_shape`` (without the batch dimension)."""
    if name not in MODELS:
        raise LLPInputError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    return MODELS[name](tuple(input_shape), num_classes, width=width, depth=depth)
