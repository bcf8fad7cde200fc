"""Cost of a PLOT epoch against a plain supervised epoch, side by side in one run.

Same network, batch size, augmentation and data: a supervised epoch (cross-entropy on the true
labels) and a PLOT epoch (training on pseudo-labels with SCE, the pass that predicts the training
set, the per-bag OT solve, the bookkeeping). What PLOT adds is one extra forward pass over the training
set, without autograd and in larger batches, so less than a third of a training epoch (the committed
reports measured 1.31x). Also reported: the OT solve's share of the PLOT epoch.

As in ``plotllp train``, PLOT continues a network trained by a first stage (``--first-epochs`` DLLP
epochs, untimed), so its pseudo-labels settle from epoch to epoch as they do in a real run (the exact
OT's warm start depends on that); ``--first-epochs 0`` starts PLOT from a random network.

Run: ``python benchmarks/throughput.py [--dataset fashion_mnist --model mlp] [--epochs 3]``;
writes ``benchmarks/results/throughput_<dataset>_<model>.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import header, write  # noqa: E402

import plotllp.stages.plot as plot_module  # noqa: E402
from plotllp.augment import resolve_augment  # noqa: E402
from plotllp.bags import uniform_bags  # noqa: E402
from plotllp.data import load_dataset  # noqa: E402
from plotllp.engine import EpochState, LLPData, OptimConfig, resolve_device  # noqa: E402
from plotllp.losses import soft_cross_entropy  # noqa: E402
from plotllp.models import build_model  # noqa: E402
from plotllp.stages import DLLP, PLOT, Stage  # noqa: E402


class Supervised(Stage):
    """Cross-entropy on the true labels, instance minibatches: the baseline epoch."""

    name = "supervised"

    def __init__(self, epochs, optim=None, *, batch_size=128, augment=None):
        super().__init__(epochs, optim)
        self.batch_size, self.augment = batch_size, augment

    def train_epoch(self, model, optimizer, data, rng):
        onehot = torch.nn.functional.one_hot(data.hidden, data.num_classes).float()
        order = torch.from_numpy(rng.permutation(data.num_members)).to(data.device)
        total = torch.zeros((), device=data.device)
        for i in range(0, data.num_members, self.batch_size):
            pos = order[i:i + self.batch_size]
            x, y = data.x[data.members[pos]], onehot[pos]
            if self.augment is not None:
                x = self.augment(x)
            total += self.step(model, optimizer, x, lambda logits, y=y: soft_cross_entropy(logits, y))
        return EpochState(loss=float(total))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--train-size", type=int, default=None)
    ap.add_argument("--bag-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--labels", default="hard", choices=["hard", "soft"])
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs of each kind (after one warm-up epoch)")
    ap.add_argument("--first-epochs", type=int, default=3, help="untimed DLLP epochs before PLOT (default 3)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    text = header(f"PLOT epoch vs supervised epoch: {args.dataset}, {args.model}")
    device = resolve_device(args.device)
    ds = load_dataset(args.dataset, data_dir=args.data_dir, train_size=args.train_size)
    bags = uniform_bags(ds.y_train, args.bag_size, num_classes=ds.num_classes, seed=0)
    data = LLPData(ds.x_train, bags, device, hidden_labels=ds.y_train)
    augment = resolve_augment("auto", args.dataset) if ds.is_image else None
    ot_seconds = []
    real = plot_module.pseudo_labels

    def timed_pseudo_labels(*a, **k):
        sync(device)
        t = time.perf_counter()
        out = real(*a, **k)
        sync(device)
        ot_seconds.append(time.perf_counter() - t)
        return out

    plot_module.pseudo_labels = timed_pseudo_labels
    runs = {}
    for kind in ("supervised", "plot"):
        torch.manual_seed(0)
        model = build_model(args.model, ds.input_shape, ds.num_classes, width=args.width,
                            normalization=ds.normalization).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        if kind == "supervised":
            stage = Supervised(1, OptimConfig(), batch_size=args.batch_size, augment=augment)
        else:
            first = DLLP(1, OptimConfig(), batch_bags=max(1, args.batch_size // args.bag_size), augment=augment)
            first.begin(model, data)
            first_rng = np.random.default_rng(1)
            for _ in range(args.first_epochs):                  # untimed: the first stage PLOT continues
                first.end_epoch(model, data, first.train_epoch(model, opt, data, first_rng))
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)  # a new optimiser, as plotllp train's stage 2
            stage = PLOT(1, OptimConfig(), labels=args.labels, batch_size=args.batch_size, augment=augment)
        stage.begin(model, data)
        runs[kind] = (stage, model, opt, np.random.default_rng(0), [], [])
    for epoch in range(args.epochs + 1):          # epochs of the two kinds alternate, so drift hits both alike
        for kind, (stage, model, opt, rng, times, ots) in runs.items():
            ot_seconds.clear()
            sync(device)
            t = time.perf_counter()
            state = stage.train_epoch(model, opt, data, rng)
            stage.end_epoch(model, data, state)
            sync(device)
            if epoch > 0:                         # the first epoch warms up
                times.append(time.perf_counter() - t)
                ots.append(sum(ot_seconds))
    rows = {}
    for kind, (_, _, _, _, times, ots) in runs.items():
        rows[kind] = (float(np.median(times)), float(np.median(ots)))
        print(f"{kind}: {rows[kind][0]:.3f} s/epoch (OT {rows[kind][1]:.3f} s)", flush=True)
    sup, (plot, ot) = rows["supervised"][0], rows["plot"]
    text += (f"\n{data.num_members} training instances in {bags.num_bags} bags of {args.bag_size}; batch "
             f"{args.batch_size}; {args.labels} labels; device {device}; PLOT continues {args.first_epochs} DLLP "
             f"epochs; median of {args.epochs} epochs after a warm-up epoch, the epochs of the two kinds alternating.\n\n"
             "| epoch | seconds | ratio to supervised |\n| --- | --- | --- |\n"
             f"| supervised (CE on true labels) | {sup:.3f} | 1.00x |\n"
             f"| PLOT (train + predict + OT + bookkeeping) | {plot:.3f} | {plot / sup:.2f}x |\n"
             f"| of which the OT solve | {ot:.3f} | {100 * ot / plot:.1f}% of the PLOT epoch |\n")
    write(f"throughput_{args.dataset}_{args.model}.md", text)
    print(text)


if __name__ == "__main__":
    main()
