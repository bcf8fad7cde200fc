"""Two-moons in the paper's setting (40 bags of 50 points): DLLP vs DLLP + PLOT.

For noise 0.1 and 0.2 and 5 seeds (each seed draws its own data, bags and initialisation), two
first-stage regimes are compared:

- ``full``: DLLP trained to convergence (``--epochs1`` epochs);
- ``early``: DLLP stopped early (``--early-epochs`` epochs), a weaker first stage, as PLOT meets when
  the first stage is cut short;

each followed by PLOT with hard or soft labels, with and without mixup, continuing the same
first-stage network. Test accuracy: mean and std over the seeds.

Settings are chosen on held-out bags, never on the test set: the number of PLOT epochs (from
``--epochs2-grid``) is picked per (noise, regime, labels, mixup) by the mean bag-level proportion
error (MAE) on 4 held-out bags of the 40, averaged over the seeds and over ``--val-splits`` different
held-out draws per seed, with training on the other 36 bags. The
reported runs then train on all 40 bags with the chosen setting.

Run: ``python benchmarks/moons.py``; writes ``benchmarks/results/moons.md``.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import header, write  # noqa: E402

from plotllp.bags import uniform_bags  # noqa: E402
from plotllp.data import moons  # noqa: E402
from plotllp.engine import Evaluator, LLPData, OptimConfig, predict_proba  # noqa: E402
from plotllp.models import MLP  # noqa: E402
from plotllp.stages import DLLP, PLOT  # noqa: E402

VARIANTS = [("hard", False), ("soft", False), ("hard", True), ("soft", True)]


def test_accuracy(model, ds):
    x = torch.from_numpy(ds.x_test)
    return float((predict_proba(model, x).argmax(1).numpy() == ds.y_test).mean())


def val_mae(model, val: LLPData):
    p = predict_proba(model, val.x[val.members])
    return Evaluator.bag_mae(p, val.member_bag, val.proportions)


class Checkpoints:
    """Evaluator stand-in: keeps a copy of the model at the epochs asked for."""

    def __init__(self, epochs):
        self.epochs, self.models = set(epochs), {}
        self.epoch = 0

    def __call__(self, model, data, state):
        self.epoch += 1
        if self.epoch in self.epochs:
            self.models[self.epoch] = copy.deepcopy(model)
        return {"test_accuracy": float("nan"), "bag_mae": float("nan")}


def run_first(ds, bags, epochs, seed, args):
    torch.manual_seed(seed)
    model = MLP(2, 2, width=args.width, depth=3)
    data = LLPData(ds.x_train, bags, "cpu", hidden_labels=ds.y_train)
    DLLP(epochs, OptimConfig(args.lr), batch_bags=args.batch_bags).fit(model, data, log=None, seed=seed)
    return model, data


def run_plot(model0, data, labels, mixup, epochs_list, seed, args):
    model = copy.deepcopy(model0)
    ck = Checkpoints(epochs_list)
    PLOT(max(epochs_list), OptimConfig(args.lr), labels=labels, loss="sce", mixup=mixup,
         batch_size=args.batch_size).fit(model, data, evaluator=ck, log=None, seed=seed + 1)
    return ck.models


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--noises", type=float, nargs="+", default=[0.1, 0.2])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs1", type=int, default=200, help="DLLP epochs of the full first stage")
    ap.add_argument("--early-epochs", type=int, default=5, help="DLLP epochs of the early-stopped first stage")
    ap.add_argument("--epochs2-grid", type=int, nargs="+", default=[10, 25, 50, 100])
    ap.add_argument("--val-splits", type=int, default=2,
                    help="held-out splits per seed for the selection (4 other bags each time)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--batch-bags", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(1)
    text = header("Two-moons: DLLP vs DLLP + PLOT (40 bags of 50, 5 seeds)")   # provenance of the code that runs
    t_start = time.time()
    regimes = {"full": args.epochs1, "early": args.early_epochs}
    grid = sorted(args.epochs2_grid)
    chosen, table = {}, {}
    for noise in args.noises:
        # 1. selection on held-out bags: train on 36 bags, score PLOT epochs by the 4 held-out bags' MAE
        scores = {}
        for seed, split in itertools.product(range(args.seeds), range(args.val_splits)):
            ds = moons(n_train=2000, noise=noise, seed=seed)
            tr_bags, va_bags = uniform_bags(ds.y_train, 50, seed=seed).split(0.1, seed=1000 * split + seed)
            val = LLPData(ds.x_train, va_bags, "cpu")
            for regime, e1 in regimes.items():
                m0, data = run_first(ds, tr_bags, e1, seed, args)
                for labels, mixup in VARIANTS:
                    models = run_plot(m0, data, labels, mixup, grid, seed, args)
                    for e2, m in models.items():
                        scores.setdefault((regime, labels, mixup, e2), []).append(val_mae(m, val))
        for regime, (labels, mixup) in itertools.product(regimes, VARIANTS):
            best = min(grid, key=lambda e2: np.mean(scores[(regime, labels, mixup, e2)]))
            chosen[(noise, regime, labels, mixup)] = best
        print(f"noise {noise}: chosen PLOT epochs {dict((k[1:], v) for k, v in chosen.items() if k[0] == noise)} "
              f"({time.time() - t_start:.0f}s)", flush=True)
        # 2. reported runs: all 40 bags, chosen settings, test accuracy
        for seed in range(args.seeds):
            ds = moons(n_train=2000, noise=noise, seed=seed)
            bags = uniform_bags(ds.y_train, 50, seed=seed)
            for regime, e1 in regimes.items():
                m0, data = run_first(ds, bags, e1, seed, args)
                table.setdefault((noise, regime, "DLLP"), []).append(test_accuracy(m0, ds))
                for labels, mixup in VARIANTS:
                    e2 = chosen[(noise, regime, labels, mixup)]
                    m = run_plot(m0, data, labels, mixup, [e2], seed, args)[e2]
                    name = f"DLLP + PLOT ({labels}{', mixup' if mixup else ''})"
                    table.setdefault((noise, regime, name), []).append(test_accuracy(m, ds))
        print(f"noise {noise}: done ({time.time() - t_start:.0f}s)", flush=True)

    text += (f"\nTest accuracy (%) on 2000 independent test points, mean (std) over {args.seeds} seeds; each seed "
             f"draws its own data, bags and initialisation. MLP with 3 hidden ReLU layers of {args.width}, Adam lr "
             f"{args.lr}; DLLP {args.batch_bags} bags per step; PLOT {args.batch_size} instances per step, SCE "
             f"(alpha 0.1, beta 1.0), ensemble of the last 5 OT labels. First stage: `full` = {args.epochs1} DLLP "
             f"epochs, `early` = {args.early_epochs}. PLOT epochs chosen from {grid} by the proportion error on 4 "
             f"held-out bags (training on the other 36; {args.val_splits} draws of held-out bags per seed), never on the "
             f"test set; chosen values in brackets.\n")
    for noise in args.noises:
        text += f"\n## noise {noise}\n\n| method | first stage `full` | first stage `early` |\n| --- | --- | --- |\n"
        names = ["DLLP"] + [f"DLLP + PLOT ({lab}{', mixup' if mix else ''})" for lab, mix in VARIANTS]
        for name in names:
            cells = []
            for regime in regimes:
                v = 100 * np.array(table[(noise, regime, name)])
                cell = f"{v.mean():.2f} ({v.std():.2f})"
                if name != "DLLP":
                    lab = "soft" if "soft" in name else "hard"
                    cell += f" [{chosen[(noise, regime, lab, 'mixup' in name)]}]"
                cells.append(cell)
            text += f"| {name} | {' | '.join(cells)} |\n"
    text += f"\nTotal time: {time.time() - t_start:.0f}s.\n"
    write("moons.md", text)
    print(text)


if __name__ == "__main__":
    main()
