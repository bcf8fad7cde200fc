r"""Losses of the first and second stages, as pure functions of tensors.

- :func:`proportion_loss` -- DLLP (Ardehaly and Culotta, 2017; SPEC section 3): with
  :math:`\bar p_b = \operatorname{clamp}(\tfrac{1}{n_b}\sum_{j \in b} \operatorname{softmax}(f(x_j)),
  10^{-8}, 1 - 10^{-8})`, the loss is :math:`-\tfrac{1}{B}\sum_b \sum_k p_{bk} \log \bar p_{bk}`
  (the KL divergence :math:`KL(p_b \| \bar p_b)` up to a constant). Probabilities are averaged, not
  log-probabilities.
- :func:`symmetric_cross_entropy` -- SCE (Wang et al., 2019; paper equations (8)-(9)):
  :math:`\alpha\, CE + \beta\, RCE` with :math:`CE = -\sum_k q_k \log \operatorname{clamp}(p_k, 10^{-7}, 1)`
  and :math:`RCE = -\sum_k p_k \log \operatorname{clamp}(q_k, 10^{-4}, 1)`; :math:`q` is the
  (pseudo-)label, :math:`p` the prediction. :func:`sce_target_terms` and :func:`sce_from_target_terms`
  are the same loss in two halves, the targets' half computed once for an epoch's targets.
- :func:`soft_cross_entropy` -- plain CE with soft targets, :math:`-\sum_k q_k \log p_k`.
- :func:`mixup` -- Zhang et al. (2018): :math:`\tilde x = \lambda x + (1-\lambda) x_{\pi}`,
  :math:`\tilde y = \lambda y + (1-\lambda) y_{\pi}`, :math:`\lambda \sim \mathrm{Beta}(\alpha, \alpha)`.
- :func:`vat_loss` -- virtual adversarial training (Miyato et al., 2018) as LLP-VAT uses it (Tsai and
  Lin, 2020; SPEC section 3): :math:`KL(p(\cdot|x) \,\|\, p(\cdot|x + r_{adv}))` with
  :math:`r_{adv} = \epsilon\, g / \|g\|`, :math:`g = \nabla_r KL(p(\cdot|x) \| p(\cdot|x + r))|_{r = \xi d}`
  from a random unit direction :math:`d` (one power iteration); :func:`vat_weight` is its ramp.
- :func:`gan_discriminator_loss`, :func:`feature_matching_loss` -- LLP-GAN (Liu et al., 2019; SPEC
  section 3): with :math:`\ell(x) = \log\sum_k e^{f_k(x)}` the real/fake score (the implicit K+1-th
  class), :math:`L_D = -E_{real}[\ell] + E_{real}[\operatorname{softplus}(\ell)] + E_{fake}[\operatorname{softplus}(\ell)]`
  (plus the proportion loss on the real bags); :math:`L_G = \| E_{real}[h(x)] - E_{fake}[h(G(z))] \|^2`
  on the discriminator's penultimate features :math:`h`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .engine import autocast
from .errors import LLPInputError
from .models import frozen_bn_stats

__all__ = ["bag_mean_probs", "proportion_loss", "symmetric_cross_entropy", "sce_target_terms", "sce_from_target_terms",
           "soft_cross_entropy", "mixup", "sample_mixup", "draw_mixup", "vat_loss", "vat_weight", "vat_perturbation",
           "gan_discriminator_loss", "feature_matching_loss"]

PROPORTION_CLAMP = 1e-8
SCE_PRED_CLAMP = 1e-7
SCE_LABEL_CLAMP = 1e-4


def bag_mean_probs(logits: torch.Tensor, bag_index: torch.Tensor, num_bags: int) -> torch.Tensor:
    """(B, K) mean softmax probability of each bag; ``bag_index[j]`` in ``[0, B)`` is row j's bag."""
    probs = torch.softmax(logits.float(), dim=1)
    sums = torch.zeros(num_bags, probs.shape[1], dtype=probs.dtype, device=probs.device)
    sums = sums.index_add(0, bag_index, probs)
    ones = torch.ones(bag_index.shape[0], dtype=probs.dtype, device=probs.device)
    sizes = torch.zeros(num_bags, dtype=probs.dtype, device=probs.device).index_add(0, bag_index, ones)
    return sums / sizes.clamp_min(1)[:, None]     # (index_add, not bincount: no wait for the device on CUDA)


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
    return sce_from_target_terms(logits, sce_target_terms(targets, alpha, beta))


