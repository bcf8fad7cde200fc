"""Stages on any torch.nn.Module, PLOT after a model trained elsewhere, divergence, determinism."""

import numpy as np
import pytest
import torch
from torch import nn

from plotllp.bags import uniform_bags
from plotllp.data import moons
from plotllp.engine import Evaluator, LLPData, OptimConfig, predict_proba
from plotllp.errors import LLPInputError, TrainingDivergedError
from plotllp.stages import DLLP, PLOT


@pytest.fixture(scope="module")
def moons_data():
    ds = moons(n_train=1000, noise=0.1, seed=1)
    bags = uniform_bags(ds.y_train, 25, seed=1)
    return ds, bags


class TinyNet(nn.Module):          # not one of plotllp's models: any logits-producing module works
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(2, 32)
        self.b = nn.Linear(32, 2)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def accuracy(model, ds):
    return float((predict_proba(model, torch.from_numpy(ds.x_test)).argmax(1).numpy() == ds.y_test).mean())


def test_dllp_then_plot_on_a_custom_module(moons_data):
    ds, bags = moons_data
    torch.manual_seed(0)
    model = TinyNet()
    data = LLPData(ds.x_train, bags, "cpu", hidden_labels=ds.y_train)
    ev = Evaluator(ds.x_test, ds.y_test, 25, 1, 2, "cpu")
    h1 = DLLP(30, OptimConfig(3e-3), batch_bags=4).fit(model, data, evaluator=ev, log=None)
    assert h1[-1]["test_accuracy"] > 0.8
    h2 = PLOT(10, OptimConfig(1e-3), labels="hard").fit(model, data, evaluator=ev, log=None)
    assert len(h2) == 10 and h2[-1]["test_accuracy"] >= h1[-1]["test_accuracy"] - 0.05
    # the OT labels meet each bag's counts exactly, and the training diagnostics are reported
    assert 0.5 < h2[-1]["train_acc_ot"] <= 1


def test_plot_continues_a_model_trained_elsewhere(moons_data):
    """Model-agnostic: PLOT takes any network as its starting point, here one fit with a few
    supervised steps outside plotllp on a slice of data, then refined by PLOT alone."""
    ds, bags = moons_data
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.from_numpy(ds.x_train[:50]), torch.from_numpy(ds.y_train[:50])
    for _ in range(20):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    before = accuracy(model, ds)
    data = LLPData(ds.x_train, bags, "cpu", hidden_labels=ds.y_train)
    PLOT(15, OptimConfig(3e-3), labels="soft", mixup=False).fit(model, data, log=None)
    assert accuracy(model, ds) >= before - 0.02


def test_plot_initial_labels_meet_the_proportions(moons_data):
    ds, bags = moons_data
    model = TinyNet()
    data = LLPData(ds.x_train, bags, "cpu")
    stage = PLOT(1, labels="hard")
    stage.begin(model, data)
    q = stage.targets.latest.numpy()
    counts = np.zeros((bags.num_bags, 2))
    np.add.at(counts, bags.bag_ids, q)
    assert np.array_equal(counts, bags.counts)


def test_predictions_source_trains_without_ot(moons_data):
    ds, bags = moons_data
    model = TinyNet()
    data = LLPData(ds.x_train, bags, "cpu")
    stage = PLOT(2, labels="hard", loss="ce", pseudo_source="predictions", ensemble=5)
    stage.fit(model, data, log=None)
    # the target is the mean of the model's own predictions (soft), not one-hot OT labels
    assert not torch.all((stage.targets.mean() == 0) | (stage.targets.mean() == 1))
    assert len(stage.targets) == 3


def test_divergence_fails_loudly(moons_data):
    ds, bags = moons_data
    model = TinyNet()
    with torch.no_grad():
        model.a.weight.fill_(float("nan"))
    data = LLPData(ds.x_train, bags, "cpu")
    with pytest.raises(TrainingDivergedError, match="diverged"):
        DLLP(1).fit(model, data, log=None)


def test_runs_are_deterministic(moons_data):
    ds, bags = moons_data
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = TinyNet()
        data = LLPData(ds.x_train, bags, "cpu")
        DLLP(2).fit(model, data, log=None, seed=3)
        PLOT(2, mixup=True).fit(model, data, log=None, seed=4)
        outs.append(predict_proba(model, torch.from_numpy(ds.x_test)))
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("make, msg", [
    (lambda: DLLP(-1), "epochs must be an integer >= 0"),
    (lambda: DLLP(1.5), "epochs must be an integer >= 0"),
    (lambda: DLLP(2, batch_bags=0), "batch_bags must be an integer >= 1"),
    (lambda: PLOT(2, ensemble=0), "ensemble must be an integer >= 1"),
    (lambda: PLOT(2, batch_size=0), "batch_size must be an integer >= 1"),
    (lambda: DLLP(2, OptimConfig(lr=0.0)), "learning rate must be a positive number"),
])
def test_stage_settings_are_checked(make, msg):
    with pytest.raises(LLPInputError, match=msg):
        make()
