"""Every first stage alone and followed by PLOT: DLLP, LLP-VAT and LLP-GAN on two-moons and Fashion-MNIST.

Two-moons in the paper's setting (40 bags of 50, the 3-hidden-layer MLP) with the command line's defaults
(noise 0.1, which the paper does not give; 200 first-stage and 50 PLOT epochs), 5 seeds; Fashion-MNIST with
the MLP (3 x 256) at bag sizes 64 and 256, 3 seeds. Each seed draws its own data (two-moons), bags, validation
split and initialisation; the three first stages of a seed see the same bags. Every run goes through
``plotllp.pipeline.train`` and holds out 10% of the bags: the reported epoch of each stage is the one whose
predictions match the held-out bags' proportions best (lowest bag-level MAE; no test labels involved), the
last epoch beside it.

Settings were fixed before any run, not tuned: Adam lr 1e-3 (beta1 0.9) for DLLP and LLP-VAT, the LLP-GAN
reference's lr 3e-4 and beta1 0.5 for LLP-GAN (both networks); LLP-VAT with the reference xi 1e-6, weight
0.05 ramped over the first 40%, eps scaled from the reference's 6.0 for 3072 normalised pixels
(two-moons 0.15, Fashion-MNIST 3.0); PLOT with hard labels, SCE (0.1, 1.0), no mixup, lr 1e-3.

Run: ``python benchmarks/first_stages.py`` (``--only moons`` / ``--only fashion``); writes
``benchmarks/results/first_stages.md`` (per-run numbers in ``first_stages.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import RESULTS, clock_log, commit, header, load_raw, mean_std, resumable_runs, write  # noqa: E402
from images_cpu import summarise  # noqa: E402

from plotllp.config import make_config  # noqa: E402
from plotllp.errors import TrainingDivergedError  # noqa: E402
from plotllp.pipeline import train  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
STAGES = {"dllp": "DLLP", "vat": "LLP-VAT", "gan": "LLP-GAN"}
STAGE_OPTIM = {"dllp": {"lr": 1e-3, "beta1": 0.9}, "vat": {"lr": 1e-3, "beta1": 0.9},
               "gan": {"lr": 3e-4, "beta1": 0.5}}


def run(settings: dict, tag: str, log) -> dict:
    cfg = make_config({**settings, "out": os.path.join("runs", "bench_first_stages", tag), "quiet": True})
    t0 = time.perf_counter()
    try:
        res = train(cfg, log=log, write=False).results
    except TrainingDivergedError as e:                 # recorded and reported, never hidden
        log(f"{tag}: DIVERGED: {e}")
        return {"diverged": str(e), "commit": commit()}
    out = summarise(res["history"], cfg.first_stage)
    first_rows = [r for r in res["history"] if r["stage"] == cfg.first_stage]
    out["finite"] = all(math.isfinite(r["loss"]) for r in res["history"])
    if cfg.first_stage == "gan":
        out["gan_losses"] = [(r["d_unsup_loss"], r["proportion_loss"], r["g_loss"]) for r in first_rows]
    out["wall"], out["commit"] = time.perf_counter() - t0, commit()
    log(f"{tag}: {cfg.first_stage} {100 * out['first_sel']:.2f} (last {100 * out['first_last']:.2f}) -> PLOT "
        f"{100 * out['plot_sel']:.2f} (last {100 * out['plot_last']:.2f})  [{out['wall']:.0f}s]")
    return out



def table(raw: dict) -> str:
    lines = ["| data | bag | method | seeds | test acc. (held-out selection) | last epoch | gain of PLOT | s/epoch "
             "stage 1 | commit |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key, runs in raw.items():
        data, bag, stage = key.split(" | ")
        ok = [r for r in runs if "diverged" not in r]
        bad = len(runs) - len(ok)
        commits = ", ".join(sorted({r["commit"] for r in runs}))
        if not ok:
            lines.append(f"| {data} | {bag} | {STAGES[stage]} | {len(runs)} | all diverged | | | | {commits} |")
            continue
        gain = 100 * statistics.mean(r["plot_sel"] - r["first_sel"] for r in ok)
        note = f" ({bad} diverged)" if bad else ""
        s1 = statistics.median(r["s_first"] for r in ok)
        lines.append(f"| {data} | {bag} | {STAGES[stage]} | {len(ok)}{note} | {mean_std([r['first_sel'] for r in ok])} "
                     f"| {mean_std([r['first_last'] for r in ok])} | | {s1:.2f} | {commits} |")
        lines.append(f"| {data} | {bag} | {STAGES[stage]} + PLOT | {len(ok)}{note} | "
                     f"{mean_std([r['plot_sel'] for r in ok])} | {mean_std([r['plot_last'] for r in ok])} | {gain:+.2f} | | |")
    return "\n".join(lines) + "\n"


def gan_log(raw: dict) -> str:
    """The GAN's per-epoch losses of one run per setting (every run's are in the JSON file)."""
    out = []
    for key, runs in raw.items():
        if key.endswith("| gan") and runs and "gan_losses" in runs[0]:
            losses = runs[0]["gan_losses"]
            step = max(1, len(losses) // 10)
            shown = ", ".join(f"{e + 1}: {d:.3f}/{p:.3f}/{g:.4f}" for e, (d, p, g) in enumerate(losses)
                              if e % step == 0 or e == len(losses) - 1)
            out.append(f"- {key.replace(' | gan', '')}, seed 0 (epoch: D unsupervised / proportion / G): {shown}")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=DATA)
    ap.add_argument("--only", choices=["moons", "fashion"], default=None)
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    ap.add_argument("--moons-seeds", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--bag-sizes", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--epochs1", type=int, default=15, help="Fashion-MNIST first-stage epochs")
    ap.add_argument("--epochs2", type=int, default=10, help="Fashion-MNIST PLOT epochs")
    args = ap.parse_args()
    text = header("First stages alone and with PLOT")
    raw_path = os.path.join(RESULTS, "first_stages.json")
    raw = load_raw("first_stages.json")
    t_start = time.perf_counter()
    log = clock_log()

    new: dict = {}
    once = resumable_runs(raw_path, raw, run, log)

    if args.only in (None, "moons"):
        for stage in args.stages:
            for seed in range(args.moons_seeds):
                settings = {"dataset": "moons", "first_stage": stage, "val_fraction": 0.1, "seed": seed,
                            "bag_seed": seed, "data_seed": seed, **STAGE_OPTIM[stage], "lr2": 1e-3, "beta2": 0.999}
                new.setdefault(f"two-moons | 50 | {stage}", []).append(once(settings, f"moons_{stage}_s{seed}"))
    if args.only in (None, "fashion"):
        for bag in args.bag_sizes:
            for stage in args.stages:
                for seed in range(args.seeds):
                    settings = {"dataset": "fashion_mnist", "data_dir": os.path.join(args.data_dir, "fashion_mnist"),
                                "model": "mlp", "width": 256, "bag_size": bag, "batch_bags": max(1, 256 // bag),
                                "batch_size": 128, "epochs1": args.epochs1, "epochs2": args.epochs2,
                                "first_stage": stage, **STAGE_OPTIM[stage], "lr2": 1e-3, "val_fraction": 0.1,
                                "seed": seed, "bag_seed": seed}
                    new.setdefault(f"Fashion-MNIST | {bag} | {stage}", []).append(
                        once(settings, f"fashion_b{bag}_{stage}_s{seed}"))
    raw.update(new)
    with open(raw_path, "w") as f:
        json.dump(raw, f, indent=1)
    text += (f"\nTest accuracy %, mean (std) over seeds. Two-moons: paper setting (noise 0.1, 40 bags of 50, MLP "
             f"3 x 64, 200 + 50 epochs). Fashion-MNIST: MLP 3 x 256, {args.epochs1} first-stage + {args.epochs2} "
             f"PLOT epochs, first-stage batch max(1, 256 // bag) bags, PLOT batch 128. Settings fixed a priori "
             f"(see the script's docstring); each stage's epoch chosen on 10% held-out bags. Wall time of this "
             f"invocation: {(time.perf_counter() - t_start) / 60:.1f} min.\n\n")
    text += table(raw) + "\nLLP-GAN's losses per epoch (logged every epoch in every run's history):\n\n" + gan_log(raw)
    write("first_stages.md", text)
    if any("diverged" in r for runs in new.values() for r in runs):
        sys.exit("some runs diverged (see the table)")


if __name__ == "__main__":
    main()
