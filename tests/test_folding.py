"""BatchNorm folded into the layer before it for prediction (plotllp.models.folding, engine.inference_network)."""

import copy
import gc
import weakref

import pytest
import torch
from torch import nn

from plotllp.engine import inference_network, predict_proba
from plotllp.models import build_model
from plotllp.models.folding import fold_batchnorm

NORMALIZATION = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def _trained_statistics(model, x, steps=3):
    """Give the BatchNorm layers non-trivial running statistics and affine weights."""
    model.train()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
        for _ in range(steps):
            model(x)
    return model


@pytest.mark.parametrize("name, pairs", [("conv-large", 9), ("wrn-28-2", 13), ("small-cnn", None)])
def test_folded_network_predicts_what_the_network_does(name, pairs):
    torch.manual_seed(0)
    x = torch.randint(0, 256, (48, 3, 32, 32), dtype=torch.uint8)
    model = _trained_statistics(build_model(name, (3, 32, 32), 10, normalization=NORMALIZATION), x)
    folded = fold_batchnorm(model)
    norms = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if pairs is not None:
        assert len(folded.pairs) == pairs
    assert 0 < len(folded.pairs) <= norms
    model.eval()
    with torch.no_grad():
        expected = model(x)
        got = folded.network.eval()(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    # the live network keeps its BatchNorm layers and weights; the folded layers have their own
    assert sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()) == norms
    assert all(f.weight is not layer.weight and not f.weight.requires_grad for layer, _, f in folded.pairs)


def test_predict_proba_follows_the_weights_after_training():
    """The folded weights are refreshed from the live network on every prediction pass."""
    torch.manual_seed(1)
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    model = _trained_statistics(build_model("small-cnn", (3, 32, 32), 10, normalization=NORMALIZATION), x)
    first = predict_proba(model, x)
    net = inference_network(model)
    assert net is not model
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    for _ in range(3):                                  # weights and running statistics change
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), torch.arange(64) % 10).backward()
        opt.step()
    second = predict_proba(model, x)
    assert model.training                               # the mode is restored
    assert inference_network(model) is net              # traced once per model
    model.eval()
    with torch.no_grad():
        expected = torch.softmax(model(x), 1)
    torch.testing.assert_close(second, expected, rtol=1e-4, atol=1e-5)
    assert (second - first).abs().max() > 1e-3
    key = weakref.ref(model)
    del model, opt, net
    gc.collect()
    assert key() is None                                # the cache does not keep a model alive


def test_nothing_to_fold_and_untraceable_modules():
    mlp = build_model("mlp", (2,), 2)
    assert inference_network(mlp) is mlp                # no BatchNorm: the model itself

    class Branchy(nn.Module):                           # control flow on the input: not traceable as a whole
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))

        def forward(self, x):
            return self.body(x) if x.sum() > -1e9 else -self.body(x)

    torch.manual_seed(2)
    x = torch.randn(32, 4)
    model = Branchy()
    model.train()
    model(x)
    folded = fold_batchnorm(model)
    assert len(folded.pairs) == 1 and folded.network is not model
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(folded.network.eval()(x), model(x), rtol=1e-5, atol=1e-5)
    assert isinstance(model.body[1], nn.BatchNorm1d)    # the live network keeps its layers


def test_a_layer_whose_output_is_used_twice_is_not_folded():
    class TwoUses(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)

        def forward(self, x):
            z = self.conv(x)
            return self.bn(z) + z

    assert fold_batchnorm(TwoUses()).pairs == []


@pytest.mark.filterwarnings("ignore::DeprecationWarning")          # torch.jit.script, deprecated in torch 2.13
def test_scripted_and_wrapped_networks_are_left_as_they_are():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    scripted = torch.jit.script(net)
    assert fold_batchnorm(scripted).network is scripted
    wrapped = nn.DataParallel(copy.deepcopy(net))   # (with one GPU, DataParallel moves its module there)
    assert fold_batchnorm(wrapped).network is wrapped
    x = torch.randn(2, 3, 8, 8)
    net.eval()
    torch.testing.assert_close(predict_proba(scripted, x), predict_proba(net, x, fold=False))


def test_predict_proba_folds_by_default_on_a_cpu_only(monkeypatch):
    """``fold=None`` folds on a CPU and not on CUDA (where folding was slower on an H100): seen through
    which network ``predict_proba`` asks :func:`inference_network` for."""
    import plotllp.engine

    asked = []
    monkeypatch.setattr(plotllp.engine, "inference_network", lambda m: asked.append(m) or m)
    model = build_model("small-cnn", (3, 32, 32), 10)
    x = torch.zeros(4, 3, 32, 32)
    predict_proba(model, x)
    assert asked == [model]
    predict_proba(model, x, fold=False)
    assert asked == [model]

    class CudaLooking(torch.Tensor):      # a CPU tensor that says it is on CUDA
        @property
        def is_cuda(self):
            return True

    predict_proba(model, x.as_subclass(CudaLooking))
    assert asked == [model]                # not asked again: no folding on CUDA by default


@pytest.mark.parametrize("batch_size", [1, 3, 7, 10, 64])
def test_predict_proba_in_batches_is_the_softmax_of_the_whole(batch_size):
    """Batches that divide the rows or not, one row a batch or all at once: every row's probabilities are
    the network's softmax of that row (written into one output, batch by batch)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.randn(10, 5)
    got = predict_proba(net, x, batch_size=batch_size)
    assert got.shape == (10, 3) and got.dtype == torch.float32
    torch.testing.assert_close(got, torch.softmax(net(x), dim=1).detach())
    assert predict_proba(net, x[:0]).numel() == 0
