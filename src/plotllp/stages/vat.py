"""LLP-VAT first stage (Tsai and Lin, 2020): the proportion loss plus virtual adversarial training.

Each step draws ``batch_bags`` whole bags and minimises

.. math::  L = L_{prop} + w(t)\\, KL\\big(p(\\cdot|x) \\,\\|\\, p(\\cdot|x + r_{adv})\\big),

:math:`w(t) = 0.05\\, e^{-5 (1 - \\min(1, t / 0.4))^2}` with :math:`t` the fraction of training done
(:func:`plotllp.losses.vat_weight`), :math:`r_{adv}` from one power iteration (:func:`plotllp.losses.vat_loss`;
xi 1e-6, eps 6.0 on normalised CIFAR pixels in the reference code; SPEC section 3).
"""

from __future__ import annotations

import math

import torch

from ..engine import EpochState, LLPData, OptimConfig
from ..errors import LLPInputError, TrainingDivergedError
from ..losses import VAT_EPS, VAT_NORMALIZE, VAT_RAMP, VAT_WEIGHT, VAT_XI, proportion_loss, vat_loss, vat_weight
from .base import Stage, count_setting, positive_setting

#: Input size the reference eps = 6.0 belongs to (32 x 32 x 3 normalised pixels).
REFERENCE_DIM = 3 * 32 * 32


def default_eps(input_shape) -> float:
    """The reference eps, 6.0 for 3072 normalised pixels, scaled to other input sizes so that the
    perturbation's size per coordinate stays the same: ``6.0 * sqrt(d / 3072)`` (MNIST: 3.0, a
    2-feature table: 0.15)."""
    return VAT_EPS * math.sqrt(math.prod(input_shape) / REFERENCE_DIM)


class VAT(Stage):
    """LLP-VAT on any classifier (module docstring). ``eps=None``: :func:`default_eps` of the inputs."""

    name = "vat"

    def __init__(self, epochs: int, optim: OptimConfig | None = None, *, batch_bags: int = 4, augment=None,
                 xi: float = VAT_XI, eps: float | None = None, power_iterations: int = 1,
                 max_weight: float = VAT_WEIGHT, ramp: float = VAT_RAMP, normalize: str = "unit"):
        super().__init__(epochs, optim)
        self.batch_bags, self.augment = count_setting("batch_bags", batch_bags), augment
        self.xi = positive_setting("xi", xi)
        self.eps = None if eps is None else positive_setting("eps", eps)
        self.power_iterations = count_setting("power_iterations", power_iterations)
        self.max_weight = positive_setting("max_weight", max_weight, allow_zero=True)
        self.ramp = positive_setting("ramp", ramp, allow_zero=True)
        if self.ramp > 1:
            raise LLPInputError(f"ramp must be in [0, 1], got {ramp!r}")
        if normalize not in VAT_NORMALIZE:
            raise LLPInputError(f"normalize must be one of {', '.join(VAT_NORMALIZE)}, got {normalize!r}")
        self.normalize = normalize
        self.epochs_done = 0

    def begin(self, model, data: LLPData) -> None:
        self.epochs_done = 0

    def state_dict(self) -> dict:
        return {"epochs_done": self.epochs_done}

    def load_state_dict(self, state: dict, device) -> None:
        self.epochs_done = int(state["epochs_done"])

    def train_epoch(self, model, optimizer, data: LLPData, rng) -> EpochState:
        eps = default_eps(data.x.shape[1:]) if self.eps is None else float(self.eps)
        steps = self.bag_steps(data)
        total = torch.zeros((), device=data.device)
        total_vat = torch.zeros((), device=data.device)
        for s, (x, local, props) in enumerate(self.bag_batches(data, rng)):
            w = vat_weight((self.epochs_done + s / steps) / max(self.epochs, 1), self.max_weight, self.ramp)
            parts = {}

            def loss_fn(logits, x=x, local=local, props=props, w=w, parts=parts):
                parts["vat"] = vat_loss(model, x, logits, xi=self.xi, eps=eps, power_iterations=self.power_iterations,
                                        normalize=self.normalize)
                return proportion_loss(logits, local, props) + w * parts["vat"]

            total += self.step(model, optimizer, x, loss_fn)
            total_vat += parts["vat"].detach()
        self.epochs_done += 1
        vat_mean = float(total_vat) / max(steps, 1)
        if not math.isfinite(vat_mean):
            raise TrainingDivergedError(f"vat: the VAT loss is {vat_mean}; training diverged (try a lower learning "
                                        f"rate or a smaller --vat-eps)")
        return EpochState(loss=float(total) / max(steps, 1),
                          extra={"vat_loss": vat_mean, "vat_weight": w, "vat_eps": eps})
