"""Real images on these CPUs: DLLP vs DLLP + PLOT on Fashion-MNIST (MLP) and CIFAR-10 (small CNN).

Fashion-MNIST, bag sizes 16, 64 and 256, 3 seeds (each seed draws its own bags, validation split and
initialisation); CIFAR-10 at bag size 64, 1 seed, a short schedule that fits in about 40 minutes on 2
cores. Every run goes through ``plotllp.pipeline.train`` (the same code as ``plotllp train``) and
holds out 10% of the bags for validation: no instance label of a held-out bag is used, only its
proportions.

Model selection uses the held-out bags only, never the test set: for each stage the reported epoch is
the one whose predictions match the held-out bags' proportions best (lowest bag-level MAE, the last
such epoch on ties). The last epoch of each stage is reported beside it. The schedules (epochs, learning
rate, width, batch) were fixed before any run, the same for every bag size; the first stage trains
on about 256 instances per step (``batch_bags = max(1, 256 // bag_size)``).

Columns: test accuracy of the first stage and after PLOT; training-set accuracy of the OT labels
(hidden labels used only for this diagnostic) at the end of each stage; seconds per epoch (median) of
the first stage's training, of the PLOT epoch (training + the pass that predicts the training set + the
OT solve + bookkeeping), of the OT solve alone, and of the evaluation (not part of training).

Run: ``python benchmarks/images_cpu.py`` (about 75 minutes on 2 cores); ``--only fashion`` or
``--only cifar`` runs one part; writes ``benchmarks/results/images_cpu.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import RESULTS, clock_log, commit, header, load_raw, mean_std, resumable_runs, write  # noqa: E402

from plotllp.config import make_config  # noqa: E402
from plotllp.pipeline import train  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")


def selected(history, stage):
    """The epoch of ``stage`` chosen on held-out bags (lowest validation-bag MAE, last on ties)."""
    rows = [r for r in history if r["stage"] == stage]
    best = min(r["val_bag_mae"] for r in rows)
    return [r for r in rows if r["val_bag_mae"] == best][-1]


def summarise(history, first_stage: str) -> dict:
    first = [r for r in history if r["stage"] == first_stage]
    plot = [r for r in history if r["stage"] == "plot"]
    s1, s2 = selected(history, first_stage), selected(history, "plot")
    return {
        "first_sel": s1["test_accuracy"], "first_sel_epoch": s1["epoch"], "first_last": first[-1]["test_accuracy"],
        "plot_sel": s2["test_accuracy"], "plot_sel_epoch": s2["epoch"], "plot_last": plot[-1]["test_accuracy"],
        "ot_acc_first": first[-1]["train_acc_ot"], "ot_acc_plot": plot[-1]["train_acc_ot"],
        "s_first": statistics.median(r["seconds"] for r in first),
        "s_plot": statistics.median(r["seconds"] for r in plot),
        "s_ot": statistics.median(r["ot_seconds"] for r in plot),
        "s_eval": statistics.median(r["eval_seconds"] for r in history),
    }


def run(settings: dict, tag: str, log) -> dict:
    cfg = make_config({**settings, "out": os.path.join("runs", "bench_images", tag), "quiet": True})
    t0 = time.perf_counter()
    res = train(cfg, log=log, write=False).results
    out = summarise(res["history"], cfg.first_stage)
    out["wall"] = time.perf_counter() - t0
    out["commit"] = commit()
    log(f"{tag}: first stage {100 * out['first_sel']:.2f} (last {100 * out['first_last']:.2f}) -> PLOT "
        f"{100 * out['plot_sel']:.2f} (last {100 * out['plot_last']:.2f})  [{out['wall']:.0f}s]")
    return out



def table(rows: dict) -> str:
    lines = ["| data | bag | seeds | first stage | + PLOT | gain | first stage (last ep.) | + PLOT (last ep.) "
             "| OT label acc. after stage 1 / 2 | s/epoch stage 1 | s/epoch PLOT | s/epoch OT | s/eval | commit |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (name, bag), runs in rows.items():
        gain = [r["plot_sel"] - r["first_sel"] for r in runs]
        med = lambda k: statistics.median(r[k] for r in runs)  # noqa: E731
        lines.append(
            f"| {name} | {bag} | {len(runs)} | {mean_std([r['first_sel'] for r in runs])} "
            f"| {mean_std([r['plot_sel'] for r in runs])} | {100 * statistics.mean(gain):+.2f} "
            f"| {mean_std([r['first_last'] for r in runs])} | {mean_std([r['plot_last'] for r in runs])} "
            f"| {100 * statistics.mean(r['ot_acc_first'] for r in runs):.1f} / "
            f"{100 * statistics.mean(r['ot_acc_plot'] for r in runs):.1f} "
            f"| {med('s_first'):.2f} | {med('s_plot'):.2f} | {med('s_ot'):.3f} | {med('s_eval'):.2f} "
            f"| {', '.join(sorted({r['commit'] for r in runs}))} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=DATA)
    ap.add_argument("--only", choices=["fashion", "cifar"], default=None)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--bag-sizes", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--epochs1", type=int, default=30, help="Fashion-MNIST first-stage epochs")
    ap.add_argument("--epochs2", type=int, default=20, help="Fashion-MNIST PLOT epochs")
    ap.add_argument("--cifar-epochs1", type=int, default=6, help="CIFAR-10 DLLP epochs (6 + 4 fit in 40 minutes on 2 cores)")
    ap.add_argument("--cifar-epochs2", type=int, default=4, help="CIFAR-10 PLOT epochs")
    ap.add_argument("--cifar-train-size", type=int, default=None)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
    text = header("Real images on CPU: DLLP vs DLLP + PLOT")
    raw_path = os.path.join(RESULTS, "images_cpu.json")
    raw = load_raw(os.path.basename(raw_path))
    t_start = time.perf_counter()
    log = clock_log()

    rows: dict = {}
    once = resumable_runs(raw_path, raw, run, log, reuse_finished=True)

    if args.only in (None, "fashion"):
        for bag in args.bag_sizes:
            for seed in range(args.seeds):
                settings = dict(dataset="fashion_mnist", data_dir=os.path.join(args.data_dir, "fashion_mnist"),
                                model="mlp", width=256, bag_size=bag, batch_bags=max(1, 256 // bag),
                                batch_size=128, epochs1=args.epochs1, epochs2=args.epochs2, lr=1e-3,
                                val_fraction=0.1, seed=seed, bag_seed=seed, labels="hard")
                rows.setdefault(("Fashion-MNIST, MLP", bag), []).append(once(settings, f"fashion_b{bag}_s{seed}"))
    if args.only in (None, "cifar"):
        settings = dict(dataset="cifar10", data_dir=args.data_dir, model="small-cnn", bag_size=64, batch_bags=4,
                        batch_size=128, epochs1=args.cifar_epochs1, epochs2=args.cifar_epochs2, lr=1e-3, beta1=0.9,
                        val_fraction=0.1, seed=0, bag_seed=0, labels="hard", train_size=args.cifar_train_size)
        rows[("CIFAR-10, small CNN", 64)] = [once(settings, "cifar10_b64_s0")]
    raw.update({f"{name} | {bag}": runs for (name, bag), runs in rows.items()})
    with open(raw_path, "w") as f:
        json.dump(raw, f, indent=1)
    all_rows = {tuple(k.split(" | ")): v for k, v in raw.items()}
    text += (f"\nFashion-MNIST: MLP (3 hidden layers of 256), Adam lr 1e-3, {args.epochs1} first-stage + "
             f"{args.epochs2} PLOT epochs (hard labels, SCE 0.1/1.0, no mixup, ensemble of 5), first-stage batch "
             f"max(1, 256 // bag) bags, PLOT batch 128. CIFAR-10: small CNN, crop+flip on the device, Adam lr 1e-3 "
             f"(beta1 0.9: the paper's 1e-4 / 0.5 is for hundreds of epochs), {args.cifar_epochs1} DLLP + "
             f"{args.cifar_epochs2} PLOT epochs, 4 bags of 64 per step. 10% of the bags held out in every run.\n\n"
             f"Test accuracy %, mean (std) over seeds, at the epoch of each stage chosen on held-out bags (lowest "
             f"held-out bag-proportion MAE); the last epoch's accuracy beside it. Wall time of this invocation: "
             f"{(time.perf_counter() - t_start) / 60:.1f} min.\n\n")
    text += table(all_rows)
    text += "\nPer-run numbers: `benchmarks/results/images_cpu.json`.\n"
    write("images_cpu.md", text)


if __name__ == "__main__":
    main()
