"""Tables on CPU: (a) a million rows with feature bags of 10 to 20,000 rows; (b) Fashion-MNIST as a flat
table with label-skewed (Dirichlet) and uniform bags of 256.

(a) scikit-learn's ``make_classification`` (1,000,000 rows x 50 features, 5 classes, 20 informative
features, seed 0); 10% of the rows are the test set. The training rows are sorted by their first
feature and cut into bags of sizes drawn log-uniformly in [10, 20,000] (feature bags: a bag holds
rows of similar feature values, so bags differ in their proportions, as regions or campaigns do). An
MLP (3 x 128) trains DLLP (one bag per step; steps over more than 16,384 rows run in exact chunks)
then PLOT (hard labels; the largest bags go to POT's network simplex). Reported: wall time of each
stage, peak resident memory of the process, first-stage and final test accuracy.

(b) Fashion-MNIST pixels as a flat table (the MLP 3 x 256), bags of 256 either uniform or label-skewed
with Dirichlet(1) proportions (``plotllp train --bags dirichlet --bag-alpha 1``), 3 seeds, through
``plotllp.pipeline.train``; the epoch of each stage chosen on 10% held-out bags as in
``benchmarks/images_cpu.py``.

Run: ``python benchmarks/tabular.py [--only big|fashion]``; writes ``benchmarks/results/tabular.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import RESULTS, clock_log, commit, header, load_raw, mean_std, write  # noqa: E402
from images_cpu import summarise  # noqa: E402

from plotllp.bags import bags_from_ids  # noqa: E402
from plotllp.config import make_config  # noqa: E402
from plotllp.engine import LLPData, OptimConfig, predict_proba  # noqa: E402
from plotllp.models import MLP, Standardized  # noqa: E402
from plotllp.pipeline import train  # noqa: E402
from plotllp.stages import DLLP, PLOT  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2      # Linux: KiB


def big(args, log) -> dict:
    from sklearn.datasets import make_classification

    t0 = time.perf_counter()
    x, y = make_classification(n_samples=args.rows, n_features=50, n_informative=20, n_redundant=10, n_classes=5,
                               n_clusters_per_class=2, class_sep=1.0, random_state=0)
    x = x.astype(np.float32)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(y))
    n_test = len(y) // 10
    test, tr = perm[:n_test], perm[n_test:]
    x_tr, y_tr = x[tr], y[tr]
    x_test, y_test = torch.from_numpy(x[test]), y[test]
    del x
    order = np.argsort(x_tr[:, 0], kind="stable")                  # feature bags: similar rows together
    sizes = []
    while sum(sizes) < len(order):
        sizes.append(int(np.exp(rng.uniform(np.log(10), np.log(20000)))))
    sizes[-1] -= sum(sizes) - len(order)
    if sizes[-1] < 10:
        sizes[-2] += sizes.pop()
    ids = np.empty(len(order), dtype=np.int64)
    ids[order] = np.repeat(np.arange(len(sizes)), sizes)
    counts = np.zeros((len(sizes), 5))
    np.add.at(counts, (ids, y_tr), 1)
    bags = bags_from_ids(ids, counts=counts)
    t_data = time.perf_counter() - t0
    log(f"big table: {len(y_tr)} training rows in {len(sizes)} bags of {min(sizes)}..{max(sizes)} rows; "
        f"{n_test} test rows ({t_data:.0f}s to build)")
    data = LLPData(x_tr, bags, "cpu", hidden_labels=y_tr)
    mean, std = x_tr.mean(0), x_tr.std(0)
    torch.manual_seed(0)
    model = Standardized(MLP(50, 5, width=128, depth=3), mean.tolist(), std.tolist())

    def acc():
        return float((predict_proba(model, x_test).argmax(1).numpy() == y_test).mean())

    t1 = time.perf_counter()
    h1 = DLLP(args.big_epochs1, OptimConfig(lr=1e-3), batch_bags=1, chunk_size=16384).fit(model, data, log=None)
    t_first = time.perf_counter() - t1
    a1 = acc()
    log(f"big table: DLLP {args.big_epochs1} epochs {t_first:.0f}s, test {100 * a1:.2f}%, peak {peak_rss_gb():.2f} GB")
    t2 = time.perf_counter()
    plot = PLOT(args.big_epochs2, OptimConfig(lr=1e-3), labels="hard", batch_size=512)
    h2 = plot.fit(model, data, log=None, seed=1)
    t_plot = time.perf_counter() - t2
    a2 = acc()
    log(f"big table: PLOT {args.big_epochs2} epochs {t_plot:.0f}s, test {100 * a2:.2f}%, peak {peak_rss_gb():.2f} GB")
    return {"rows": args.rows, "train_rows": int(len(y_tr)), "bags": len(sizes), "min_bag": int(min(sizes)),
            "max_bag": int(max(sizes)), "t_data": t_data, "t_first": t_first, "t_plot": t_plot,
            "s_first_epoch": statistics.median(r["seconds"] for r in h1),
            "s_plot_epoch": statistics.median(r["seconds"] for r in h2),
            "s_ot": statistics.median(r["ot_seconds"] for r in h2),
            "acc_first": a1, "acc_final": a2, "peak_gb": peak_rss_gb(), "commit": commit()}


def fashion(args, log) -> dict:
    rows = {}
    for kind in ("uniform", "dirichlet"):
        for seed in range(args.seeds):
            settings = {"dataset": "fashion_mnist", "data_dir": os.path.join(args.data_dir, "fashion_mnist"),
                        "model": "mlp", "width": 256, "bag_size": 256, "bags": kind, "bag_alpha": 1.0,
                        "batch_bags": 1, "batch_size": 128, "epochs1": args.epochs1, "epochs2": args.epochs2,
                        "lr": 1e-3, "val_fraction": 0.1, "seed": seed, "bag_seed": seed, "labels": "hard",
                        "out": f"runs/bench_tabular/{kind}_s{seed}", "quiet": True}
            t0 = time.perf_counter()
            res = train(make_config(settings), write=False).results
            out = summarise(res["history"], "dllp")
            out["wall"], out["commit"] = time.perf_counter() - t0, commit()
            log(f"fashion {kind} bags of 256, seed {seed}: DLLP {100 * out['first_sel']:.2f} -> PLOT "
                f"{100 * out['plot_sel']:.2f}  [{out['wall']:.0f}s]")
            rows.setdefault(kind, []).append(out)
    return rows



def main():
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--only", choices=["big", "fashion"])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--big-epochs1", type=int, default=20)
    ap.add_argument("--big-epochs2", type=int, default=10)
    ap.add_argument("--data-dir", default=DATA)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs1", type=int, default=15)
    ap.add_argument("--epochs2", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
    text = header("Tables on CPU: a million rows with huge feature bags; Fashion-MNIST with skewed bags")
    raw_path = os.path.join(RESULTS, "tabular.json")
    raw = load_raw(os.path.basename(raw_path))
    t_start = time.perf_counter()
    log = clock_log()

    if args.only in (None, "big"):
        raw["big"] = big(args, log)
    if args.only in (None, "fashion"):
        raw["fashion"] = fashion(args, log)
    with open(raw_path, "w") as f:
        json.dump(raw, f, indent=1)
    if "big" in raw:
        b = raw["big"]
        text += (f"\n## (a) {b['rows']:,} rows x 50 features, 5 classes, feature bags\n\n"
                 f"{b['train_rows']:,} training rows in {b['bags']} bags of {b['min_bag']} to {b['max_bag']:,} rows "
                 f"(log-uniform sizes); MLP 3 x 128; DLLP one bag per step, exact chunks of 16,384 rows; PLOT "
                 f"hard labels, batch 512. Commit {b['commit']}.\n\n"
                 f"| building the table | DLLP | PLOT | s/epoch DLLP | s/epoch PLOT | OT s/epoch | peak memory "
                 f"| test acc. DLLP | test acc. DLLP + PLOT |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
                 f"| {b['t_data']:.0f} s | {b['t_first']:.0f} s | {b['t_plot']:.0f} s | {b['s_first_epoch']:.1f} "
                 f"| {b['s_plot_epoch']:.1f} | {b['s_ot']:.2f} | {b['peak_gb']:.2f} GB | {100 * b['acc_first']:.2f} "
                 f"| {100 * b['acc_final']:.2f} |\n")
    if "fashion" in raw:
        text += ("\n## (b) Fashion-MNIST as a flat table, bags of 256\n\nMLP 3 x 256, one bag per step, "
                 f"{args.epochs1} + {args.epochs2} epochs, epochs chosen on 10% held-out bags; test accuracy %, "
                 "mean (std) over seeds.\n\n| bags | seeds | DLLP | DLLP + PLOT | gain | commit |\n"
                 "| --- | --- | --- | --- | --- | --- |\n")
        for kind, runs in raw["fashion"].items():
            gain = 100 * statistics.mean(r["plot_sel"] - r["first_sel"] for r in runs)
            text += (f"| {'Dirichlet(1)' if kind == 'dirichlet' else 'uniform'} | {len(runs)} | "
                     f"{mean_std([r['first_sel'] for r in runs])} | {mean_std([r['plot_sel'] for r in runs])} | {gain:+.2f} | "
                     f"{', '.join(sorted({r['commit'] for r in runs}))} |\n")
    text += f"\nWall time of this invocation: {(time.perf_counter() - t_start) / 60:.1f} min.\n"
    write("tabular.md", text)


if __name__ == "__main__":
    main()
