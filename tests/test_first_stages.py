"""LLP-VAT and LLP-GAN: the VAT perturbation and BatchNorm, the GAN losses by hand, which network each
GAN step updates, exact resume of both stages, and `--first-stage {vat,gan}` on every data set."""

import copy
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from plotllp.bags import uniform_bags
from plotllp.engine import LLPData, OptimConfig
from plotllp.losses import (feature_matching_loss, gan_discriminator_loss, vat_loss, vat_perturbation,
                            vat_weight)
from plotllp.models import MLP, Normalized, SmallCNN, build_generator, frozen_bn_stats
from plotllp.stages import GAN, VAT
from plotllp.stages.vat import default_eps


def bn_state(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


def image_model(seed=0):
    torch.manual_seed(seed)
    return Normalized(SmallCNN(3, 4), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def test_vat_perturbation_has_norm_eps_per_sample_in_normalised_space():
    model = image_model().train()
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    r = vat_perturbation(model, x, eps=6.0)
    assert r.shape == (6, 3, 32, 32) and r.dtype == torch.float32
    assert torch.allclose(r.flatten(1).norm(dim=1), torch.full((6,), 6.0), atol=1e-4)
    mlp = MLP(5, 3)
    r = vat_perturbation(mlp, torch.randn(7, 5), eps=0.3)
    assert torch.allclose(r.norm(dim=1), torch.full((7,), 0.3), atol=1e-6)


def test_vat_perturbation_is_adversarial():
    """Along r_adv the prediction moves more than along random directions of the same size."""
    torch.manual_seed(0)
    mlp = MLP(5, 3, width=32).eval()
    x = torch.randn(64, 5)
    clean = F.log_softmax(mlp(x), 1)
    kl = lambda r: F.kl_div(F.log_softmax(mlp(x + r), 1), clean, reduction="batchmean", log_target=True)  # noqa: E731
    adv = kl(vat_perturbation(mlp, x, eps=0.5, xi=1e-6))
    rnd = [torch.randn(64, 5) for _ in range(20)]
    mean_random = sum(kl(0.5 * r / r.norm(dim=1, keepdim=True)) for r in rnd) / 20
    assert adv > 1.5 * mean_random       # the KL's Hessian has rank K - 1 = 2 of 5: at most 2.5x on average


def test_vat_direction_from_a_bf16_clean_pass_is_the_float32_one():
    """On CUDA the training pass's logits (the clean prediction) are bf16; the power iteration must not
    compare them with its float32 perturbed pass, whose KL at d = 0 would then swamp the adversarial term.
    CPU autocast gives the same bf16 logits here. With xi = 1e-3 the float32 direction is the adversarial
    one (benchmarks/results/vat_direction.md)."""
    torch.manual_seed(0)
    mlp = MLP(20, 4, width=64).train()
    x = torch.randn(32, 20)
    with torch.no_grad():
        clean32 = mlp(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            clean16 = mlp(x)
    assert clean16.dtype == torch.bfloat16
    directions = []
    for clean in (clean32, clean16):
        torch.manual_seed(1)
        directions.append(vat_perturbation(mlp, x, clean, xi=1e-3, eps=1.0))
    cos = (directions[0] * directions[1]).sum(1)
    assert cos.min() > 0.999


def test_vat_reference_normalisation_shrinks_the_perturbation_as_llp_vats_code_does():
    """normalize="reference": eps g / (||g|| + 1e-8), the same direction as the unit one but, for a network
    without dropout at xi = 1e-6, a norm of about eps * 1e-9 (benchmarks/results/vat_direction.md)."""
    from plotllp.config import make_config
    from plotllp.errors import LLPInputError
    from plotllp.pipeline import make_first_stage

    torch.manual_seed(0)
    mlp = MLP(20, 4, width=64).train()
    x = torch.randn(32, 20)
    out = {}
    for mode in ("unit", "reference"):
        torch.manual_seed(1)
        out[mode] = vat_perturbation(mlp, x, xi=1e-6, eps=2.0, normalize=mode)
    unit, ref = out["unit"], out["reference"]
    assert torch.allclose(unit.norm(dim=1), torch.full((32,), 2.0), atol=1e-5)
    assert (ref.norm(dim=1) < 2.0 * 1e-3).all()             # rows whose float32 gradient is exactly 0 get 0
    moved = ref.norm(dim=1) > 0
    assert moved.any()
    cos = (unit[moved] * ref[moved]).sum(1) / (unit[moved].norm(dim=1) * ref[moved].norm(dim=1))
    assert cos.min() > 0.9999
    with pytest.raises(LLPInputError, match="normalize must be one of unit, reference"):
        vat_perturbation(mlp, x, normalize="l2")
    with pytest.raises(LLPInputError, match="normalize must be one of unit, reference"):
        VAT(1, normalize="l2")
    stage = make_first_stage(make_config({"dataset": "moons", "first_stage": "vat", "vat_normalize": "reference"}))
    assert isinstance(stage, VAT) and stage.normalize == "reference"


def test_vat_loss_leaves_batchnorm_statistics_and_parameters_unchanged():
    model = image_model().train()
    model(torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8))     # some non-trivial statistics
    before, params = bn_state(model), copy.deepcopy(model.state_dict())
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    loss = vat_loss(model, x, eps=6.0)
    loss.backward()
    assert loss.item() > 0 and all(p.grad is not None for p in model.parameters())
    after = bn_state(model)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(params[k], v) for k, v in model.state_dict().items())
    assert all(m.track_running_stats for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_frozen_bn_stats_restores_flags_after_an_error():
    model = image_model()
    with pytest.raises(RuntimeError), frozen_bn_stats(model):
        raise RuntimeError("boom")
    assert all(m.track_running_stats for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_vat_weight_ramp_and_default_eps():
    assert vat_weight(0.0) == pytest.approx(0.05 * math.exp(-5))
    assert vat_weight(0.2) == pytest.approx(0.05 * math.exp(-5 * 0.25))
    assert vat_weight(0.4) == vat_weight(1.0) == pytest.approx(0.05)
    assert default_eps((3, 32, 32)) == pytest.approx(6.0)
    assert default_eps((1, 28, 28)) == pytest.approx(6.0 * 28 / math.sqrt(3072))


def test_gan_discriminator_loss_by_hand():
    real = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    fake = torch.tensor([[2.0, 0.0]])
    l_r = [math.log(2.0), math.log(math.e + math.exp(-1))]
    l_f = math.log(math.exp(2.0) + 1.0)
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    expected = -(l_r[0] + l_r[1]) / 2 + (sp(l_r[0]) + sp(l_r[1])) / 2 + sp(l_f)
    assert gan_discriminator_loss(real, fake).item() == pytest.approx(expected, rel=1e-6)
    # with D = sigmoid(l): -log D(real) - log(1 - D(fake))
    d_r = [1 / (1 + math.exp(-v)) for v in l_r]
    alt = -(math.log(d_r[0]) + math.log(d_r[1])) / 2 - math.log(1 - 1 / (1 + math.exp(-l_f)))
    assert gan_discriminator_loss(real, fake).item() == pytest.approx(alt, rel=1e-6)


def test_feature_matching_loss_by_hand():
    f_real = torch.tensor([[1.0, 2.0], [3.0, 4.0]])      # mean (2, 3)
    f_fake = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])   # mean (1, 1)
    assert feature_matching_loss(f_real, f_fake).item() == pytest.approx(1.0 + 4.0)


def small_image_data(n=64, k=4, bag=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 3, 16, 16), dtype=np.uint8)
    y = rng.integers(0, k, n)
    return LLPData(x, uniform_bags(y, bag, num_classes=k, seed=seed), "cpu", hidden_labels=y)


