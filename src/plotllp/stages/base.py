"""The interface every stage shares.

A stage trains any ``torch.nn.Module`` that maps inputs to logits. It says what one epoch is
(:meth:`Stage.train_epoch`) and what happens around the epochs (:meth:`Stage.begin`,
:meth:`Stage.end_epoch`); :func:`plotllp.engine.fit_stage` owns the loop, the optimiser, the
schedule, evaluation and logging. :meth:`Stage.fit` is the one-call form.
"""

from __future__ import annotations

import torch

from ..engine import EpochState, Evaluator, LLPData, OptimConfig, autocast, fit_stage


class Stage:
    """Base class of first and second stages."""

    name = "stage"

    def __init__(self, epochs: int, optim: OptimConfig | None = None):
        self.epochs = int(epochs)
        self.optim = optim or OptimConfig()

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
        the bags in a random order drawn from ``rng``; inputs augmented when the stage has ``augment``."""
        order = torch.from_numpy(rng.permutation(data.num_bags)).to(data.device)
        for i in range(0, data.num_bags, self.batch_bags):
            sel = order[i:i + self.batch_bags]
            pos, local = data.bag_members(sel)
            x = data.x[data.members[pos]]
            if getattr(self, "augment", None) is not None:
                x = self.augment(x)
            yield x, local, data.proportions[sel]

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
            on_epoch_end=None, resume: dict | None = None) -> list[dict]:
        """Train ``model`` on ``data`` for ``self.epochs`` epochs; returns the per-epoch history.
        ``on_epoch_end`` and ``resume``: see :func:`plotllp.engine.fit_stage`."""
        return fit_stage(self, model, data, self.optim, epochs=self.epochs, evaluator=evaluator, log=log, seed=seed,
                         on_epoch_end=on_epoch_end, resume=resume)
