"""Multi-layer perceptron: the paper's two-moons network (a 3-hidden-layer ReLU MLP, section 5.1)."""

from __future__ import annotations

import math

import torch
from torch import nn


class MLP(nn.Module):
    """``depth`` hidden layers of ``width`` units with ReLU, then a linear layer to ``num_classes`` logits.

    Inputs of any shape ``(N, ...)`` are flattened to ``(N, in_features)``.
    """

    def __init__(self, in_features: int, num_classes: int, width: int = 64, depth: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        d = in_features
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        layers.append(nn.Linear(d, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1).float())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's activations (what the output layer sees)."""
        return self.net[:-1](x.flatten(1).float())

    @classmethod
    def for_input(cls, input_shape, num_classes: int, **kw) -> "MLP":
        return cls(int(math.prod(input_shape)), num_classes, **kw)
