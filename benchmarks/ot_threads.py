"""Exact OT pseudo-labels against the number of solver threads, on this machine's CPU.

``plotllp.ot.exact_labels`` solves groups of bags in parallel threads (SciPy's assignment solver
releases the GIL). This times ``pseudo_labels(hard=True)`` on 50,000 instances, 10 classes, bags of
64 (the synthetic case of ``benchmarks/ot_solvers.py``) with 1, 2, 4, ... threads up to the core
count, median of ``--repeats``. Then the warm start of a later PLOT epoch: the same case with its
log-probabilities perturbed (Gaussian noise, chosen so that about 4% of the optimal labels change, as
between two PLOT epochs on Fashion-MNIST), solved from scratch on the CPU and from the unperturbed
optimum (``pseudo_labels(init=)``) on the CPU and, where there is one, on the GPU; the labels of all
three are checked equal. Run: ``python benchmarks/ot_threads.py``; writes
``benchmarks/results/ot_threads.md`` (or ``--out-dir``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import RESULTS, header, make_case  # noqa: E402

import plotllp.ot as plot_ot  # noqa: E402


def timed(fn, repeats):
    """Median and best seconds of ``fn()`` (one untimed call first); waits for a GPU."""
    fn()
    ts = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)), float(min(ts))


def next_epoch(probs, ids, props, changed=0.04, seed=1):
    """``(probs', start, fraction, sigma)``: predictions perturbed (log-probabilities plus Gaussian noise of
    scale ``sigma``) so that a ``fraction`` of at least ``changed`` of the optimal labels move, and the optimum
    of the unperturbed ones (a warm start's situation between two PLOT epochs)."""
    start = plot_ot.pseudo_labels(probs, ids, props, hard=True).argmax(1)
    noise = np.random.default_rng(seed).normal(size=tuple(probs.shape))
    for sigma in (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8):
        moved = torch.softmax(torch.log(probs) + sigma * torch.from_numpy(noise), dim=1)
        frac = float((plot_ot.pseudo_labels(moved, ids, props, hard=True).argmax(1) != start).float().mean())
        if frac >= changed:
            break
    return moved, start, frac, sigma


def warm_rows(probs, ids, props, repeats):
    moved, start, frac, sigma = next_epoch(probs, ids, props)
    cold = plot_ot.pseudo_labels(moved, ids, props, hard=True)
    rows = [("from scratch", "cpu", *timed(lambda: plot_ot.pseudo_labels(moved, ids, props, hard=True), repeats), True)]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        p, s0 = moved.to(dev), start.to(dev)
        warm = plot_ot.pseudo_labels(p, ids, props, hard=True, init=s0)
        same = bool(torch.equal(warm.cpu().to(cold.dtype), cold))
        rows.append(("warm start", dev, *timed(lambda: plot_ot.pseudo_labels(p, ids, props, hard=True, init=s0),
                                               repeats), same))
        print(f"warm start on {dev}: median {rows[-1][2] * 1e3:.1f} ms, labels equal: {same}", flush=True)
    return rows, frac, sigma


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out-dir", default=RESULTS)
    args = ap.parse_args()
    probs, ids, props = make_case(50000, 10, 64)[:3]
    probs = torch.as_tensor(probs)
    cores = os.cpu_count() or 1
    counts = sorted({1, *[2 ** i for i in range(1, 8) if 2 ** i <= cores], cores})
    original = plot_ot._solver_threads
    rows = []
    try:
        for k in counts:
            plot_ot._solver_threads = lambda k=k: k
            plot_ot.pseudo_labels(probs, ids, props, hard=True)          # warm-up (starts the pool)
            ts = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                plot_ot.pseudo_labels(probs, ids, props, hard=True)
                ts.append(time.perf_counter() - t)
            rows.append((k, float(np.median(ts)), float(min(ts))))
            print(f"{k:3d} threads: median {rows[-1][1] * 1e3:.1f} ms, best {rows[-1][2] * 1e3:.1f} ms", flush=True)
    finally:
        plot_ot._solver_threads = original
    warm, frac, sigma = warm_rows(probs, ids, props, args.repeats)
    text = header("Exact OT pseudo-labels against solver threads")
    text += (f"- case: {probs.shape[0]} instances, 10 classes, {int(ids.max()) + 1} bags of 64; median (best) "
             f"of {args.repeats}\n- default here: {original()} threads\n\n| threads | ms (median) | ms (best) |\n"
             "| --- | --- | --- |\n")
    text += "".join(f"| {k} | {med * 1e3:.1f} | {best * 1e3:.1f} |\n" for k, med, best in rows)
    gpu = f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""
    text += (f"\nWarm start (a later PLOT epoch): the log-probabilities perturbed by Gaussian noise (sigma {sigma}), "
             f"{100 * frac:.1f}% of the optimal labels change; {original()} solver threads\n\n"
             "| solve | device | ms (median) | ms (best) | labels equal to the solve from scratch |\n"
             "| --- | --- | --- | --- | --- |\n")
    text += "".join(f"| {kind} | {dev}{gpu if dev == 'cuda' else ''} | {med * 1e3:.1f} | {best * 1e3:.1f} | "
                    f"{'yes' if same else 'NO'} |\n" for kind, dev, med, best, same in warm)
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "ot_threads.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
