"""Where a PLOT training step spends its time that a supervised one does not: both under torch.profiler.

``benchmarks/gpu.py`` found PLOT's training steps (its epoch less the relabelling) as fast as plain
supervised ones with conv-large but about 10% slower with WRN-28-2 on an H100, eager (run 3). This
script trains epochs of each kind on the same network and data (as ``gpu.py`` builds them: instance
batches of 128, augmentation on the device, hard pseudo-labels): supervised, PLOT with SCE, and PLOT
with cross-entropy instead of SCE (``plot-ce``, which separates what the loss costs from the rest of
PLOT's loop). After a warm-up epoch of each, ``--rounds`` epochs of each taking turns give the seconds
per step (median); then one short epoch of each (``--profile-size`` images) runs under
``torch.profiler``, and the operators whose total time differs most between supervised and PLOT are
listed (device time on CUDA, CPU time otherwise; on CUDA the host's operator time too), scaled to the
timed epoch. The relabelling (``end_epoch``) is not profiled.

Run: ``python benchmarks/step_profile.py --model wrn-28-2 --train-size 10240 [--mixup] [--device auto]``;
writes ``benchmarks/results/step_profile_<model>_<device>.md`` (or into ``--out-dir``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import RESULTS, header, write  # noqa: E402
from gpu import synthetic_cifar  # noqa: E402
from throughput import Supervised, sync  # noqa: E402

from plotllp.augment import resolve_augment  # noqa: E402
from plotllp.bags import uniform_bags  # noqa: E402
from plotllp.engine import LLPData, OptimConfig, resolve_device  # noqa: E402
from plotllp.models import build_model  # noqa: E402
from plotllp.stages import PLOT  # noqa: E402


def op_times(prof, cuda: bool) -> dict[str, float]:
    """Total self time (s) per operator name: device time on CUDA, else CPU time."""
    out = {}
    for e in prof.key_averages():
        t = (getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)) if cuda \
            else e.self_cpu_time_total
        if t:
            out[e.key] = out.get(e.key, 0.0) + t / 1e6
    return out


def scale(times: dict[str, float], factor: float) -> dict[str, float]:
    return {k: v * factor for k, v in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="wrn-28-2")
    ap.add_argument("--train-size", type=int, default=10240, help="random CIFAR-shaped training images")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--mixup", action="store_true", help="PLOT with mixup (gpu.py's PLOT has none)")
    ap.add_argument("--profile-size", type=int, default=1280,
                    help="images of the profiled epochs (default 1280: 10 steps; their times are scaled to the "
                         "epoch of --train-size)")
    ap.add_argument("--rounds", type=int, default=3, help="timed epochs of each kind, taking turns (default 3)")
    ap.add_argument("--top", type=int, default=15, help="operators listed")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out-dir", default=RESULTS, help="folder of the result file (default: benchmarks/results)")
    args = ap.parse_args()
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = True
    ds = synthetic_cifar(args.train_size, 16)
    augment = resolve_augment("auto", "cifar10")

    def llp_data(n):
        bags = uniform_bags(ds.y_train[:n], 64, num_classes=10, seed=0)
        return LLPData(ds.x_train[:n], bags, device, hidden_labels=ds.y_train[:n])

    def make_stages():
        return {"supervised": Supervised(1, OptimConfig(), batch_size=args.batch_size, augment=augment),
                "plot": PLOT(1, OptimConfig(), labels="hard", batch_size=args.batch_size, augment=augment,
                             mixup=args.mixup),
                # the same epoch with cross-entropy: what SCE costs apart from the rest of PLOT's loop
                "plot-ce": PLOT(1, OptimConfig(), labels="hard", loss="ce", batch_size=args.batch_size,
                                augment=augment, mixup=args.mixup)}

    data, small = llp_data(args.train_size), llp_data(min(args.profile_size, args.train_size))
    torch.manual_seed(0)
    model = build_model(args.model, ds.input_shape, 10, normalization=ds.normalization).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    stages = make_stages()
    steps = -(-data.num_members // args.batch_size)
    opts = {k: torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.5, 0.999)) for k in stages}
    rngs = {k: np.random.default_rng(0) for k in stages}
    for kind, stage in stages.items():
        stage.begin(model, data)
        stage.train_epoch(model, opts[kind], data, rngs[kind])    # warm-up (cuDNN picks its kernels)
    walls = {k: [] for k in stages}
    for _ in range(args.rounds):                                 # the kinds take turns (a drift falls on all)
        for kind, stage in stages.items():
            sync(device)
            t = time.perf_counter()
            stage.train_epoch(model, opts[kind], data, rngs[kind])
            sync(device)
            walls[kind].append(time.perf_counter() - t)
    # The profiled epochs are short (--profile-size images): summing a long epoch's events takes minutes.
    results = {}
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    psteps = -(-small.num_members // args.batch_size)
    for kind, stage in make_stages().items():
        stage.begin(model, small)
        stage.train_epoch(model, opts[kind], small, rngs[kind])
        with profile(activities=activities) as prof:
            stage.train_epoch(model, opts[kind], small, rngs[kind])
            sync(device)
        results[kind] = {"step_ms": 1000 * float(np.median(walls[kind])) / steps,
                         "ops": scale(op_times(prof, cuda), steps / psteps),
                         "host_ops": scale(op_times(prof, False), steps / psteps)}
        print(f"{kind}: {results[kind]['step_ms']:.2f} ms per step (median of {args.rounds} epochs of {steps} "
              f"steps, not profiled); profiled {'device' if cuda else 'CPU'} time "
              f"{sum(results[kind]['ops'].values()):.3f} s", flush=True)
    what = "device" if cuda else "CPU"
    text = header(f"PLOT and supervised training steps profiled ({args.model}, {device.type})")
    text += (f"\n{data.num_members} random images of CIFAR-10's shape, batches of {args.batch_size}, the median "
             f"of {args.rounds} epochs of each kind (taking turns) after a warm-up epoch, then one short epoch of "
             f"each ({small.num_members} images) profiled, its times scaled to {data.num_members} images; "
             f"PLOT with hard labels, mixup {'on' if args.mixup else 'off'}, SCE (`plot`) or "
             "cross-entropy (`plot-ce`). Wall time well above the device time means the host (Python, kernel "
             "launches) sets the pace.\n\n"
             + "".join(f"- {kind}: {r['step_ms']:.2f} ms per step (wall clock, not profiled); "
                       f"{1000 * sum(r['ops'].values()) / steps:.2f} ms of {what} time per step (profiled)"
                       + (f", {1000 * sum(r['host_ops'].values()) / steps:.2f} ms of the host's operator time"
                          if cuda else "") + "\n" for kind, r in results.items()))
    tables = [("ops", what)] + ([("host_ops", "host (CPU)")] if cuda else [])
    for key, label in tables:
        sup, plo = results["supervised"][key], results["plot"][key]
        names = sorted(set(sup) | set(plo), key=lambda k: -abs(plo.get(k, 0.0) - sup.get(k, 0.0)))[:args.top]
        text += (f"\nOperators by the difference of their total self {label} time over the epoch (s):\n\n"
                 "| operator | supervised | PLOT | PLOT - supervised |\n| --- | --- | --- | --- |\n")
        for k in names:
            text += (f"| `{k}` | {sup.get(k, 0.0):.4f} | {plo.get(k, 0.0):.4f} | "
                     f"{plo.get(k, 0.0) - sup.get(k, 0.0):+.4f} |\n")
    print(text)
    write(f"step_profile_{args.model}_{device.type}.md", text, args.out_dir)


if __name__ == "__main__":
    main()
