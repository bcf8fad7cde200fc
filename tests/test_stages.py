"""Stages on any torch.nn.Module, PLOT after a model trained elsewhere, divergence, determinism."""

import numpy as np
import pytest
import torch
from torch import nn

from plotllp.bags import uniform_bags
from plotllp.data import moons
from plotllp.engine import (EpochState, Evaluator, LabelWindow, LLPData, OptimConfig, class_counts, collapse_message,
                            one_class_collapse, predict_proba)
from plotllp.errors import LLPInputError, TrainingDivergedError
from plotllp.losses import sce_target_terms, soft_cross_entropy, symmetric_cross_entropy
from plotllp.ot import pseudo_labels
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


def test_one_class_collapse_is_told_from_bags_of_one_class():
    assert one_class_collapse([100, 0], [50, 50]) == (0, 1.0, 0.5)
    assert one_class_collapse([0, 3, 997], [300, 300, 400]) == (2, 0.997, 0.4)
    assert one_class_collapse([98, 2], [50, 50]) is None                 # under 99%: a poor model, not a constant
    assert one_class_collapse([100, 0], [95, 5]) is None                 # the bags say it is nearly all one class
    assert one_class_collapse([0, 0], [5, 5]) is None and one_class_collapse([7], [7]) is None
    model = TinyNet()
    with torch.no_grad():                                                 # a constant network: class 1 everywhere
        model.b.weight.zero_()
        model.b.bias.copy_(torch.tensor([0.0, 5.0]))
    ds = moons(n_train=200, noise=0.1, seed=1)
    data = LLPData(ds.x_train, uniform_bags(ds.y_train, 20, seed=1), "cpu")
    predicted, expected = class_counts(model, data)
    assert predicted.tolist() == [0.0, 200.0] and torch.allclose(expected, torch.tensor([100.0, 100.0], dtype=torch.float64))
    assert "class 'b' for 100.0% of the training rows, which the bags give 50.0%" in collapse_message(
        one_class_collapse(predicted, expected), ["a", "b"])


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


class Tempered(nn.Module):          # a module of the user's own that reads an attribute in forward
    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(nn.Linear(2, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
        self.temperature = 1.0

    def forward(self, x):
        return self.f(x) / self.temperature


def test_predictions_follow_a_model_that_changes():
    """Folding BatchNorm (on a CPU) never serves a stale trace: a user's own module is not folded by
    default, and a replaced layer is traced again."""
    torch.manual_seed(0)
    x = torch.randn(50, 2)
    m = Tempered()
    m.f[1].running_mean.normal_()
    first = predict_proba(m, x)
    m.temperature = 5.0
    assert torch.allclose(predict_proba(m, x), predict_proba(m, x, fold=False))
    assert not torch.allclose(predict_proba(m, x), first)
    seq = nn.Sequential(nn.Linear(2, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    predict_proba(seq, x)                                      # folded and cached
    seq[3] = nn.Linear(16, 3)
    assert torch.allclose(predict_proba(seq, x), predict_proba(seq, x, fold=False), atol=1e-6)


def test_inputs_and_networks_plotllp_cannot_train_give_one_line_errors(moons_data):
    ds, bags = moons_data
    data = LLPData(ds.x_train, bags, "auto")                  # device names as everywhere else
    with pytest.raises(LLPInputError, match="call model.float"):
        DLLP(1).fit(TinyNet().double(), data, log=None)
    wide = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 4))
    with pytest.raises(LLPInputError, match=r"not to logits of the 2 classes"):
        DLLP(1).fit(wide, data, log=None)
    images = LLPData(np.zeros((len(ds.x_train), 1, 4, 4), np.uint8), bags)
    with pytest.raises(LLPInputError, match="uint8 images"):
        DLLP(1).fit(nn.Sequential(nn.Flatten(), nn.Linear(16, 2)), images, log=None)
    class Scales(nn.Module):                                  # a network that scales its own pixels
        def __init__(self):
            super().__init__()
            self.f = nn.Linear(16, 2)

        def forward(self, x):
            return self.f(x.float().flatten(1) / 255)
    DLLP(1).fit(Scales(), images, log=None)
    features = LLPData(ds.x_train.astype(np.uint8), bags)     # uint8 features (not images) become float32
    assert features.x.dtype == torch.float32
    DLLP(1).fit(TinyNet(), LLPData(torch.from_numpy(ds.x_train).requires_grad_(), bags), log=None)
    model = TinyNet()
    assert torch.allclose(predict_proba(model, torch.from_numpy(ds.x_test).double()),
                          predict_proba(model, ds.x_test))    # float64 tensors, as numpy arrays
    for make in (lambda: DLLP(1, chunk_size=-1), lambda: DLLP(1, chunk_size=2.5), lambda: PLOT(1, reg=-1),
                 lambda: PLOT(1, mixup=True, mixup_alpha=0), lambda: PLOT(1, sce_alpha=0, sce_beta=0)):
        with pytest.raises(LLPInputError):
            make()
    from plotllp.stages import VAT
    with pytest.raises(LLPInputError, match="eps must be a positive number"):
        VAT(1, eps=-1)
    DLLP(1, OptimConfig(lr=np.float32(1e-3)))                  # numpy numbers are numbers


def test_epoch_end_snapshot_resumes_exactly_from_memory_and_the_global_rng_is_left_alone(moons_data):
    ds, bags = moons_data
    data = LLPData(ds.x_train, bags, "cpu")
    torch.manual_seed(0)
    model = TinyNet()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    kept = {}

    def keep(state):
        if state["epoch"] == 2:
            kept.update(state, weights={k: v.clone() for k, v in model.state_dict().items()})

    torch.manual_seed(7)
    expected_draw = torch.rand(2)
    torch.manual_seed(7)
    full = PLOT(4).fit(model, data, log=None, seed=3, on_epoch_end=keep)
    assert torch.equal(torch.rand(2), expected_draw)            # training drew from its own stream
    again = TinyNet()
    again.load_state_dict(kept["weights"])
    resumed = PLOT(4).fit(again, data, log=None, seed=3, resume=kept)
    assert [r["epoch"] for r in resumed] == [1, 2, 3, 4]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in full]
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))
    assert not all(torch.equal(start[k], v) for k, v in model.state_dict().items())


