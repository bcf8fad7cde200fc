"""LLP-VAT's power iteration in float32: how large its gradient is, and whether its direction is one.

VAT (Miyato et al. 2018) finds the adversarial direction by one power iteration: from a random unit
``d``, the gradient ``g`` of ``KL(p(x) || p(x + xi d))`` with respect to ``d``; for a network without
dropout ``g = xi^2 H d + O(xi^3)``, ``H`` the Hessian of the KL at ``r = 0``. The SPEC (section 3, the
LLP-VAT reference code) sets ``xi = 1e-6`` and normalises ``g / (||g|| + 1e-8)``. This measures, on real
images (or two-moons) and networks at their initialisation and after a few DLLP steps:

- the per-sample ``||g||`` at ``xi = 1e-6`` in float32: the reference's perturbation is
  ``eps ||g|| / (||g|| + 1e-8)``, i.e. ``eps`` times the reported ratio; plotllp's is ``eps`` exactly
  (``plotllp.losses._unit``);
- for networks without dropout, the cosine between plotllp's float32 direction
  (``plotllp.losses.vat_perturbation``) at several ``xi`` and the same power iteration in float64 at
  ``xi = 1e-6`` from the same start (the direction the method means; float64 resolves ``xi^2 H d``).
  With dropout the direction depends on the two passes' dropout masks: there the cosine is with the
  float32 direction at ``xi = 1e-6`` under the same masks (does the choice of ``xi`` matter at all).

Run: ``python benchmarks/vat_direction.py`` (about 5 minutes on two CPU cores); writes
``benchmarks/results/vat_direction.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import RESULTS, header, table_head, write  # noqa: E402

from plotllp import losses  # noqa: E402
from plotllp.bags import uniform_bags  # noqa: E402
from plotllp.data import load_dataset  # noqa: E402
from plotllp.engine import LLPData, OptimConfig  # noqa: E402
from plotllp.models import MLP, build_model, frozen_bn_stats  # noqa: E402
from plotllp.stages import DLLP  # noqa: E402

CASES = [("moons", "mlp", 32), ("fashion_mnist", "mlp", 64), ("cifar10", "small-cnn", 64),
         ("cifar10", "wrn-28-2", 64), ("cifar10", "conv-large", 64)]
XIS = (1e-6, 1e-4, 1e-3, 1e-2, 1e-1)
DROPOUT = {"conv-large"}


def power_iteration_float64(net, inputs, start, xi):
    """One power iteration in float64 (``plotllp.losses.vat_perturbation``'s steps, without its float32
    casts): the unit direction per sample."""
    net, inputs = copy.deepcopy(net).double(), inputs.double()
    forward = (lambda z: net.net(z.flatten(1))) if isinstance(net, MLP) else net     # MLP.forward casts to float32
    with frozen_bn_stats(net):
        with torch.no_grad():
            clean = F.log_softmax(forward(inputs), 1)
        d = losses._unit(start.double()).requires_grad_(True)
        dist = F.kl_div(F.log_softmax(forward(inputs + xi * d), 1), clean, reduction="batchmean", log_target=True)
        (g,) = torch.autograd.grad(dist, d)
    return losses._unit(g).flatten(1)


def gradient_norms(net, inputs, start, xi=1e-6):
    """Per-sample ``||g||`` of the float32 power iteration (what the reference normalises)."""
    with frozen_bn_stats(net):
        with torch.no_grad():
            clean = F.log_softmax(net(inputs), 1)
        d = losses._unit(start).requires_grad_(True)
        (g,) = torch.autograd.grad(losses._kl(clean, net(inputs + xi * d)), d)
    return g.flatten(1).norm(dim=1)


def measure(dataset, model_name, batch, dllp_steps, data_dir, log):
    ds = load_dataset(dataset, data_dir=data_dir, seed=0, train_size=4096 if dataset != "moons" else None)
    torch.manual_seed(0)
    model = build_model(model_name, ds.x_train.shape[1:], ds.num_classes, normalization=ds.normalization)
    rows = []
    for steps in (0, dllp_steps):
        if steps:
            bag = 64 if dataset != "moons" else 50
            bags = uniform_bags(ds.y_train, bag, num_classes=ds.num_classes, seed=0)
            data = LLPData(ds.x_train, bags, "cpu")
            torch.manual_seed(1)
            epochs = max(1, -(-steps * 2 // bags.num_bags))         # 2 bags per step, as LLP-VAT's code
            DLLP(epochs=epochs, batch_bags=2, optim=OptimConfig(lr=1e-3 if dataset == "moons" else 1e-4,
                                                                betas=(0.5, 0.999))).fit(model, data)
            steps = epochs * (bags.num_bags // 2)
        model.train()
        x = torch.from_numpy(np.ascontiguousarray(ds.x_train[:batch]))
        net, inputs = losses._perturbable(model, x)
        inputs = inputs.detach()
        torch.manual_seed(3)
        start = torch.rand_like(inputs) - 0.5            # vat_perturbation's first draw after this seed
        row = {"data": dataset, "model": model_name, "dllp_steps": steps, "batch": batch,
               "dropout": model_name in DROPOUT}
        torch.manual_seed(4)
        g = gradient_norms(net, inputs, start)
        row["grad_norm_median"], row["grad_norm_min"], row["grad_norm_max"] = (
            float(g.median()), float(g.min()), float(g.max()))
        row["reference_ratio_median"] = float((g / (g + 1e-8)).median())
        ref = None if row["dropout"] else power_iteration_float64(net, inputs, start, 1e-6)
        for xi in XIS:
            with torch.no_grad(), frozen_bn_stats(net):
                torch.manual_seed(5)                     # with dropout: the same masks for every xi
                clean = net(inputs)
            torch.manual_seed(3)
            d = losses.vat_perturbation(_Wrapped(net), inputs, clean, xi=xi, eps=1.0).flatten(1).double()
            if ref is None:                              # with dropout: against xi = 1e-6, the same masks
                ref = d
            cos = (d * ref).sum(1)
            row[f"cos_{xi:g}"] = (float(cos.median()), float(cos.min()))
        log(json.dumps(row))
        rows.append(row)
    return rows


class _Wrapped(torch.nn.Module):
    """The network behind a model's pixel normalisation, for :func:`plotllp.losses.vat_perturbation` on
    already normalised inputs."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)


