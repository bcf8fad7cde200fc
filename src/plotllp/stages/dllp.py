"""DLLP first stage (Ardehaly and Culotta, 2017): minimise the proportion loss over whole bags."""

from __future__ import annotations

import torch

from ..engine import EpochState, LLPData, OptimConfig
from ..losses import proportion_loss
from .base import Stage


class DLLP(Stage):
    """Each step draws ``batch_bags`` whole bags and minimises :func:`plotllp.losses.proportion_loss`.

    ``augment`` (optional) maps a batch of inputs to augmented inputs on the device.
    """

    name = "dllp"

    def __init__(self, epochs: int, optim: OptimConfig | None = None, *, batch_bags: int = 4, augment=None):
        super().__init__(epochs, optim)
        self.batch_bags = int(batch_bags)
        self.augment = augment

    def train_epoch(self, model, optimizer, data: LLPData, rng) -> EpochState:
        order = torch.from_numpy(rng.permutation(data.num_bags)).to(data.device)
        total = torch.zeros((), device=data.device)
        steps = 0
        for i in range(0, data.num_bags, self.batch_bags):
            sel = order[i:i + self.batch_bags]
            pos, local = data.bag_members(sel)
            x = data.x[data.members[pos]]
            if self.augment is not None:
                x = self.augment(x)
            props = data.proportions[sel]
            total += self.step(model, optimizer, x, lambda logits: proportion_loss(logits, local, props))
            steps += 1
        return EpochState(loss=float(total) / max(steps, 1))
