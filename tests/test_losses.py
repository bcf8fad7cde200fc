import math

import numpy as np
import pytest
import torch

from plotllp.losses import (bag_mean_probs, draw_mixup, mixup, proportion_loss, sample_mixup, soft_cross_entropy,
                            symmetric_cross_entropy)


def test_proportion_loss_hand_computed():
    # two bags: rows 0,1 in bag 0 and row 2 in bag 1
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0], [0.0, 100.0]])
    bag = torch.tensor([0, 0, 1])
    props = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    # bag 0: mean of (0.5, 0.5) and (0.75, 0.25) = (0.625, 0.375); bag 1: (~0, ~1) clamped to 1e-8
    want0 = -(0.5 * math.log(0.625) + 0.5 * math.log(0.375))
    want1 = -math.log(1e-8)
    got = proportion_loss(logits, bag, props)
    assert abs(float(got) - (want0 + want1) / 2) < 1e-5
    assert torch.allclose(bag_mean_probs(logits, bag, 2)[0], torch.tensor([0.625, 0.375]))


def test_proportion_loss_minimum_at_matching_proportions():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]], requires_grad=True)
    props = bag_mean_probs(logits.detach(), torch.tensor([0, 0]), 1)
    loss = proportion_loss(logits, torch.tensor([0, 0]), props)
    loss.backward()
    assert logits.grad.abs().max() < 1e-6


def test_sce_hand_computed():
    logits = torch.tensor([[math.log(0.7), math.log(0.2), math.log(0.1)]])
    q = torch.tensor([[0.0, 1.0, 0.0]])
    ce = -math.log(0.2)
    rce = -(0.7 * math.log(1e-4) + 0.2 * math.log(1.0) + 0.1 * math.log(1e-4))
    got = symmetric_cross_entropy(logits, q, alpha=0.1, beta=1.0)
    assert abs(float(got) - (0.1 * ce + 1.0 * rce)) < 1e-5
    got = symmetric_cross_entropy(logits, q, alpha=6.0, beta=0.1)
    assert abs(float(got) - (6.0 * ce + 0.1 * rce)) < 1e-4


def test_sce_clamps_prediction_at_1e7():
    logits = torch.tensor([[0.0, -200.0]])
    q = torch.tensor([[0.0, 1.0]])
    ce = -math.log(1e-7)
    rce = -(1.0 * math.log(1e-4))      # p = (1, 1e-7): 1 * log(1e-4) + 1e-7 * log(1)
    got = symmetric_cross_entropy(logits, q, alpha=1.0, beta=1.0)
    assert abs(float(got) - (ce + rce)) < 1e-3


def test_soft_cross_entropy_hand_computed():
    logits = torch.tensor([[math.log(0.25), math.log(0.75)]])
    q = torch.tensor([[0.4, 0.6]])
    want = -(0.4 * math.log(0.25) + 0.6 * math.log(0.75))
    assert abs(float(soft_cross_entropy(logits, q)) - want) < 1e-6


def test_mixup_hand_computed_and_sampled():
    x = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    xm, ym = mixup(x, y, 0.25, torch.tensor([1, 0]))
    assert torch.allclose(xm, torch.tensor([[0.25, 2.25], [0.75, 0.75]]))
    assert torch.allclose(ym, torch.tensor([[0.25, 0.75], [0.75, 0.25]]))
    xs, ys = sample_mixup(x, y, np.random.default_rng(0))
    assert torch.allclose(ys.sum(1), torch.ones(2))
    # y is the identity, so the mixed targets are the weights of the mixed inputs: the same lambda
    assert torch.allclose(xs, ys @ x)


# -- from a mutation audit: each test below fails on a small bug (named by its tag) that the others let pass --

# L04 / L06: the second-stage losses are batch means (a sum scales the step by the batch size)
def test_sce_and_ce_are_means_over_the_batch():
    torch.manual_seed(0)
    logits = torch.randn(6, 4)
    q = torch.softmax(torch.randn(6, 4), 1)
    rows_sce = torch.stack([symmetric_cross_entropy(logits[i:i + 1], q[i:i + 1], 0.3, 2.0) for i in range(6)])
    rows_ce = torch.stack([soft_cross_entropy(logits[i:i + 1], q[i:i + 1]) for i in range(6)])
    assert torch.allclose(symmetric_cross_entropy(logits, q, 0.3, 2.0), rows_sce.mean())
    assert torch.allclose(soft_cross_entropy(logits, q), rows_ce.mean())


# L07: lambda ~ Beta(alpha, alpha) for alpha != 1 too
def test_draw_mixup_uses_symmetric_beta():
    lam, perm = draw_mixup(np.random.default_rng(0), 5, alpha=0.2)
    ref = np.random.default_rng(0)
    assert lam == ref.beta(0.2, 0.2) and np.array_equal(perm, ref.permutation(5))


# L10: VAT's power iteration starts from a random direction centred on 0 (signs of both kinds)
def test_vat_random_start_is_centred():
    from plotllp.losses import vat_perturbation
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(50, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    r = vat_perturbation(mlp, torch.randn(64, 50), eps=1.0, power_iterations=0)
    assert torch.allclose(r.norm(dim=1), torch.ones(64), atol=1e-5)
    assert abs(float(r.mean())) < 0.02 and float((r > 0).float().mean()) == pytest.approx(0.5, abs=0.05)


def test_sce_in_two_halves_equals_its_definition_in_value_and_gradient():
    """sce_target_terms + sce_from_target_terms (what PLOT's steps use) against SCE written as the SCE
    reference code does (two clamped sums): equal values and gradients, where the 1e-7 clamp binds too."""
    from plotllp.losses import sce_from_target_terms, sce_target_terms

    def reference(logits, q, alpha, beta):
        p = torch.softmax(logits, 1).clamp(1e-7, 1.0)
        ce = -(q * torch.log(p)).sum(1)
        rce = -(p * torch.log(q.clamp(1e-4, 1.0))).sum(1)
        return (alpha * ce + beta * rce).mean()

    g = torch.Generator().manual_seed(0)
    for scale, alpha, beta in ((1.0, 0.1, 1.0), (40.0, 6.0, 0.1), (300.0, 0.3, 2.0)):   # 300: p below 1e-7
        logits = (scale * torch.randn(16, 5, generator=g)).requires_grad_()
        q = torch.softmax(3 * torch.randn(16, 5, generator=g), 1)
        q[::2] = torch.nn.functional.one_hot(q[::2].argmax(1), 5).float()
        want = reference(logits, q, alpha, beta)
        got = sce_from_target_terms(logits, sce_target_terms(q, alpha, beta))
        (gw,), (gg,) = torch.autograd.grad(want, logits), torch.autograd.grad(got, logits)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(gg, gw, rtol=1e-5, atol=1e-8)
        assert torch.equal(sce_target_terms(q, alpha, beta)[:, 0], -alpha * q)