def test_progress_lines_without_an_evaluator(moons_data, capsys):
    ds, bags = moons_data
    DLLP(2).fit(TinyNet(), LLPData(ds.x_train, bags), log=print)
    assert capsys.readouterr().out.count("dllp  epoch") == 2


def test_history_records_the_rate_each_epoch_trained_with(moons_data):
    ds, bags = moons_data
    torch.manual_seed(0)
    data = LLPData(ds.x_train, bags, "cpu")
    history = DLLP(5, OptimConfig(1e-3, halve_every=2)).fit(TinyNet(), data, log=None)
    assert [h["lr"] for h in history] == [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4]


def test_ensemble_vote_breaks_ties_towards_the_latest_labels():
    from plotllp.engine import vote
    latest = torch.eye(3)[[2, 1, 0, 1]]
    ensemble = torch.tensor([[.5, 0, .5], [.5, .5, 0], [.25, .75, 0], [0, .4, .6]])   # rows 0, 1 tie
    assert vote(ensemble, latest).tolist() == [2, 1, 1, 2]


def test_a_resume_starts_the_same_exact_ot_solves_with_a_window_of_one(moons_data):
    """The warm start of the exact OT is kept in the snapshot: with ``ensemble=1`` the label window alone
    could not tell a resumed run when the uninterrupted one starts from its last labels (and where a bag
    has several optimal assignments, that picks which)."""
    ds, bags = moons_data
    data = LLPData(ds.x_train, bags, "cpu")
    kept = {}

    def keep(state):
        if state["epoch"] == 3:
            kept.update(state, weights={k: v.clone() for k, v in model.state_dict().items()})

    torch.manual_seed(0)
    model = TinyNet()
    full = PLOT(6, ensemble=1).fit(model, data, log=None, seed=3, on_epoch_end=keep)
    again = TinyNet()
    again.load_state_dict(kept["weights"])
    resumed = PLOT(6, ensemble=1).fit(again, data, log=None, seed=3, resume=kept)
    assert [r["warm_start"] for r in resumed] == [r["warm_start"] for r in full] and full[3]["warm_start"]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in full]


# -- from a mutation audit: each test below fails on a small bug (named by its tag) that the others let pass --

# E02 / E03: the ensemble is the mean of the last k labels
def test_label_window_mean_of_the_last_k():
    w = LabelWindow(2)
    a, b, c = (torch.full((2, 2), v) for v in (1.0, 2.0, 4.0))
    for t in (a, b, c):
        w.push(t)
    assert torch.equal(w.mean(), torch.full((2, 2), 3.0)) and torch.equal(w.previous, b)


def _tiny_plot_setup():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    x = (rng.normal(size=(120, 4)) + y[:, None]).astype(np.float32)
    data = LLPData(x, uniform_bags(y, 12, num_classes=3, seed=0), "cpu", hidden_labels=y)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    return data, model


