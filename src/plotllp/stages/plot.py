r"""PLOT, the second stage (paper, section 4 and Algorithm 1).

The network of the first stage goes on training on instance-level pseudo-labels:

1. before the first epoch, :math:`Q` is computed from the first-stage model's predictions;
2. each epoch trains on (instance, target) minibatches with symmetric cross-entropy (or CE),
   optionally on mixup of the batch; the target of an instance is the mean of its last ``k``
   pseudo-labels (paper Fig. 3, "TD_OT_5"; ``k = 1`` uses the latest only);
3. after each epoch the training set is predicted and :math:`Q` is recomputed per bag by exact OT
   (hard labels) or entropic OT (soft labels) with cost :math:`-\log p_\theta(k \mid x)`
   (:func:`plotllp.ot.pseudo_labels`).

``pseudo_source="predictions"`` replaces step 3 by the model's own predictions (no OT): the
:math:`L_{CE}` and :math:`L_{SCE}` rows of the paper's Table 3.
"""

from __future__ import annotations

import time

import torch

from ..engine import EpochState, LabelWindow, LLPData, OptimConfig, check_finite, predict_proba
from ..errors import LLPInputError
from ..losses import sample_mixup, soft_cross_entropy, symmetric_cross_entropy
from ..ot import DEFAULT_REG, pseudo_labels
from .base import Stage


class PLOT(Stage):
    """Pseudo-labelling with optimal transport, trained with SCE (and mixup)."""

    name = "plot"

    def __init__(self, epochs: int, optim: OptimConfig | None = None, *, labels: str = "hard", loss: str = "sce",
                 mixup: bool = False, ensemble: int = 5, reg: float = DEFAULT_REG, sce_alpha: float = 0.1,
                 sce_beta: float = 1.0, mixup_alpha: float = 1.0, batch_size: int = 128,
                 pseudo_source: str = "ot", augment=None):
        super().__init__(epochs, optim)
        if labels not in ("hard", "soft"):
            raise LLPInputError(f"labels must be 'hard' or 'soft', got {labels!r}")
        if loss not in ("sce", "ce"):
            raise LLPInputError(f"loss must be 'sce' or 'ce', got {loss!r}")
        if pseudo_source not in ("ot", "predictions"):
            raise LLPInputError(f"pseudo_source must be 'ot' or 'predictions', got {pseudo_source!r}")
        self.hard = labels == "hard"
        self.loss_name = loss
        self.mixup = bool(mixup)
        self.reg = reg
        self.sce_alpha, self.sce_beta = sce_alpha, sce_beta
        self.mixup_alpha = mixup_alpha
        self.batch_size = int(batch_size)
        self.source = pseudo_source
        self.augment = augment
        self.targets = LabelWindow(ensemble)      # what the network is trained on
        self.ot_window = LabelWindow(ensemble)    # OT labels, for the diagnostics

    def _relabel(self, model, data: LLPData):
        t0 = time.perf_counter()
        probs = predict_proba(model, data.x[data.members])
        check_finite(probs, "training-set predictions")
        t1 = time.perf_counter()
        q = pseudo_labels(probs, data.member_bag, data.proportions, hard=self.hard, reg=self.reg).float()
        t2 = time.perf_counter()
        self.ot_window.push(q)
        self.targets.push(q if self.source == "ot" else probs)
        self.timing = {"predict_seconds": t1 - t0, "ot_seconds": t2 - t1}
        return probs, q

    def begin(self, model, data: LLPData) -> None:
        self.targets = LabelWindow(self.targets.k)
        self.ot_window = LabelWindow(self.ot_window.k)
        self._relabel(model, data)

    def state_dict(self) -> dict:
        return {"targets": self.targets.state_dict(), "ot_window": self.ot_window.state_dict()}

    def load_state_dict(self, state: dict, device) -> None:
        self.targets.load_state_dict(state["targets"], device)
        self.ot_window.load_state_dict(state["ot_window"], device)

    def loss(self, logits, targets):
        if self.loss_name == "sce":
            return symmetric_cross_entropy(logits, targets, self.sce_alpha, self.sce_beta)
        return soft_cross_entropy(logits, targets)

    def train_epoch(self, model, optimizer, data: LLPData, rng) -> EpochState:
        targets = self.targets.mean()
        order = torch.from_numpy(rng.permutation(data.num_members)).to(data.device)
        total = torch.zeros((), device=data.device)
        steps = 0
        for i in range(0, data.num_members, self.batch_size):
            pos = order[i:i + self.batch_size]
            x, y = data.x[data.members[pos]], targets[pos]
            if self.augment is not None:
                x = self.augment(x)
            if self.mixup and x.shape[0] > 1:
                x, y = sample_mixup(x.float(), y, rng, self.mixup_alpha)     # uint8 pixels mix as floats
            total += self.step(model, optimizer, x, lambda logits, y=y: self.loss(logits, y))
            steps += 1
        return EpochState(loss=float(total) / max(steps, 1))

    def end_epoch(self, model, data: LLPData, state: EpochState) -> EpochState:
        probs, q = self._relabel(model, data)
        state.train_probs, state.ot_labels, state.ot_ensemble = probs, q, self.ot_window.mean()
        state.extra.update(self.timing)     # seconds of the relabelling pass: prediction, then the OT solve
        return state
