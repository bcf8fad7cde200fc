"""Could PLOT's relabelling hide behind training on a GPU? A probe, not a feature.

PLOT predicts the whole training set after every epoch (paper, Algorithm 1) and the next epoch trains on
the labels that the OT makes of those predictions, so in ``plotllp train`` the prediction pass and the
training steps take turns: on H200 machines conv-large's pass (0.22 s for 50,000 CIFAR-10 images) is
about a tenth of a PLOT epoch, which caps PLOT at about 0.91 of supervised throughput
(``benchmarks/results/gpu.md``, run 7). A pipelined PLOT would predict with a copy of the weights an
epoch ends with (the same labels) while the next epoch trains, on bags whose labels are already solved.
Whether that can pay depends on one thing this script measures: how much of a prediction pass a second
CUDA stream hides behind training steps that do not fill the GPU (batches of 128).

On the same network, data and batch, the kinds taking turns round by round (after one warm-up round):

- ``train``: a supervised epoch alone (cross-entropy on the true labels, augmented batches of 128);
- ``predict``: the prediction pass over the training images alone, with a copy of the weights, at each
  ``--predict-batch`` (cuDNN picks each batch's kernels here, on an idle GPU, in the warm-up round);
- ``train + side``: a supervised epoch while the same pass runs on a second CUDA stream, its batches
  launched between the training steps, spread evenly over the epoch;
  with ``--predict-batch`` 1,024 (``predict_proba``'s default on CUDA) and smaller batches, and (on CUDA)
  with the first batch size again, the training steps on a stream of high priority (CUDA's scheduler
  then prefers their blocks to the side pass's).

``hidden`` is ``(train + predict - train_with_side) / predict`` (``predict`` at the side pass's batch): 1
where the pass costs nothing beside the training, 0 where the two only take turns. The side pass's
predictions are compared with the pass alone at the same batch (same weights: the same classes, and
probabilities within bf16's rounding where another stream changes the kernels). The table is written after
every round, so a run stopped by its time limit keeps the rounds it finished. On a CPU there is no second
stream: the side batches run between the steps (``hidden`` near 0), which checks the script only.

Run: ``python benchmarks/relabel_overlap.py [--model conv-large] [--synthetic]``; writes
``relabel_overlap_<device>.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import RESULTS, header, table_head, write  # noqa: E402
from gpu import synthetic_cifar  # noqa: E402
from throughput import sync  # noqa: E402

from plotllp.augment import resolve_augment  # noqa: E402
from plotllp.data import load_dataset  # noqa: E402
from plotllp.engine import autocast, predict_proba, resolve_device  # noqa: E402
from plotllp.losses import soft_cross_entropy  # noqa: E402
from plotllp.models import build_model  # noqa: E402
from plotllp.stages import Stage  # noqa: E402


def side_pass(snapshot, x, batch_size, stream, out):
    """A generator that, on each ``next()``, launches one batch of ``snapshot``'s softmax predictions of
    ``x`` on ``stream`` (the current stream where ``stream`` is None) into ``out``."""
    for i in range(0, x.shape[0], batch_size):
        with (torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()), \
                torch.no_grad(), autocast(x.device):
            out[i:i + batch_size] = torch.softmax(snapshot(x[i:i + batch_size]).float(), dim=1)
        yield


def train_epoch(model, optimizer, x, onehot, augment, rng, batch_size=128, side=None, side_batches=0, stream=None):
    """One supervised epoch (on ``stream`` where given); with ``side`` (a :func:`side_pass` of
    ``side_batches`` batches), its batches launched evenly between the steps (after step ``s`` of ``S``,
    until ``(s + 1) / S`` of them are out)."""
    if stream is not None:
        stream.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(stream):
            train_epoch(model, optimizer, x, onehot, augment, rng, batch_size, side, side_batches)
        torch.cuda.current_stream(x.device).wait_stream(stream)
        return
    order = torch.from_numpy(rng.permutation(x.shape[0])).to(x.device)
    steps, launched = -(-x.shape[0] // batch_size), 0
    for step, i in enumerate(range(0, x.shape[0], batch_size)):
        pos = order[i:i + batch_size]
        xb = augment(x[pos]) if augment is not None else x[pos]
        Stage.step(model, optimizer, xb, lambda logits, y=onehot[pos]: soft_cross_entropy(logits, y))
        while side is not None and launched * steps < (step + 1) * side_batches:
            next(side, None)
            launched += 1
    if side is not None:
        for _ in side:
            pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="conv-large")
    ap.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    ap.add_argument("--synthetic", action="store_true", help="random images of CIFAR-10's shape (speed only)")
    ap.add_argument("--train-size", type=int, default=50000)
    ap.add_argument("--predict-batch", type=int, nargs="+", default=[1024, 256],
                    help="the side pass's images per batch (one row each; 1,024 is predict_proba's on CUDA)")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds, after one warm-up round")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out-dir", default=RESULTS)
    args = ap.parse_args()
    device = resolve_device(args.device)
    torch.backends.cudnn.benchmark = True
    ds = synthetic_cifar(args.train_size, 100) if args.synthetic else load_dataset(
        "cifar10", data_dir=args.data_dir, train_size=args.train_size)
    x = torch.from_numpy(ds.x_train).to(device)
    onehot = torch.nn.functional.one_hot(torch.from_numpy(np.asarray(ds.y_train)).long(), 10).float().to(device)
    augment = resolve_augment("auto", "cifar10")
    torch.manual_seed(0)
    model = build_model(args.model, ds.input_shape, 10, normalization=ds.normalization).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.5, 0.999))
    cuda = device.type == "cuda"
    stream = torch.cuda.Stream(device) if cuda else None
    high = torch.cuda.Stream(device, priority=-1) if cuda else None     # lower numbers: higher priority
    rng = np.random.default_rng(0)
    steps = -(-x.shape[0] // 128)
    variants = {f"train + side {b}": (b, False) for b in args.predict_batch}
    if cuda:
        variants[f"train (high priority) + side {args.predict_batch[0]}"] = (args.predict_batch[0], True)
    kinds = ["train", *(f"predict {b}" for b in args.predict_batch), *variants]
    times = {k: [] for k in kinds}
    agree = {k: [] for k in variants}                # same classes as the pass alone at the same batch
    gap = {k: [] for k in variants}                  # largest probability difference from it

    def report(rounds):
        """Write the table of the medians of ``rounds`` timed rounds; returns its text."""
        med = {k: float(np.median(v)) for k, v in times.items()}
        text = header(f"Prediction pass on a second CUDA stream beside training ({device.type})")
        text += (f"\n{args.model}, {x.shape[0]} {'random images of CIFAR-10 shape' if args.synthetic else 'CIFAR-10 images'}"
                 f", training batches of 128 ({steps} steps), {'bf16 autocast, channels-last, ' if cuda else ''}"
                 f"median of {rounds} round(s) after a warm-up round, the kinds taking turns.\n\n"
                 + table_head("epoch", "seconds", "prediction pass hidden", "same classes as the pass alone",
                              "largest probability difference"))
        text += f"| train alone | {med['train']:.3f} | - | - | - |\n"
        for b in args.predict_batch:
            text += f"| prediction pass alone, batches of {b} | {med[f'predict {b}']:.3f} | - | - | - |\n"
        for k, (b, prioritised) in variants.items():
            hidden = (med["train"] + med[f"predict {b}"] - med[k]) / med[f"predict {b}"]
            text += (f"| train{' (high-priority stream)' if prioritised else ''} + prediction pass on a side stream, "
                     f"batches of {b} | {med[k]:.3f} | {100 * hidden:.0f}% | {100 * min(agree[k]):.2f}% | "
                     f"{max(gap[k]):.1e} |\n")
        text += ("\nHidden: (train alone + prediction alone at the same batch - train with the side pass) / prediction "
                 "alone. The side pass is compared with the pass alone at its batch (same weights; not bit-equal on "
                 "CUDA, where kernels may differ with another stream active). "
                 + ("" if cuda else "On a CPU the side batches run between the steps: this checks the script only.") + "\n")
        write(f"relabel_overlap_{device.type}.md", text, args.out_dir)
        return text

    def timed(fn):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        return time.perf_counter() - t

    for r in range(args.rounds + 1):
        snapshot = copy.deepcopy(model).eval()     # the weights an epoch ended with
        seconds = {"train": timed(lambda: train_epoch(model, optimizer, x, onehot, augment, rng))}
        alone = {}
        for b in args.predict_batch:     # alone first: cuDNN picks each batch's kernels on an idle GPU in round 0
            seconds[f"predict {b}"] = timed(lambda b=b: alone.__setitem__(b, predict_proba(snapshot, x, b, fold=False)))
        for k, (b, prioritised) in variants.items():
            out = torch.empty(x.shape[0], 10, device=device)
            if stream is not None:
                stream.wait_stream(torch.cuda.current_stream(device))   # the snapshot's weights are there
            side = side_pass(snapshot, x, b, stream, out)
            seconds[k] = timed(lambda: train_epoch(model, optimizer, x, onehot, augment, rng, side=side,
                                                   side_batches=-(-x.shape[0] // b),
                                                   stream=high if prioritised else None))
            if not torch.isfinite(out).all():
                raise SystemExit("the side pass gave non-finite predictions")
            agree[k].append(float((out.argmax(1) == alone[b].argmax(1)).float().mean()))
            gap[k].append(float((out - alone[b]).abs().max()))
        if r > 0:                                   # round 0 warms up (cuDNN's algorithm search)
            for k in kinds:
                times[k].append(seconds[k])
            report(r)                               # after every round: a run stopped by its limit keeps them
        print(f"round {r}{' (warm-up)' if r == 0 else ''}: "
              + ", ".join(f"{k} {v:.3f} s" for k, v in seconds.items()), flush=True)
    print(report(args.rounds))


if __name__ == "__main__":
    main()
