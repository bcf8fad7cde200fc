"""Huge bags: DLLP's chunked step gives the same gradients (and the same update) as one pass."""

import copy

import numpy as np
import torch

from plotllp.bags import bags_from_ids
from plotllp.engine import LLPData, OptimConfig
from plotllp.losses import proportion_loss
from plotllp.models import MLP
from plotllp.stages import DLLP


class Capture(torch.optim.SGD):
    """Records the gradients at step time (then steps as SGD)."""

    def step(self, closure=None):
        self.grads = [p.grad.detach().clone() for g in self.param_groups for p in g["params"]]
        return super().step(closure)


def test_chunked_gradients_equal_unchunked():
    torch.manual_seed(0)
    x = torch.randn(1000, 6, dtype=torch.float32)
    local = torch.from_numpy(np.r_[np.zeros(700, int), np.ones(300, int)])       # two bags, unequal
    props = torch.tensor([[0.2, 0.5, 0.3], [0.9, 0.0, 0.1]])
    model = MLP(6, 3, width=16)
    ref = copy.deepcopy(model)
    opt_ref = Capture(ref.parameters(), lr=0.1)
    loss_ref = DLLP.step(ref, opt_ref, x, lambda logits: proportion_loss(logits, local, props))
    opt = Capture(model.parameters(), lr=0.1)
    loss = DLLP(1, chunk_size=64).chunked_step(model, opt, x, local, props)
    assert torch.allclose(loss, loss_ref, rtol=1e-6)
    for a, b in zip(opt.grads, opt_ref.grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
    for a, b in zip(model.parameters(), ref.parameters()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)


def test_a_bag_larger_than_the_chunk_trains():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    ids = np.r_[np.zeros(4000, int), np.ones(1000, int)]
    props = np.array([[np.mean(y[:4000] == 0), np.mean(y[:4000] == 1)], [np.mean(y[4000:] == 0), np.mean(y[4000:] == 1)]])
    data = LLPData(x, bags_from_ids(ids, proportions=props), "cpu")
    torch.manual_seed(0)
    model = MLP(4, 2, width=8)
    hist = DLLP(3, OptimConfig(lr=1e-2), batch_bags=2, chunk_size=512).fit(model, data, log=None)
    assert len(hist) == 3 and all(np.isfinite(h["loss"]) for h in hist)