# P02: PLOT trains on the mean of its label window (TD_OT_k), not on the latest labels only
def test_plot_trains_on_the_ensemble_of_its_labels():
    data, model = _tiny_plot_setup()
    stage = PLOT(1, labels="hard", loss="ce", ensemble=3, batch_size=10 ** 6)
    stage.begin(model, data)
    q = stage.targets.latest
    g = torch.Generator().manual_seed(0)
    for _ in range(2):                                   # two other one-hot matrices
        stage.targets.push(q[torch.randperm(q.shape[0], generator=g)])
    seen = []
    stage.loss = lambda logits, y: (seen.append(y.clone()), soft_cross_entropy(logits, y))[1]
    stage.train_epoch(model, torch.optim.SGD(model.parameters(), lr=0.0), data, np.random.default_rng(0))
    y = torch.cat(seen)
    assert ((y > 0) & (y < 1)).any()                      # averaged labels, not one-hot
    assert torch.allclose(y.sum(0), stage.targets.mean().sum(0))


def test_plot_sce_steps_use_the_target_terms_of_the_ensemble(monkeypatch):
    """With SCE (no mixup) a step takes its rows of the epoch's target terms, computed once from the mean of
    the label window with the stage's (sce_alpha, sce_beta); every row once per epoch."""
    import plotllp.stages.plot as plot_module
    data, model = _tiny_plot_setup()
    stage = PLOT(1, labels="hard", ensemble=3, batch_size=7, sce_alpha=0.3, sce_beta=2.0)
    stage.begin(model, data)
    q = stage.targets.latest
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        stage.targets.push(q[torch.randperm(q.shape[0], generator=g)])
    seen, real = [], plot_module.sce_from_target_terms
    monkeypatch.setattr(plot_module, "sce_from_target_terms", lambda f, t: (seen.append(t.clone()), real(f, t))[1])
    stage.train_epoch(model, torch.optim.SGD(model.parameters(), lr=0.0), data, np.random.default_rng(0))
    terms, expected = torch.cat(seen), sce_target_terms(stage.targets.mean(), 0.3, 2.0)
    assert len(seen) == -(-data.num_members // 7) and terms.shape == expected.shape
    assert torch.allclose(terms.sum(0), expected.sum(0))
    assert torch.equal(terms.sort(0).values, expected.sort(0).values)


# P03: PLOT's loss passes (sce_alpha, sce_beta) in that order
def test_plot_sce_weights():
    stage = PLOT(1, sce_alpha=0.3, sce_beta=2.0)
    logits, q = torch.randn(5, 3), torch.softmax(torch.randn(5, 3), 1)
    assert torch.allclose(stage.loss(logits, q), symmetric_cross_entropy(logits, q, 0.3, 2.0))


# P04: PLOT draws its mixup lambda with mixup_alpha
def test_plot_mixup_alpha_is_used(monkeypatch):
    import plotllp.stages.plot as plot_module
    alphas = []
    real = plot_module.draw_mixup
    monkeypatch.setattr(plot_module, "draw_mixup", lambda rng, n, alpha=1.0: (alphas.append(alpha), real(rng, n, alpha))[1])
    data, model = _tiny_plot_setup()
    stage = PLOT(1, mixup=True, mixup_alpha=0.4, batch_size=32)
    stage.begin(model, data)
    stage.train_epoch(model, torch.optim.SGD(model.parameters(), lr=0.0), data, np.random.default_rng(0))
    assert alphas and set(alphas) == {0.4}


# P05: PLOT's soft labels use its reg
def test_plot_soft_labels_use_reg():
    data, model = _tiny_plot_setup()
    stage = PLOT(1, labels="soft", reg=0.5)
    stage.begin(model, data)
    probs = predict_proba(model, data.x[data.members])
    ref = pseudo_labels(probs, data.member_bag, data.proportions, hard=False, reg=0.5).float()
    assert torch.allclose(stage.targets.latest, ref, atol=1e-6)


# E06: the ensemble diagnostic breaks ties towards the latest labels (engine.vote)
def test_evaluator_ensemble_accuracy_uses_the_vote():
    data, model = _tiny_plot_setup()
    n = data.num_members
    hidden = data.hidden
    latest = torch.nn.functional.one_hot(hidden, 3).float()
    other = torch.nn.functional.one_hot((hidden + 1) % 3, 3).float()
    ensemble = (latest + other) / 2                      # every row tied between two classes
    ev = Evaluator(None, None, 12, 0, 3, "cpu")
    row = ev(model, data, EpochState(0.0, train_probs=torch.full((n, 3), 1 / 3), ot_labels=latest,
                                     ot_ensemble=ensemble))
    assert row["train_acc_ot_ensemble"] == 1.0


# P01: pseudo_source="predictions" trains on the model's predictions (no OT); OT labels only for diagnostics
def test_predictions_source_targets_are_the_predictions():
    data, model = _tiny_plot_setup()
    stage = PLOT(1, pseudo_source="predictions")
    stage.begin(model, data)
    probs = predict_proba(model, data.x[data.members])
    assert torch.allclose(stage.targets.latest, probs)
    assert not torch.allclose(stage.ot_window.latest, probs)


# P07: soft labels stay soft where the exact OT is overlapped with prediction (the default on CUDA)
def test_plot_soft_labels_with_overlap_are_entropic():
    data, model = _tiny_plot_setup()
    stage = PLOT(1, labels="soft", overlap=True)
    stage.begin(model, data)
    probs = predict_proba(model, data.x[data.members])
    ref = pseudo_labels(probs, data.member_bag, data.proportions, hard=False).float()
    assert torch.allclose(stage.targets.latest, ref, atol=1e-6)


# P09: every input of a PLOT batch is trained on its own (ensemble) target
@pytest.mark.parametrize("loss", ["sce", "ce"])
def test_plot_pairs_each_input_with_its_own_target(monkeypatch, loss):
    import plotllp.stages.plot as plot_module
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    x = np.stack([np.arange(120), rng.normal(size=120)], 1).astype(np.float32)   # column 0: the instance id
    data = LLPData(x, uniform_bags(y, 12, num_classes=3, seed=0), "cpu")
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 3)
    stage = PLOT(1, batch_size=16, loss=loss)
    stage.begin(model, data)
    targets = stage.targets.mean()
    if loss == "sce":                    # a step takes its rows of the epoch's SCE target terms
        targets = sce_target_terms(targets, stage.sce_alpha, stage.sce_beta)
    position = {int(v): p for p, v in enumerate(data.members.tolist())}           # instance id -> member row
    inputs, seen = [], []
    step = stage.step
    stage.step = lambda model, opt, xb, fn: (inputs.append(xb.clone()), step(model, opt, xb, fn))[1]
    if loss == "sce":
        real = plot_module.sce_from_target_terms
        monkeypatch.setattr(plot_module, "sce_from_target_terms", lambda f, t: (seen.append(t.clone()), real(f, t))[1])
    else:
        stage.loss = lambda logits, t: (seen.append(t.clone()), soft_cross_entropy(logits, t))[1]
    stage.train_epoch(model, torch.optim.SGD(model.parameters(), lr=0.0), data, np.random.default_rng(1))
    assert len(inputs) == len(seen) > 1
    for xb, t in zip(inputs, seen):
        assert torch.equal(t, targets[[position[int(v)] for v in xb[:, 0]]])


