"""LLP-VAT with the reference's xi = 1e-6 against xi = 1e-3, on held-out bags and on the test set.

``benchmarks/vat_direction.py`` measured that in float32, at xi = 1e-6, the power iteration's direction
is rounding noise for networks without dropout (median cosine with the float64 direction -0.03 to 0.09
on images, 0.46-0.61 on two-moons; xi = 1e-3: 0.998 or more). This trains LLP-VAT (and PLOT after it)
with both on Fashion-MNIST in the setting of ``benchmarks/first_stages.py`` (MLP 3 x 256, no dropout;
bags of 64 and 256; 15 + 10 epochs; 10% of the bags held out; eps 3.0; Adam lr 1e-3; the same seeds,
bags and initialisation for both xi), so that the choice of xi rests on the held-out bags' proportion
error (bag MAE at each stage's selected epoch), with the test accuracy beside it.

Run: ``python benchmarks/vat_xi.py`` (about 15 minutes on two CPU cores, two runs at a time); writes
``benchmarks/results/vat_xi.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import RESULTS, commit, header, mean_std, write  # noqa: E402
from first_stages import DATA, STAGE_OPTIM  # noqa: E402

XIS = (1e-6, 1e-3)


def one(args):
    """One run in its own process (one thread): the first stage's and PLOT's selected epochs."""
    settings, tag = args
    import torch

    torch.set_num_threads(1)
    from plotllp.config import make_config
    from plotllp.pipeline import train

    cfg = make_config({**settings, "out": os.path.join("runs", "bench_vat_xi", tag), "quiet": True})
    t0 = time.perf_counter()
    hist = train(cfg, log=lambda *a: None, write=False).results["history"]
    out = {"tag": tag, "commit": commit(), "wall": time.perf_counter() - t0}
    for stage, key in (("vat", "first"), ("plot", "plot")):
        rows = [r for r in hist if r["stage"] == stage]
        best = min(rows, key=lambda r: r["val_bag_mae"])        # held-out bags only
        out[f"{key}_val_mae"], out[f"{key}_sel"], out[f"{key}_last"] = (
            best["val_bag_mae"], best["test_accuracy"], rows[-1]["test_accuracy"])
    print(f"{tag}: LLP-VAT val MAE {out['first_val_mae']:.4f} test {100 * out['first_sel']:.2f} -> PLOT val MAE "
          f"{out['plot_val_mae']:.4f} test {100 * out['plot_sel']:.2f} [{out['wall']:.0f}s]", flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=DATA)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--bag-sizes", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    jobs = []
    for bag in args.bag_sizes:
        for seed in range(args.seeds):
            for xi in XIS:
                settings = {"dataset": "fashion_mnist", "data_dir": os.path.join(args.data_dir, "fashion_mnist"),
                            "model": "mlp", "width": 256, "bag_size": bag, "batch_bags": max(1, 256 // bag),
                            "batch_size": 128, "epochs1": 15, "epochs2": 10, "first_stage": "vat",
                            **STAGE_OPTIM["vat"], "lr2": 1e-3, "val_fraction": 0.1, "seed": seed, "bag_seed": seed,
                            "vat_xi": xi}
                jobs.append((settings, f"b{bag}_xi{xi:g}_s{seed}"))
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(one, jobs))
    wall = time.perf_counter() - t0
    with open(os.path.join(RESULTS, "vat_xi.json"), "w") as f:
        json.dump(runs, f, indent=1)
    text = header("LLP-VAT: xi = 1e-6 (the reference) against 1e-3")
    text += (f"\nFashion-MNIST, MLP 3 x 256 (no dropout), eps 3.0, {args.seeds} seeds (the same bags, held-out "
             f"split and initialisation for both xi); each stage's epoch selected on 10% held-out bags (lowest bag "
             f"MAE). Held-out bag MAE and test accuracy % at that epoch, mean (std) over seeds. Wall time "
             f"{wall / 60:.1f} min.\n\n| bag | xi | LLP-VAT held-out MAE | LLP-VAT test acc. | + PLOT held-out MAE "
             "| + PLOT test acc. |\n| --- | --- | --- | --- | --- | --- |\n")
    for bag in args.bag_sizes:
        for xi in XIS:
            rs = [r for r in runs if r["tag"].startswith(f"b{bag}_xi{xi:g}_")]

            def mae(key):
                v = [r[key] for r in rs]
                return f"{statistics.mean(v):.4f} ({statistics.stdev(v) if len(v) > 1 else 0:.4f})"
            text += (f"| {bag} | {xi:g} | {mae('first_val_mae')} | {mean_std([r['first_sel'] for r in rs])} | "
                     f"{mae('plot_val_mae')} | {mean_std([r['plot_sel'] for r in rs])} |\n")
    write("vat_xi.md", text)


if __name__ == "__main__":
    main()