def sce_target_terms(targets: torch.Tensor, alpha: float = 0.1, beta: float = 1.0) -> torch.Tensor:
    r"""SCE's factors that depend on the targets alone, stacked (N, 2, K): :math:`a = -\alpha q` and
    :math:`b = -\beta \log \operatorname{clamp}(q, 10^{-4}, 1)`, so that
    :math:`SCE = \tfrac{1}{N} \sum_{ik} (a_{ik} \log p_{ik} + b_{ik} p_{ik})`. A stage that trains on the
    same targets for a whole epoch computes them once (:func:`sce_from_target_terms`)."""
    q = targets.float()
    return torch.stack((-alpha * q, -beta * torch.log(q.clamp(SCE_LABEL_CLAMP, 1.0))), dim=1)


def sce_from_target_terms(logits: torch.Tensor, terms: torch.Tensor) -> torch.Tensor:
    r""":func:`symmetric_cross_entropy` from its target terms (:func:`sce_target_terms`):
    :math:`\tfrac{1}{N} \sum_{ik} (a_{ik} \log p_{ik} + b_{ik} p_{ik})` with
    :math:`p = \max(\operatorname{softmax}(f), 10^{-7})` (a softmax is at most 1, so the upper clamp is
    none). One sum instead of two, so a step launches half the kernels: on a GPU whose training steps wait
    on the host's launches, that is the difference between PLOT's steps and supervised ones
    (``benchmarks/results/gpu.md``)."""
    pred = torch.softmax(logits.float(), dim=1).clamp_min(SCE_PRED_CLAMP)
    a, b = terms.unbind(1)
    return torch.addcmul(pred * b, torch.log(pred), a).sum() / logits.shape[0]


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with soft targets, ``-sum_k q_k log softmax(f)_k``, averaged over the batch."""
    return -(targets.to(torch.float32) * F.log_softmax(logits.float(), dim=1)).sum(1).mean()


def mixup(x: torch.Tensor, y: torch.Tensor, lam: float, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Convex combination of a batch with a permutation of itself, inputs and targets alike."""
    return lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm]


def draw_mixup(rng, n: int, alpha: float = 1.0) -> tuple[float, np.ndarray]:
    """``lam ~ Beta(alpha, alpha)`` and a random permutation of ``n`` rows, drawn in that order from
    the numpy generator ``rng`` (the mixup reference code's recipe)."""
    return float(rng.beta(alpha, alpha)), rng.permutation(n)


def sample_mixup(x: torch.Tensor, y: torch.Tensor, rng, alpha: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`mixup` with the ``lam`` and permutation of :func:`draw_mixup`."""
    lam, perm = draw_mixup(rng, x.shape[0], alpha)
    return mixup(x, y, lam, torch.from_numpy(perm).to(x.device))


# -- LLP-VAT ---------------------------------------------------------------------------------
VAT_XI = 1e-6
VAT_EPS = 6.0
VAT_WEIGHT = 0.05
VAT_RAMP = 0.4
VAT_NORMALIZE = ("unit", "reference")      # r_adv of norm eps, or LLP-VAT's code's eps g / (||g|| + 1e-8)


def vat_weight(progress: float, max_weight: float = VAT_WEIGHT, ramp: float = VAT_RAMP) -> float:
    """LLP-VAT's weight ramp: ``max_weight * exp(-5 (1 - t)^2)`` with ``t = min(1, progress / ramp)``,
    ``progress`` in [0, 1] the fraction of training done (full weight after the first ``ramp``)."""
    t = 1.0 if ramp <= 0 else min(1.0, max(0.0, progress) / ramp)
    return float(max_weight * math.exp(-5.0 * (1.0 - t) ** 2))


def _unit(d: torch.Tensor, fallback: torch.Tensor | None = None) -> torch.Tensor:
    """Each sample's direction scaled to unit L2 norm (LLP-VAT's ``_l2_normalize``). The gradients of
    the power iteration are tiny (per-sample norms of 1e-17 to 1e-10 at ``xi = 1e-6`` in float32,
    ``benchmarks/results/vat_direction.md``), so each row is first divided by its largest entry, as in
    the VAT authors' code: the reference's ``/ (norm + 1e-8)`` would shrink them far below unit norm.
    Rows that are exactly zero take the row of ``fallback`` (the previous direction)."""
    flat = d.flatten(1)
    tiny = torch.finfo(flat.dtype).tiny
    flat = flat / flat.abs().amax(1, keepdim=True).clamp_min(tiny)
    norm = flat.norm(dim=1, keepdim=True)
    flat = flat / norm.clamp_min(tiny)
    if fallback is not None:
        flat = torch.where(norm > 0, flat, fallback.flatten(1))
    return flat.view_as(d)


def _perturbable(model, x):
    """(network, inputs) where the perturbation is added: after :class:`~plotllp.models.Normalized`'s
    pixel normalisation when the model has one (so ``eps`` is in normalised units, as in the reference
    code), else on the float inputs."""
    if callable(getattr(model, "normalize", None)) and isinstance(getattr(model, "net", None), torch.nn.Module):
        return model.net, model.normalize(x)
    return model, x.float()


def _kl(clean_logp: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(p_clean || softmax(logits)), averaged over the batch (``kl_div(..., reduction="batchmean")``)."""
    return F.kl_div(F.log_softmax(logits.float(), dim=1), clean_logp, reduction="batchmean", log_target=True)


