"""The interface every stage shares.

A stage trains any ``torch.nn.Module`` that maps inputs to logits. It says what one epoch is
(:meth:`Stage.train_epoch`) and what happens around the epochs (:meth:`Stage.begin`,
:meth:`Stage.end_epoch`); :func:`plotllp.engine.fit_stage` owns the loop, the optimiser, the
schedule, evaluation and logging. :meth:`Stage.fit` is the one-call form.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from ..engine import EpochState, Evaluator, LLPData, OptimConfig, autocast, fit_stage
from ..errors import LLPInputError


def count_setting(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int of at least ``minimum`` (epochs, batch sizes, window lengths), else LLPInputError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise LLPInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def flag_setting(name: str, value) -> bool:
    """``value`` as a bool (True, False, numpy's, or the integers 1 and 0), else LLPInputError: a string such
    as "no" is not False."""
    if not (isinstance(value, (bool, np.bool_)) or (isinstance(value, (int, np.integer)) and value in (0, 1))):
        raise LLPInputError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def positive_setting(name: str, value, *, allow_zero: bool = False) -> float:
    """``value`` as a float that is positive (or 0 with ``allow_zero``) and finite, else LLPInputError."""
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise LLPInputError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")
    return float(value)


class Stage:
    """Base class of first and second stages."""

    name = "stage"

    def __init__(self, epochs: int, optim: OptimConfig | None = None):
        self.epochs = count_setting("epochs", epochs, minimum=0)
        self.optim = optim or OptimConfig()
        if isinstance(self.optim.lr, bool) or not (isinstance(self.optim.lr, numbers.Real) and 0 < self.optim.lr < float("inf")):
            raise LLPInputError(f"the learning rate must be a positive number, got {self.optim.lr!r}")

    @staticmethod
    def step(model, optimizer, x: torch.Tensor, loss_fn) -> torch.Tensor:
        """One optimiser step on ``loss_fn(model(x))`` (bf16 autocast on CUDA); the detached loss."""
        with autocast(x.device):
            logits = model(x)
        loss = loss_fn(logits)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    def bag_batches(self, data: LLPData, rng):
        """Yield ``(inputs, local bag index, proportions)`` for ``self.batch_bags`` whole bags at a time,
        the bags in a random order drawn from ``rng``; inputs augmented when the stage has ``augment``.

        The member positions of the whole epoch are computed in one pass and the batch boundaries on
        the host, so no step waits for the device."""
        n = max(data.num_bags, data.epoch_bags)
        order_np = data.epoch_order(data.num_bags, n, rng, as_tensor=False)
        ends = np.cumsum(data.bags.sizes[order_np])
        order = torch.from_numpy(order_np).to(data.device)
        pos_all, local_all = data.bag_members(order, int(ends[-1]) if n else 0)
        for i in range(0, n, self.batch_bags):
            j = min(i + self.batch_bags, n)
            lo, hi = (int(ends[i - 1]) if i else 0), int(ends[j - 1])
            x = data.x[data.members[pos_all[lo:hi]]]
            if getattr(self, "augment", None) is not None:
                x = self.augment(x)
            yield x, local_all[lo:hi] - i, data.proportions[order[i:j]]

    def bag_steps(self, data: LLPData) -> int:
        """Steps per epoch of :meth:`bag_batches`."""
        return -(-max(data.num_bags, data.epoch_bags) // self.batch_bags)

    def begin(self, model, data: LLPData) -> None:
        """Called once before the first epoch."""

    def train_epoch(self, model, optimizer, data: LLPData, rng) -> EpochState:
        """One pass of optimisation; returns the epoch's mean loss (and anything it computed)."""
        raise NotImplementedError

    def end_epoch(self, model, data: LLPData, state: EpochState) -> EpochState:
        """Called after each epoch's optimisation (PLOT updates its pseudo-labels here)."""
        return state

    def state_dict(self) -> dict:
        """What the stage carries from epoch to epoch (saved in checkpoints)."""
        return {}

    def load_state_dict(self, state: dict, device) -> None:
        """Restore :meth:`state_dict` (on resuming a run)."""

    def fit(self, model, data: LLPData, *, evaluator: Evaluator | None = None, log=print, seed: int = 0,
            on_epoch_end=None, resume: dict | None = None, dist=None) -> list[dict]:
        """Train ``model`` on ``data`` for ``self.epochs`` epochs; returns the per-epoch history.
        ``on_epoch_end``, ``resume`` and ``dist``: see :func:`plotllp.engine.fit_stage`."""
        return fit_stage(self, model, data, self.optim, epochs=self.epochs, evaluator=evaluator, log=log, seed=seed,
                         on_epoch_end=on_epoch_end, resume=resume, dist=dist)
