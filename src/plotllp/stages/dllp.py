r"""DLLP first stage (Ardehaly and Culotta, 2017): minimise the proportion loss over whole bags.

Huge bags: the proportion loss is a function of each bag's mean probability
:math:`\bar p_b = \frac{1}{n_b}\sum_j \operatorname{softmax}(f(x_j))`, so a step over more than
``chunk_size`` rows is taken in two passes over chunks, exactly: (1) without gradients, the means
:math:`\bar p`; then :math:`g = \partial L / \partial \bar p`; (2) per chunk, a forward pass with
gradients and the backward pass of :math:`\sum_j g_{b(j)} \cdot \operatorname{softmax}(f(x_j)) / n_{b(j)}`,
whose parameter gradient summed over the chunks is :math:`\partial L / \partial \theta`. Memory then
grows with ``chunk_size``, not with the bag. (Exact for networks without batch statistics; with
BatchNorm each chunk is normalised with its own statistics.)"""

from __future__ import annotations

import torch

from ..engine import EpochState, LLPData, OptimConfig, autocast
from ..losses import PROPORTION_CLAMP, proportion_loss
from .base import Stage, count_setting


class DLLP(Stage):
    """Each step draws ``batch_bags`` whole bags and minimises :func:`plotllp.losses.proportion_loss`.

    ``augment`` (optional) maps a batch of inputs to augmented inputs on the device.
    """

    name = "dllp"

    def __init__(self, epochs: int, optim: OptimConfig | None = None, *, batch_bags: int = 4, augment=None,
                 chunk_size: int | None = 16384):
        super().__init__(epochs, optim)
        self.batch_bags = count_setting("batch_bags", batch_bags)
        self.augment = augment
        self.chunk_size = None if chunk_size is None else count_setting("chunk_size", chunk_size)

    def chunked_step(self, model, optimizer, x, local, props) -> torch.Tensor:
        """One exact optimiser step of the proportion loss, ``chunk_size`` rows at a time (module
        docstring); returns the detached loss."""
        c, m = int(self.chunk_size), props.shape[0]
        sums = torch.zeros(m, props.shape[1], device=x.device)
        with torch.no_grad():
            for i in range(0, x.shape[0], c):
                with autocast(x.device):
                    logits = model(x[i:i + c])
                sums.index_add_(0, local[i:i + c], torch.softmax(logits.float(), dim=1))
        ones = torch.ones(local.shape[0], device=x.device)
        sizes = torch.zeros(m, device=x.device).index_add_(0, local, ones).clamp_min(1)   # bincount would wait on CUDA
        mean = (sums / sizes[:, None]).requires_grad_(True)
        clamped = mean.clamp(PROPORTION_CLAMP, 1 - PROPORTION_CLAMP)
        loss = -(props.float() * torch.log(clamped)).sum(1).mean()
        (g,) = torch.autograd.grad(loss, mean)
        optimizer.zero_grad(set_to_none=True)
        for i in range(0, x.shape[0], c):
            with autocast(x.device):
                logits = model(x[i:i + c])
            p = torch.softmax(logits.float(), dim=1)
            li = local[i:i + c]
            ((p * g[li]).sum(1) / sizes[li]).sum().backward()
        optimizer.step()
        return loss.detach()

    def train_epoch(self, model, optimizer, data: LLPData, rng) -> EpochState:
        total = torch.zeros((), device=data.device)
        steps = 0
        for x, local, props in self.bag_batches(data, rng):
            if self.chunk_size and x.shape[0] > self.chunk_size:
                total += self.chunked_step(model, optimizer, x, local, props)
            else:
                total += self.step(model, optimizer, x,
                                   lambda logits, local=local, props=props: proportion_loss(logits, local, props))
            steps += 1
        return EpochState(loss=float(total) / max(steps, 1))
