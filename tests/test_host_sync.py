"""The GPU fast path's promise, checked on the CPU: a training step never makes the host wait for the device.

On CUDA the host waits for every queued kernel when it reads a value (``.item()``, ``float(t)``,
``bool(t)``), when an operator's output size depends on the data (``nonzero``, boolean-mask indexing,
``masked_select``, ``bincount``, ``unique``, ``repeat_interleave`` without ``output_size``), or on
``equal``. These are the same operators on any device, so a dispatch mode sees them in a CPU run.
(Copies to the host, ``.cpu()`` or ``.tolist()``, do nothing on a CPU and go unseen; no stage makes one
per step.) Each stage's epoch may wait only for what its log line reads once at the end (the mean
loss); the relabelling after the epoch (``end_epoch``) is not a training step and is not checked here.
"""

import collections
import traceback

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from plotllp.augment import random_crop_flip
from plotllp.bags import uniform_bags
from plotllp.engine import LLPData
from plotllp.models import MLP, Normalized
from plotllp.stages import DLLP, GAN, PLOT, VAT

WAITING = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.masked_select.default",
           "aten.bincount.default", "aten._unique2.default", "aten.unique_dim.default",
           "aten.unique_consecutive.default", "aten.equal.default", "aten.is_nonzero.default"}


class Waits(TorchDispatchMode):
    """Counts the operators that would make the host wait for a CUDA device, by the source line that
    called them. Adam's reads of its step counters are left out: on CUDA those counters live on the host."""

    def __init__(self):
        super().__init__()
        self.where = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func)
        waits = name in WAITING
        waits |= name == "aten.repeat_interleave.Tensor" and kwargs.get("output_size") is None
        waits |= name.startswith(("aten.index.", "aten.index_put")) and any(
            isinstance(t, torch.Tensor) and t.dtype == torch.bool
            for a in args if isinstance(a, (list, tuple)) for t in a)
        if waits:
            frames = [f for f in traceback.extract_stack() if "plotllp" in f.filename or "torch/optim" in f.filename]
            if not any("torch/optim" in f.filename for f in frames):
                last = frames[-1] if frames else None
                self.where[f"{name} at {last.filename.rsplit('/', 1)[-1]}:{last.lineno}" if last else name] += 1
        return func(*args, **kwargs)


def epoch_waits(stage, model, data):
    """The waits of one training epoch of ``stage`` (after ``begin``), and its number of steps."""
    stage.begin(model, data)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    with Waits() as waits:
        stage.train_epoch(model, optimizer, data, np.random.default_rng(0))
    return waits.where


def features_data(seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 480)
    x = rng.normal(size=(480, 5)).astype(np.float32) + y[:, None]
    return LLPData(x, uniform_bags(y, 16, num_classes=3, seed=seed), "cpu", hidden_labels=y)


def image_data(seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 480)
    x = rng.integers(0, 256, (480, 3, 8, 8), dtype=np.uint8)
    return LLPData(x, uniform_bags(y, 16, num_classes=3, seed=seed), "cpu", hidden_labels=y)


def image_model():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 3))
    return Normalized(net, [0.5] * 3, [0.25] * 3)


# (stage, data, model, reads at the end of the epoch): every stage's epoch has 15 or 30 steps
CASES = {
    "dllp": lambda: (DLLP(1, batch_bags=2, augment=random_crop_flip), image_data(), image_model(), 1),
    "dllp-chunked": lambda: (DLLP(1, batch_bags=2, chunk_size=8), features_data(), MLP(5, 3, width=8), 1),
    "vat": lambda: (VAT(1, batch_bags=2), features_data(), MLP(5, 3, width=8), 2),
    "gan": lambda: (GAN(1, batch_bags=2), features_data(), MLP(5, 3, width=8), 1),
    "plot-hard-mixup": lambda: (PLOT(1, batch_size=16, mixup=True, augment=random_crop_flip), image_data(),
                                image_model(), 1),
    "plot-soft": lambda: (PLOT(1, labels="soft", batch_size=16), features_data(), MLP(5, 3, width=8), 1),
    "plot-predictions": lambda: (PLOT(1, batch_size=16, pseudo_source="predictions", loss="ce"), features_data(),
                                 MLP(5, 3, width=8), 1),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_training_steps_do_not_wait_for_the_device(case):
    torch.manual_seed(0)
    stage, data, model, reads = CASES[case]()
    waits = epoch_waits(stage, model, data)
    assert sum(waits.values()) <= reads, dict(waits)


def test_the_probe_sees_what_waits():
    with Waits() as waits:
        t = torch.arange(6.0)
        float(t.sum())
        t[t > 2]
        torch.repeat_interleave(torch.arange(3), torch.tensor([1, 2, 3]))
        torch.repeat_interleave(torch.arange(3), torch.tensor([1, 2, 3]), output_size=6)
        torch.bincount(torch.tensor([0, 1, 1]))
        t * 2 + 1
    assert sum(waits.where.values()) == 4, dict(waits.where)