def test_generator_step_leaves_the_discriminator_alone_and_the_reverse():
    torch.manual_seed(0)
    data = small_image_data()
    d = Normalized(SmallCNN(3, 4), (0.5,) * 3, (0.25,) * 3).train()
    stage = GAN(1, OptimConfig(lr=1e-3, betas=(0.5, 0.999)), batch_bags=2, z_dim=16)
    stage.begin(d, data)
    opt = torch.optim.Adam(d.parameters(), lr=1e-3)
    x = data.x[:16]
    local = torch.arange(16) // 8
    props = data.proportions[:2]

    d_before, g_before = copy.deepcopy(d.state_dict()), copy.deepcopy(stage.generator.state_dict())
    g_loss = stage.generator_step(d, x)
    assert g_loss.item() >= 0
    assert all(torch.equal(d_before[k], v) for k, v in d.state_dict().items())        # weights and BN buffers
    assert all(p.grad is None for p in d.parameters())
    g_after = stage.generator.state_dict()
    assert any(not torch.equal(g_before[k], g_after[k]) for k in g_before if "weight" in k)

    g_before = copy.deepcopy(stage.generator.state_dict())
    g_params = [p.detach().clone() for p in stage.generator.parameters()]
    stage.discriminator_step(d, opt, x, local, props)
    assert all(torch.equal(a, b) for a, b in zip(g_params, stage.generator.parameters()))
    assert any(not torch.equal(d_before[k], v) for k, v in d.state_dict().items() if "weight" in k)


