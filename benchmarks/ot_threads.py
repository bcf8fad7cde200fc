"""Exact OT pseudo-labels against the number of solver threads, on this machine's CPU.

``plotllp.ot.exact_labels`` solves groups of bags in parallel threads (SciPy's assignment solver
releases the GIL). This times ``pseudo_labels(hard=True)`` on 50,000 instances, 10 classes, bags of
64 (the synthetic case of ``benchmarks/ot_solvers.py``) with 1, 2, 4, ... threads up to the core
count, median of ``--repeats``. Run: ``python benchmarks/ot_threads.py``; writes
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
    text = header("Exact OT pseudo-labels against solver threads")
    text += (f"- case: {probs.shape[0]} instances, 10 classes, {int(ids.max()) + 1} bags of 64; median (best) "
             f"of {args.repeats}\n- default here: {original()} threads\n\n| threads | ms (median) | ms (best) |\n"
             "| --- | --- | --- |\n")
    text += "".join(f"| {k} | {med * 1e3:.1f} | {best * 1e3:.1f} |\n" for k, med, best in rows)
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "ot_threads.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