# -- from a second mutation audit: each test below fails on a small bug that the others let pass --

def test_halve_every_zero_keeps_the_learning_rate_constant():
    """OptimConfig(halve_every=0): no schedule, the rate of every epoch is lr."""

    ds = moons(n_train=200, noise=0.1, seed=1)
    data = LLPData(ds.x_train, uniform_bags(ds.y_train, 20, seed=1), "cpu")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    history = DLLP(3, OptimConfig(1e-3, halve_every=0)).fit(model, data, log=None)
    assert [h["lr"] for h in history] == [1e-3] * 3


def test_collapse_into_a_majority_class_is_still_a_collapse():
    """All rows in a class the bags give 70% of: collapsed (the bags' share must be at most 90%)."""

    assert one_class_collapse([100, 0], [70, 30]) == (0, 1.0, 0.7)
    assert one_class_collapse([0, 995, 5], [5, 89, 6]) == (1, 0.995, 0.89)


def test_predict_proba_leaves_the_models_mode_as_it_was():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    x = torch.randn(10, 3)
    model.eval()
    predict_proba(model, x)
    assert not model.training and not model[1].training
    model.train()
    predict_proba(model, x)
    assert model.training


def test_the_evaluators_own_test_bags_follow_the_bag_seed():
    """Without test_bags, the Evaluator's test bags are uniform bags of bag_size drawn with bag_seed."""

    y = np.arange(100) % 3
    x = np.zeros((100, 2), np.float32)
    ev = Evaluator(x, y, 10, 3, 3, "cpu")
    np.testing.assert_array_equal(ev.test_bags.indices, uniform_bags(y, 10, num_classes=3, seed=3).indices)