def test_generators_shapes():
    g = build_generator((3, 32, 32), pixels=True, z_dim=100).eval()
    out = g(torch.rand(5, 100) * 2 - 1)
    assert out.shape == (5, 3, 32, 32) and out.min() >= 0 and out.max() <= 255
    assert build_generator((1, 28, 28), pixels=True).eval()(torch.rand(2, 100)).shape == (2, 1, 28, 28)
    assert build_generator((2,), pixels=False).eval()(torch.rand(3, 100)).shape == (3, 2)
    mlp_pixels = build_generator((1, 28, 28), pixels=True, kind="mlp").eval()(torch.rand(4, 100) * 2 - 1)
    assert mlp_pixels.shape == (4, 1, 28, 28) and mlp_pixels.min() >= 0 and mlp_pixels.max() <= 255
    with pytest.raises(ValueError, match="raw images"):
        build_generator((5,), pixels=False, kind="conv")


def test_gan_discriminator_is_llp_gans():
    """SPEC section 3, as LLP-GAN's public code builds it: every conv "same"-padded (features pooled over
    8x8), leaky ReLU 0.2, no normalisation layers, 64 pooled features."""
    from plotllp.models import GANDiscriminator
    d = GANDiscriminator(3, 10)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (64, 3, 1), (64, 3, 1), (64, 3, 2), (128, 3, 1), (128, 3, 1), (128, 3, 2), (256, 3, 1), (128, 1, 1), (64, 1, 1)]
    assert all(c.padding[0] == c.kernel_size[0] // 2 for c in convs)
    assert d.features[:-2](torch.zeros(2, 3, 32, 32)).shape == (2, 64, 8, 8)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._NormBase) for m in d.modules())
    assert d(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_gan_stage_picks_the_generator_for_the_classifier():
    from plotllp.models import ConvGenerator, MLPGenerator
    data = small_image_data()
    for model, kind, expected in [(Normalized(MLP(768, 4), (0.5,) * 3, (0.25,) * 3), "auto", MLPGenerator),
                                  (image_model(), "auto", ConvGenerator), (image_model(), "mlp", MLPGenerator)]:
        stage = GAN(1, batch_bags=2, generator=kind)
        stage.begin(model, data)
        assert isinstance(stage.generator, expected)


def test_a_gan_stage_object_may_be_reused():
    """Every fit builds its own generator afresh (as DLLP, VAT and PLOT reset their state): a reused stage
    object gives what a new one gives, also on data of another shape."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    data = LLPData(x, uniform_bags(y, 10, num_classes=2, seed=0), "cpu")

    def net(d=2):
        torch.manual_seed(0)
        return MLP(d, 2, width=16)

    stage = GAN(2, batch_bags=3, z_dim=8)
    stage.fit(net(), data, log=None, seed=3)
    reused, fresh = net(), net()
    stage.fit(reused, data, log=None, seed=3)
    GAN(2, batch_bags=3, z_dim=8).fit(fresh, data, log=None, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(reused.state_dict().values(), fresh.state_dict().values()))
    wide = LLPData(np.c_[x, x], uniform_bags(y, 10, num_classes=2, seed=0), "cpu")
    stage.fit(net(4), wide, log=None, seed=3)                    # was a shape error: the old generator was kept


@pytest.mark.parametrize("stage_cls, kw", [(VAT, {"eps": 0.5}), (GAN, {"z_dim": 8})])
def test_stage_resumes_exactly_from_its_state(stage_cls, kw):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    data = LLPData(x, uniform_bags(y, 10, num_classes=2, seed=0), "cpu", hidden_labels=y)

    def fresh():
        torch.manual_seed(1)
        return MLP(2, 2, width=16), stage_cls(4, OptimConfig(lr=1e-2), batch_bags=3, **kw)

    model, stage = fresh()
    saved = {}
    full = stage.fit(model, data, log=None, seed=3,
                     on_epoch_end=lambda loop: saved.setdefault(loop["epoch"], copy.deepcopy(
                         {"loop": loop, "model": model.state_dict()})))
    model2, stage2 = fresh()
    model2.load_state_dict(saved[2]["model"])
    resumed = stage2.fit(model2, data, log=None, seed=3, resume=saved[2]["loop"])
    assert [r["loss"] for r in resumed] == [r["loss"] for r in full]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model2.state_dict().values()))


def cli(*args):
    return subprocess.run([sys.executable, "-m", "plotllp", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("first", ["vat", "gan"])
def test_cli_moons_logs_every_epoch(tmp_path, first):
    r = cli("train", "--dataset", "moons", "--first-stage", first, "--epochs1", "3", "--epochs2", "2",
            "--out", str(tmp_path), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "results.json").read_text())
    rows = [h for h in res["history"] if h["stage"] == first]
    assert len(rows) == 3 and res["first_stage"]["test_accuracy"] > 0.5
    key = "g_loss" if first == "gan" else "vat_loss"
    assert all(math.isfinite(h[key]) for h in rows)
    assert r.stdout.count("gan: D" if first == "gan" else "vat ") >= 3
    assert [h["stage"] for h in res["history"]][-2:] == ["plot", "plot"]


def _datasets(tmp_path):
    from test_data import write_cifar100
    from scipy.io import savemat
    write_cifar100(tmp_path / "c100" / "cifar-100-python", n_train=64, n_test=16)
    rng = np.random.default_rng(0)
    os.makedirs(tmp_path / "svhn")
    for split, n in (("train", 64), ("test", 16)):
        savemat(tmp_path / "svhn" / f"{split}_32x32.mat", {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                                                           "y": rng.integers(1, 11, (n, 1))})
    out = [("moons", []), ("digits", []),
           ("cifar100", ["--data-dir", str(tmp_path / "c100"), "--model", "small-cnn"]),
           ("svhn", ["--data-dir", str(tmp_path / "svhn"), "--model", "gan-d"])]
    from test_configs import write_cifar10
    from test_data import write_idx
    write_cifar10(tmp_path / "c10" / "cifar-10-batches-py")
    out.append(("cifar10", ["--data-dir", str(tmp_path / "c10"), "--model", "small-cnn"]))
    for name in ("mnist", "fashion_mnist"):             # small files in the official IDX layout
        d = tmp_path / name
        os.makedirs(d)
        for split, n in (("train", 64), ("t10k", 16)):
            write_idx(d / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
            write_idx(d / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8))
        out.append((name, ["--data-dir", str(d)] + (["--model", "small-cnn"] if name == "mnist" else [])))
    return out


@pytest.mark.parametrize("first", ["vat", "gan"])
def test_cli_every_dataset(tmp_path, first, capsys):
    from plotllp.cli import main
    for name, extra in _datasets(tmp_path):
        out = tmp_path / f"run_{name}"
        rc = main(["train", "--dataset", name, "--first-stage", first, "--second-stage", "plot", "--epochs1", "1",
                   "--epochs2", "1", "--bag-size", "16", "--batch-size", "64", "--out", str(out), "--device", "cpu",
                   "--quiet", *extra])
        assert rc == 0, f"{name}: {capsys.readouterr().err}"
        res = json.loads((out / "results.json").read_text())
        assert res["config"]["first_stage"] == first and math.isfinite(res["final"]["test_accuracy"]), name
