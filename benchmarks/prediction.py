"""The prediction pass with and without BatchNorm folded into the convolutions before it.

Every epoch PLOT predicts the whole training set (paper Algorithm 1, line 6) and the evaluator the
test set; ``plotllp.engine.predict_proba`` runs them through ``inference_network`` (BatchNorm folded,
``plotllp.models.folding``). This script times ``predict_proba(..., fold=True)`` against ``fold=False``
on random uint8 images of CIFAR-10's shape (speed does not depend on the pixels), the two taking turns,
and checks that they predict the same classes.

Run: ``python benchmarks/prediction.py [--images 1024] [--repeats 4] [--device auto]``; writes
``benchmarks/results/prediction_<device>.md`` (or into ``--out-dir``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import RESULTS, header, write  # noqa: E402

from plotllp.engine import autocast, predict_proba, resolve_device  # noqa: E402
from plotllp.models import build_model  # noqa: E402
from plotllp.models.folding import fold_batchnorm  # noqa: E402

CIFAR = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["conv-large", "wrn-28-2"])
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=4, help="timed passes of each kind (after one warm-up)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out-dir", default=RESULTS, help="folder of the result file (default: benchmarks/results)")
    args = ap.parse_args()
    device = resolve_device(args.device)
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    x = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, device=device)
    rows = []
    for name in args.models:
        model = build_model(name, (3, 32, 32), 10, normalization=CIFAR).to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        model.train()
        with torch.no_grad(), autocast(device):        # running statistics that are not the initial ones
            for i in range(0, min(args.images, 512), 128):
                model(x[i:i + 128])
        times = {True: [], False: []}
        for fold in (False, True):                      # warm-up (and the one-time trace)
            predict_proba(model, x, fold=fold)
        for _ in range(args.repeats):
            for fold in (False, True):
                sync(device)
                t = time.perf_counter()
                predict_proba(model, x, fold=fold)
                sync(device)
                times[fold].append(time.perf_counter() - t)
        same = float((predict_proba(model, x, fold=True).argmax(1) == predict_proba(model, x, fold=False).argmax(1))
                     .float().mean())
        pairs = len(fold_batchnorm(model).pairs)
        norms = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
        unfolded, folded = float(np.median(times[False])), float(np.median(times[True]))
        rows.append((name, f"{pairs} of {norms}", unfolded, folded, same))
        print(f"{name}: BatchNorm folded {pairs} of {norms}; {args.images} images: not folded {unfolded:.3f} s, "
              f"folded {folded:.3f} s (x{folded / unfolded:.3f}); same class for {100 * same:.2f}%", flush=True)
    text = header(f"Prediction pass with BatchNorm folded ({device.type})")
    text += (f"\n{args.images} random images of CIFAR-10's shape, `predict_proba` (default batch), median of "
             f"{args.repeats} passes each, the two kinds taking turns.\n\n"
             "| network | BatchNorm layers folded | not folded, s | folded, s | folded / not folded | same class |\n"
             "| --- | --- | --- | --- | --- | --- |\n")
    for name, pairs, unfolded, folded, same in rows:
        text += f"| {name} | {pairs} | {unfolded:.3f} | {folded:.3f} | {folded / unfolded:.3f} | {100 * same:.2f}% |\n"
    layer = per_channel_seconds(device)
    text += ("\nWhat a folded layer does instead of BatchNorm: a convolution's bias is added after it by a separate "
             "elementwise operation; both on one activation of conv-large's first block (1024 x 128 x 32 x 32, "
             f"bf16, {'channels-last' if device.type == 'cuda' else 'contiguous'}), median of 20, ms:\n\n"
             + "".join(f"- {k}: {1000 * v:.3f}\n" for k, v in layer.items()))
    print(text)
    write(f"prediction_{device.type}.md", text, args.out_dir)


def per_channel_seconds(device, repeats: int = 20) -> dict[str, float]:
    """Seconds of BatchNorm in eval mode against a per-channel bias added in place, on one activation."""
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    z = torch.randn(1024, 128, 32, 32, device=device, dtype=torch.bfloat16).contiguous(memory_format=fmt)
    mean, var, w, b = (torch.rand(128, device=device) for _ in range(4))
    ops = {"BatchNorm (eval)": lambda: torch.nn.functional.batch_norm(z, mean, var, w, b, False),
           "bias added in place (a convolution's bias)": lambda: z.add_(b.to(z.dtype).view(1, -1, 1, 1))}
    out = {}
    for name, op in ops.items():
        op()
        ts = []
        for _ in range(repeats):
            sync(device)
            t = time.perf_counter()
            op()
            sync(device)
            ts.append(time.perf_counter() - t)
        out[name] = float(np.median(ts))
    return out


if __name__ == "__main__":
    main()
