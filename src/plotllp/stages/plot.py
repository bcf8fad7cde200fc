r"""PLOT, the second stage (paper, section 4 and Algorithm 1).

The network of the first stage goes on training on instance-level pseudo-labels:

1. before the first epoch, :math:`Q` is computed from the first-stage model's predictions;
2. each epoch trains on (instance, target) minibatches with symmetric cross-entropy (or CE),
   optionally on mixup of the batch; the target of an instance is the mean of its last ``k``
   pseudo-labels (paper Fig. 3, "TD_OT_5"; ``k = 1`` uses the latest only);
3. after each epoch the training set is predicted and :math:`Q` is recomputed per bag by exact OT
   (hard labels) or entropic OT (soft labels) with cost :math:`-\log p_\theta(k \mid x)`
   (:func:`plotllp.ot.pseudo_labels`); the exact OT starts from the previous epoch's labels when few
   rows changed the epoch before (:func:`plotllp.ot.improve_assignment`; the labels are the same),
   except on CUDA, where it is solved afresh on the CPU while the GPU predicts the next bags.

``pseudo_source="predictions"`` replaces step 3 by the model's own predictions (no OT): the
:math:`L_{CE}` and :math:`L_{SCE}` rows of the paper's Table 3.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..engine import (EpochState, LabelWindow, LLPData, OptimConfig, check_finite, overlapped_exact_labels,
                      predict_proba)
from ..errors import LLPInputError
from ..losses import (draw_mixup, mixup, sce_from_target_terms, sce_target_terms, soft_cross_entropy,
                      symmetric_cross_entropy)
from ..ot import DEFAULT_REG, WarmStart, pseudo_labels
from .base import Stage, count_setting, flag_setting, positive_setting


class PLOT(Stage):
    """Pseudo-labelling with optimal transport, trained with SCE (and mixup)."""

    name = "plot"

    def __init__(self, epochs: int, optim: OptimConfig | None = None, *, labels: str = "hard", loss: str = "sce",
                 mixup: bool = False, ensemble: int = 5, reg: float = DEFAULT_REG, sce_alpha: float = 0.1,
                 sce_beta: float = 1.0, mixup_alpha: float = 1.0, batch_size: int = 128,
                 pseudo_source: str = "ot", augment=None, overlap: bool | None = None):
        super().__init__(epochs, optim)
        if labels not in ("hard", "soft"):
            raise LLPInputError(f"labels must be 'hard' or 'soft', got {labels!r}")
        if loss not in ("sce", "ce"):
            raise LLPInputError(f"loss must be 'sce' or 'ce', got {loss!r}")
        if pseudo_source not in ("ot", "predictions"):
            raise LLPInputError(f"pseudo_source must be 'ot' or 'predictions', got {pseudo_source!r}")
        self.hard = labels == "hard"
        self.loss_name = loss
        self.mixup = flag_setting("mixup", mixup)
        self.reg = positive_setting("reg", reg)
        self.sce_alpha = positive_setting("sce_alpha", sce_alpha, allow_zero=True)
        self.sce_beta = positive_setting("sce_beta", sce_beta, allow_zero=True)
        if loss == "sce" and self.sce_alpha == 0 and self.sce_beta == 0:
            raise LLPInputError("sce_alpha and sce_beta are both 0: the SCE loss would be 0")
        self.mixup_alpha = positive_setting("mixup_alpha", mixup_alpha)
        self.batch_size = count_setting("batch_size", batch_size)
        self.source = pseudo_source
        self.augment = augment
        self.overlap = overlap                    # None: overlap the exact OT with prediction on CUDA
        ensemble = count_setting("ensemble", ensemble)
        self.targets = LabelWindow(ensemble)      # what the network is trained on
        self.ot_window = LabelWindow(ensemble)    # OT labels, for the diagnostics
        self.warm_start = WarmStart()             # off CUDA: when to start the exact OT from the last labels

    def _relabel(self, model, data: LLPData):
        t0 = time.perf_counter()
        # On CUDA the exact OT is solved afresh on the CPU while the GPU predicts the next bags: on an H100
        # that added 16-20 ms to the epoch, where the warm start on the GPU took 25 ms (benchmarks/results/gpu.md).
        overlap = self.overlap if self.overlap is not None else data.device.type == "cuda"
        init = None
        if self.hard and self.source == "ot" and overlap:
            probs, q, ot_seconds = overlapped_exact_labels(model, data)
            t2 = time.perf_counter()
            t1 = t2 - ot_seconds                  # the solves ran while the device predicted the next bags
        else:
            probs = predict_proba(model, data.x[data.members])
            check_finite(probs, "training-set predictions")
            t1 = time.perf_counter()
            init = self.warm_start.init(probs) if self.hard else None
            q = pseudo_labels(probs, data.member_bag, data.proportions, hard=self.hard, reg=self.reg,
                              init=init).float()
            if self.hard:
                self.warm_start.record(q, probs)
            t2 = time.perf_counter()
        self.ot_window.push(q)
        self.targets.push(q if self.source == "ot" else probs)
        self.timing = {"predict_seconds": t1 - t0, "ot_seconds": t2 - t1, "relabel_seconds": t2 - t0,
                       "warm_start": init is not None}
        return probs, q

    def begin(self, model, data: LLPData) -> None:
        self.targets = LabelWindow(self.targets.k)
        self.ot_window = LabelWindow(self.ot_window.k)
        self.warm_start = WarmStart()
        self._relabel(model, data)

    def state_dict(self) -> dict:
        return {"targets": self.targets.state_dict(), "ot_window": self.ot_window.state_dict(),
                **self.warm_start.state_dict()}

    def load_state_dict(self, state: dict, device) -> None:
        self.targets.load_state_dict(state["targets"], device)
        self.ot_window.load_state_dict(state["ot_window"], device)
        self.warm_start = WarmStart.restored(state, self.ot_window, device)

    def _epoch_targets(self, targets: torch.Tensor):
        """``(rows, loss)``: what a step indexes by row and the loss it takes them with. SCE's target terms
        (:func:`plotllp.losses.sce_target_terms`) once per epoch when the epoch's targets are what it trains
        on; with mixup (which mixes the targets) or CE, the targets and :meth:`loss`."""
        if self.loss_name == "sce" and not self.mixup:
            return sce_target_terms(targets, self.sce_alpha, self.sce_beta), sce_from_target_terms
        return targets, self.loss

    def loss(self, logits, targets):
        if self.loss_name == "sce":
            return symmetric_cross_entropy(logits, targets, self.sce_alpha, self.sce_beta)
        return soft_cross_entropy(logits, targets)

    def train_epoch(self, model, optimizer, data: LLPData, rng) -> EpochState:
        per_row, loss = self._epoch_targets(self.targets.mean())
        n = max(data.num_members, data.epoch_members)
        order = data.epoch_order(data.num_members, n, rng)
        starts = range(0, n, self.batch_size)
        mixes = self._mixup_draws(starts, n, rng, data.device) if self.mixup else None
        total = torch.zeros((), device=data.device)
        for step, i in enumerate(starts):
            pos = order[i:i + self.batch_size]
            x, y = data.x[data.members[pos]], per_row[pos]
            if self.augment is not None:
                x = self.augment(x)
            if mixes is not None and mixes[step] is not None:
                lam, perm = mixes[step]
                x, y = mixup(x.float(), y, lam, perm)           # uint8 pixels mix as floats
            total += self.step(model, optimizer, x, lambda logits, y=y: loss(logits, y))
        return EpochState(loss=float(total) / max(len(starts), 1))

    def _mixup_draws(self, starts, n, rng, device):
        """Each step's mixup ``(lam, permutation)`` (:func:`plotllp.losses.draw_mixup`, in step order),
        the permutations moved to the device in one copy so that no step waits for the host."""
        draws = [draw_mixup(rng, b, self.mixup_alpha) if b > 1 else None
                 for b in (min(self.batch_size, n - i) for i in starts)]
        perms = [perm for _, perm in filter(None, draws)]
        if not perms:
            return draws
        pieces = iter(torch.from_numpy(np.concatenate(perms)).to(device).split([p.size for p in perms]))
        return [(d[0], next(pieces)) if d is not None else None for d in draws]

    def end_epoch(self, model, data: LLPData, state: EpochState) -> EpochState:
        probs, q = self._relabel(model, data)
        state.train_probs, state.ot_labels, state.ot_ensemble = probs, q, self.ot_window.mean()
        state.extra.update(self.timing)     # seconds of the relabelling pass: prediction, then the OT solve
        return state