def render(rows) -> str:
    text = header("LLP-VAT's power iteration in float32")
    text += ("\nPer-sample norm of the power iteration's gradient at xi = 1e-6 (float32; the reference code's "
             "perturbation is eps times ||g|| / (||g|| + 1e-8), the \"reference / eps\" column; plotllp's is eps), "
             "and for networks without dropout the cosine (median, min over the batch) between plotllp's float32 "
             "direction at each xi and the float64 power iteration at xi = 1e-6 from the same start; for networks with "
             "dropout (whose direction follows the two passes' dropout masks), the cosine with the float32 direction at "
             "xi = 1e-6 drawn with the same masks.\n\n"
             + table_head("data", "network", "DLLP steps", "gradient norm, median (min-max)", "reference / eps",
                          *(f"cos xi={xi:g}" for xi in XIS)))
    for r in rows:
        cos = " | ".join(f"{r[f'cos_{xi:g}'][0]:.3f} ({r[f'cos_{xi:g}'][1]:.2f})" for xi in XIS)
        text += (f"| {r['data']} | {r['model']} | {r['dllp_steps']} | {r['grad_norm_median']:.1e} "
                 f"({r['grad_norm_min']:.1e}-{r['grad_norm_max']:.1e}) | {r['reference_ratio_median']:.1e} | "
                 f"{cos} |\n")
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    ap.add_argument("--dllp-steps", type=int, default=16, help="DLLP steps before the second measurement")
    ap.add_argument("--cases", nargs="+", default=None, help="data:model pairs (default: all)")
    ap.add_argument("--out-dir", default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    cases = CASES if args.cases is None else [c for c in CASES if f"{c[0]}:{c[1]}" in args.cases]
    rows = []
    for dataset, model_name, batch in cases:
        rows += measure(dataset, model_name, batch, args.dllp_steps, args.data_dir, print)
        write("vat_direction.md", render(rows), args.out_dir)
    with open(os.path.join(args.out_dir, "vat_direction.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