def vat_perturbation(model, x: torch.Tensor, clean_logits: torch.Tensor | None = None, *, xi: float = VAT_XI,
                     eps: float = VAT_EPS, power_iterations: int = 1, normalize: str = "unit") -> torch.Tensor:
    """The virtual adversarial perturbation r_adv (in the space :func:`_perturbable` names): norm ``eps``
    per sample (``normalize="unit"``, VAT's definition), or, with ``normalize="reference"``, LLP-VAT's
    code's ``eps g / (||g|| + 1e-8)``, whose norm is far below ``eps`` (``docs/method.md``). BatchNorm
    running statistics are not updated (:func:`plotllp.models.frozen_bn_stats`); the model's
    parameters receive no gradient. The power iteration runs in float32, autocast off
    (``xi`` is below bf16's resolution), and so does its clean pass: ``clean_logits`` that are not
    float32 (a bf16 training pass under CUDA autocast) are computed again, since the gradient it takes,
    of order ``xi^2``, would drown in the KL between a bf16 and a float32 pass at ``d = 0``."""
    if normalize not in VAT_NORMALIZE:
        raise LLPInputError(f"normalize must be one of {', '.join(VAT_NORMALIZE)}, got {normalize!r}")
    net, inputs = _perturbable(model, x)
    inputs = inputs.detach()
    with frozen_bn_stats(model), torch.autocast(inputs.device.type, enabled=False):
        if clean_logits is None or clean_logits.dtype != torch.float32:
            with torch.no_grad():
                clean_logits = net(inputs)
        clean_logp = F.log_softmax(clean_logits.detach().float(), dim=1)
        d = _unit(torch.rand_like(inputs) - 0.5)
        for _ in range(power_iterations):
            d.requires_grad_(True)
            dist = _kl(clean_logp, net(inputs + xi * d))
            (grad,) = torch.autograd.grad(dist, d)
            d = _unit(grad.detach(), fallback=d.detach()) if normalize == "unit" else _reference_unit(grad.detach())
    return eps * d


def _reference_unit(g: torch.Tensor) -> torch.Tensor:
    """LLP-VAT's code's ``_l2_normalize``: ``g / (||g|| + 1e-8)`` per sample."""
    return g / (g.flatten(1).norm(dim=1).view(-1, *([1] * (g.dim() - 1))) + 1e-8)


def vat_loss(model, x: torch.Tensor, clean_logits: torch.Tensor | None = None, *, xi: float = VAT_XI,
             eps: float = VAT_EPS, power_iterations: int = 1, normalize: str = "unit") -> torch.Tensor:
    """LLP-VAT's consistency loss KL(p(.|x) || p(.|x + r_adv)), batch mean (see the module docstring).

    ``clean_logits``: the model's logits on ``x`` from the training forward pass, used without gradient
    (computed here, without gradient, when not given). BatchNorm statistics stay as they were.
    """
    net, inputs = _perturbable(model, x)
    if clean_logits is None:
        with torch.no_grad(), frozen_bn_stats(model), autocast(inputs.device):
            clean_logits = net(inputs)
    r_adv = vat_perturbation(model, x, clean_logits, xi=xi, eps=eps, power_iterations=power_iterations,
                             normalize=normalize)
    clean_logp = F.log_softmax(clean_logits.detach().float(), dim=1)
    with frozen_bn_stats(model), autocast(inputs.device):
        adv_logits = net(inputs.detach() + r_adv)
    return _kl(clean_logp, adv_logits)


# -- LLP-GAN ---------------------------------------------------------------------------------
def gan_discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """The unsupervised part of LLP-GAN's discriminator loss (module docstring): with
    ``l = logsumexp(logits)``, ``-mean(l_real) + mean(softplus(l_real)) + mean(softplus(l_fake))``.
    (This is ``-log D(x_real) - log(1 - D(G(z)))`` with ``D = e^l / (e^l + 1)``.)"""
    l_real = torch.logsumexp(logits_real.float(), dim=1)
    l_fake = torch.logsumexp(logits_fake.float(), dim=1)
    return -l_real.mean() + F.softplus(l_real).mean() + F.softplus(l_fake).mean()


def feature_matching_loss(features_real: torch.Tensor, features_fake: torch.Tensor) -> torch.Tensor:
    """LLP-GAN's generator loss: the squared distance between the batch means of the discriminator's
    features on real and on generated inputs, ``|| mean(h_real) - mean(h_fake) ||^2``."""
    return (features_real.float().mean(0) - features_fake.float().mean(0)).pow(2).sum()
