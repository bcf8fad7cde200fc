r"""Losses of the first and second stages, as pure functions of tensors.

- :func:`proportion_loss` -- DLLP (Ardehaly and Culotta, 2017; SPEC section 3): with
  :math:`\bar p_b = \operatorname{clamp}(\tfrac{1}{n_b}\sum_{j \in b} \operatorname{softmax}(f(x_j)),
  10^{-8}, 1 - 10^{-8})`, the loss is :math:`-\tfrac{1}{B}\sum_b \sum_k p_{bk} \log \bar p_{bk}`
  (the KL divergence :math:`KL(p_b \| \bar p_b)` up to a constant). Probabilities are averaged, not
  log-probabilities.
- :func:`symmetric_cross_entropy` -- SCE (Wang et al., 2019; paper equations (8)-(9)):
  :math:`\alpha\, CE + \beta\, RCE` with :math:`CE = -\sum_k q_k \log \operatorname{clamp}(p_k, 10^{-7}, 1)`
  and :math:`RCE = -\sum_k p_k \log \operatorname{clamp}(q_k, 10^{-4}, 1)`; :math:`q` is the
  (pseudo-)label, :math:`p` the prediction.
- :func:`soft_cross_entropy` -- plain CE with soft targets, :math:`-\sum_k q_k \log p_k`.
- :func:`mixup` -- Zhang et al. (2018): :math:`\tilde x = \lambda x + (1-\lambda) x_{\pi}`,
  :math:`\tilde y = \lambda y + (1-\lambda) y_{\pi}`, :math:`\lambda \sim \mathrm{Beta}(\alpha, \alpha)`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["bag_mean_probs", "proportion_loss", "symmetric_cross_entropy", "soft_cross_entropy", "mixup",
           "sample_mixup"]

PROPORTION_CLAMP = 1e-8
SCE_PRED_CLAMP = 1e-7
SCE_LABEL_CLAMP = 1e-4


def bag_mean_probs(logits: torch.Tensor, bag_index: torch.Tensor, num_bags: int) -> torch.Tensor:
    """(B, K) mean softmax probability of each bag; ``bag_index[j]`` in ``[0, B)`` is row j's bag."""
    probs = torch.softmax(logits.float(), dim=1)
    sums = torch.zeros(num_bags, probs.shape[1], dtype=probs.dtype, device=probs.device)
    sums = sums.index_add(0, bag_index, probs)
    sizes = torch.bincount(bag_index, minlength=num_bags).clamp_min(1).to(probs.dtype)
    return sums / sizes[:, None]


def proportion_loss(logits: torch.Tensor, bag_index: torch.Tensor, proportions: torch.Tensor) -> torch.Tensor:
    """DLLP proportion loss, averaged over the bags of the batch (see the module docstring).

    ``logits`` (N, K); ``bag_index`` (N,) in ``[0, B)``; ``proportions`` (B, K).
    """
    mean = bag_mean_probs(logits, bag_index, proportions.shape[0])
    mean = mean.clamp(PROPORTION_CLAMP, 1 - PROPORTION_CLAMP)
    return -(proportions.to(mean.dtype) * torch.log(mean)).sum(1).mean()


def symmetric_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.1,
                            beta: float = 1.0) -> torch.Tensor:
    """SCE = alpha * CE + beta * RCE, averaged over the batch; ``targets`` (N, K) rows sum to 1."""
    pred = torch.softmax(logits.float(), dim=1).clamp(SCE_PRED_CLAMP, 1.0)
    targets = targets.to(pred.dtype)
    ce = -(targets * torch.log(pred)).sum(1)
    rce = -(pred * torch.log(targets.clamp(SCE_LABEL_CLAMP, 1.0))).sum(1)
    return (alpha * ce + beta * rce).mean()


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with soft targets, ``-sum_k q_k log softmax(f)_k``, averaged over the batch."""
    return -(targets.to(torch.float32) * F.log_softmax(logits.float(), dim=1)).sum(1).mean()


def mixup(x: torch.Tensor, y: torch.Tensor, lam: float, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Convex combination of a batch with a permutation of itself, inputs and targets alike."""
    return lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm]


def sample_mixup(x: torch.Tensor, y: torch.Tensor, rng, alpha: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`mixup` with ``lam ~ Beta(alpha, alpha)`` and a random permutation drawn from the numpy
    generator ``rng`` (the mixup reference code's recipe)."""
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(x.shape[0])).to(x.device)
    return mixup(x, y, lam, perm)
