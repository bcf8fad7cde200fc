"""The GPU fast path measured: images per second of supervised training, DLLP and PLOT on CIFAR-10.

For each network (conv-large, WRN-28-2) and with and without ``torch.compile`` (bf16 autocast and
channels-last always, as ``plotllp train`` does on CUDA), side by side on the same data and batch:

- a plain supervised epoch (cross-entropy on the true labels, instance batches of 128),
- a DLLP epoch (2 whole bags of 64 per step, the batch of ``configs/paper/``),
- a PLOT epoch (training on pseudo-labels with SCE + the pass that predicts the training set + the
  per-bag exact OT, overlapped with that pass on CUDA),

each after one warm-up epoch (compilation happens there), median of ``--epochs`` timed epochs, the three
taking turns epoch by epoch on the same network (a drift of the machine's speed falls on all alike); the
OT solver's seconds per epoch, and the seconds it adds to the epoch beyond the prediction pass it
overlaps (the relabelling timed against the same prediction pass alone), and the relabelling alone
with chunks of 1,024, 4,096 and 16,384 rows, one or two chunks queued ahead of the solver
(``overlapped_exact_labels``' ``chunk_rows`` and ``lookahead``); with ``--adam foreach fused``, each
setting again with Adam's fused implementation (torch's default on CUDA, as ``plotllp train`` uses, is
``foreach``); one
evaluation pass over the test images (10,000); and the end-to-end time of one cell of the paper's
protocol (CIFAR-10, bag 64: 400 DLLP + 100 PLOT epochs, evaluated every epoch, with the training-set
diagnostics of every first-stage epoch; ``configs/paper/``) extrapolated from these measured epochs
(:func:`paper_cell_minutes`).

Run on a CUDA machine: ``python benchmarks/gpu.py --data-dir DIR`` (DIR holds
``cifar-10-python.tar.gz`` or ``cifar-10-batches-py/``), or ``--synthetic`` for random uint8 images of
CIFAR-10's shape and size (speed does not depend on the pixels; no accuracy is reported). Writes
``benchmarks/results/gpu.md`` (and ``gpu.json``) after every round of timed epochs, so a run stopped by
a time limit keeps what it measured; ``--rows FILE`` adds to the rows an earlier invocation left there
(``benchmarks/gpu_session.sh`` runs each network and compile setting under its own time limit).
``--device cpu --train-size 512 --models small-cnn`` checks the script itself on a CPU (its numbers say
nothing about a GPU).

``--compile static`` compiles with ``dynamic=False``: one graph per input size, where ``on`` (torch's
default) compiles graphs whose batch size is symbolic as soon as the network has met a second size,
which here is at once (PLOT's first relabelling predicts batches of 1,024 before training on 128).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import RESULTS, header, table_head  # noqa: E402
from throughput import Supervised, sync  # noqa: E402

from plotllp.augment import resolve_augment  # noqa: E402
from plotllp.bags import uniform_bags  # noqa: E402
from plotllp.data import load_dataset  # noqa: E402
from plotllp.engine import (LLPData, OptimConfig, maybe_compile, overlapped_exact_labels, predict_proba,  # noqa: E402
                            resolve_device)
from plotllp.models import build_model  # noqa: E402
from plotllp.stages import DLLP, PLOT  # noqa: E402

PAPER_EPOCHS = (400, 100)     # configs/paper: first stage, PLOT
CHUNK_ROWS = (1024, 4096, 16384)   # the relabelling timed by rows per chunk (overlapped_exact_labels)


def synthetic_cifar(n_train: int, n_test: int = 10000):
    """Random uint8 images and labels with CIFAR-10's shapes (a stand-in for speed only)."""
    from plotllp.data.dataset import Dataset

    rng = np.random.default_rng(0)
    return Dataset("cifar10-synthetic", rng.integers(0, 256, (n_train, 3, 32, 32), dtype=np.uint8),
                   rng.integers(0, 10, n_train), rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8),
                   rng.integers(0, 10, n_test), [str(i) for i in range(10)], ([0.5] * 3, [0.25] * 3))


KINDS = ("supervised", "dllp", "plot")


def time_stages(net, data, augment, epochs, device, report, fused=False):
    """Time ``epochs`` epochs of each stage on ``net``, the stages taking turns epoch by epoch (so that a
    drift of the machine's speed falls on all three alike), after one warm-up epoch of each (which
    compiles). ``report(results)`` gets the medians so far after every round. ``fused``: Adam's fused
    implementation (one kernel for all parameters) instead of torch's default on CUDA, ``foreach``
    (a kernel per operation of the update, and a host-side read of each parameter's step count), which
    ``plotllp train`` uses."""
    stages = {"supervised": Supervised(1, OptimConfig(), batch_size=128, augment=augment),
              "dllp": DLLP(1, OptimConfig(), batch_bags=2, augment=augment),
              "plot": PLOT(1, OptimConfig(), labels="hard", batch_size=128, augment=augment)}
    opts = {k: torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.5, 0.999), fused=fused or None) for k in KINDS}
    rngs = {k: np.random.default_rng(i) for i, k in enumerate(KINDS)}
    times = {k: {"seconds": [], "ot_seconds": [], "relabel_seconds": []} for k in KINDS}
    for k in KINDS:
        stages[k].begin(net, data)
    results = {}
    for epoch in range(epochs + 1):
        for k in KINDS:
            sync(device)
            t = time.perf_counter()
            state = stages[k].train_epoch(net, opts[k], data, rngs[k])
            stages[k].end_epoch(net, data, state)
            sync(device)
            if not np.isfinite(state.loss):
                raise SystemExit(f"{k}: the loss is {state.loss}")
            if epoch > 0:                              # epoch 0 warms up (and compiles)
                times[k]["seconds"].append(time.perf_counter() - t)
                timing = getattr(stages[k], "timing", {})
                times[k]["ot_seconds"].append(timing.get("ot_seconds", 0.0))
                times[k]["relabel_seconds"].append(timing.get("relabel_seconds", 0.0))
        if epoch > 0:
            results = {k: {key: float(np.median(v)) for key, v in times[k].items()} for k in KINDS}
            for r in results.values():
                r["images_per_second"] = data.num_members / r["seconds"]
            report(results)

    def predict_seconds(batch_size=None, fold=None):
        """Best of two prediction passes over the training images alone (no OT)."""
        ts = []
        for _ in range(2):
            sync(device)
            t = time.perf_counter()
            predict_proba(net, data.x[data.members], batch_size=batch_size, fold=fold)
            sync(device)
            ts.append(time.perf_counter() - t)
        return min(ts)

    def relabel_seconds(chunk_rows, lookahead=1):
        """Best of two overlapped relabellings (prediction + exact OT): (seconds, the solver's seconds)."""
        best = None
        for _ in range(2):
            sync(device)
            t = time.perf_counter()
            _, _, ot_seconds = overlapped_exact_labels(net, data, chunk_rows=chunk_rows, lookahead=lookahead)
            sync(device)
            seconds = time.perf_counter() - t
            if best is None or seconds < best[0]:
                best = (seconds, ot_seconds)
        return best

    plot = results["plot"]
    plot["predict_alone_seconds"] = predict_seconds()          # the default batch, as the relabelling uses
    plot["predict_seconds_by_batch"] = {str(b): predict_seconds(b) for b in (512, 2048, 4096)}
    plot["predict_unfolded_seconds"] = predict_seconds(fold=False)  # BatchNorm layers run as they are
    plot["predict_folded_seconds"] = predict_seconds(fold=True)     # folded (the default on a CPU only)
    plot["ot_exposed_seconds"] = max(0.0, plot["relabel_seconds"] - plot["predict_alone_seconds"])
    # the overlapped relabelling by rows per chunk (16,384 is the default): smaller chunks keep CUDA's
    # launch queue from holding the host back before each solve; with two chunks queued ahead (lookahead 2)
    # the GPU need not wait for the host between chunks
    plot["relabel_by_chunk_rows"] = {str(c): relabel_seconds(c) for c in CHUNK_ROWS}
    plot["relabel_by_chunk_rows_lookahead2"] = {str(c): relabel_seconds(c, 2) for c in CHUNK_ROWS}
    report(results)
    return results


def paper_cell_minutes(row) -> float:
    """One cell of the paper's protocol from a row's measured seconds: every first-stage epoch is trained
    and evaluated (the test pass, and the training-set diagnostics ``plotllp train`` records each epoch: a
    prediction pass over the training images and the exact OT of every bag, which on CUDA is PLOT's
    relabelling, the OT overlapped with the prediction); every PLOT epoch is trained, relabelled (its
    diagnostics reuse the relabelling) and evaluated on the test images."""
    e1, e2 = PAPER_EPOCHS
    plot = row["plot"]
    diagnostics = plot["relabel_seconds"]
    return (e1 * (row["dllp"]["seconds"] + row["eval_seconds"] + diagnostics)
            + e2 * (plot["seconds"] + row["eval_seconds"])) / 60


def _setting(row) -> str:
    """The compile column: the compile setting, and Adam's implementation where it is not the default."""
    return row["compile"] + (", fused Adam" if row.get("adam") == "fused" else "")


def _fmt(row, kind, fn):
    """``fn(row[kind])``, or "-" for a stage (or a figure of it) not measured."""
    try:
        return fn(row[kind])
    except KeyError:
        return "-"


def render(rows, args, num_members, num_bags) -> str:
    """The Markdown report of the rows measured so far (a stage not measured reads "-")."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU run: checks the script only)"
    text = header("GPU fast path: CIFAR-10 images per second")
    text += (f"- GPU: {gpu}\n- data: "
             f"{'random uint8 images of CIFAR-10 shape (--synthetic)' if args.synthetic else 'CIFAR-10'}, "
             f"{num_members} training images in {num_bags} bags of 64; bf16 autocast and channels-last on CUDA; "
             f"median of {args.epochs} epochs after a warm-up epoch (which compiles), the stages taking turns "
             "epoch by epoch\n\n"
             "| network | compile | supervised img/s | DLLP img/s | PLOT img/s | PLOT / supervised | "
             "PLOT epoch s | relabel s (prediction + OT) | prediction alone s | OT solver s | OT % of PLOT epoch "
             "| OT not hidden s (%) | eval s | paper cell (400 + 100 epochs), min, extrapolated |\n"
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
    for r in rows:
        sup, plot = r.get("supervised"), r.get("plot")
        text += " | ".join([
            f"| {r['model']}", _setting(r),
            _fmt(r, "supervised", lambda s: f"{s['images_per_second']:.0f}"),
            _fmt(r, "dllp", lambda s: f"{s['images_per_second']:.0f}"),
            _fmt(r, "plot", lambda s: f"{s['images_per_second']:.0f}"),
            f"{plot['images_per_second'] / sup['images_per_second']:.2f}" if sup and plot else "-",
            _fmt(r, "plot", lambda s: f"{s['seconds']:.2f}"),
            _fmt(r, "plot", lambda s: f"{s['relabel_seconds']:.3f}"),
            _fmt(r, "plot", lambda s: f"{s['predict_alone_seconds']:.3f}"),
            _fmt(r, "plot", lambda s: f"{s['ot_seconds']:.3f}"),
            _fmt(r, "plot", lambda s: f"{100 * s['ot_seconds'] / s['seconds']:.2f}%"),
            _fmt(r, "plot", lambda s: f"{s['ot_exposed_seconds']:.3f} ({100 * s['ot_exposed_seconds'] / s['seconds']:.2f}%)"),
            f"{r['eval_seconds']:.2f}" if "eval_seconds" in r else "-",
            f"{r['paper_cell_minutes']:.1f} |" if "paper_cell_minutes" in r else "- |"]) + "\n"
    batches = [r for r in rows if "predict_seconds_by_batch" in r.get("plot", {})]
    if batches:
        text += ("\nThe prediction pass over the training images alone, by images per batch (best of two, s; "
                 f"{1024 if torch.cuda.is_available() else 256} is the default), and at the default batch with and "
                 "without BatchNorm folded into the convolutions before it (`predict_proba` folds on a CPU only):\n\n"
                 "| network | compile | 512 | default | 2048 | 4096 | default, BatchNorm folded | default, "
                 "BatchNorm not folded |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")

        def opt(x):
            return "-" if x is None else f"{x:.3f}"
        for r in batches:
            b, p = r["plot"]["predict_seconds_by_batch"], r["plot"]
            text += (f"| {r['model']} | {_setting(r)} | {b['512']:.3f} | {p['predict_alone_seconds']:.3f} | "
                     f"{b['2048']:.3f} | {b['4096']:.3f} | {opt(p.get('predict_folded_seconds'))} | "
                     f"{opt(p.get('predict_unfolded_seconds'))} |\n")
    chunked = [r for r in rows if "relabel_by_chunk_rows" in r.get("plot", {})]
    if chunked:
        text += ("\nThe relabelling alone (prediction pass + exact OT, overlapped chunk by chunk) by rows per chunk "
                 "and chunks queued ahead of the solver (`lookahead`; best of two; s, and the solver's seconds in "
                 "brackets; 16,384 rows and lookahead 1 are the defaults):\n\n"
                 + table_head("network", "compile", "lookahead", "prediction alone", *(f"{c:,}" for c in CHUNK_ROWS)))
        for r in chunked:
            for ahead, key in ((1, "relabel_by_chunk_rows"), (2, "relabel_by_chunk_rows_lookahead2")):
                c = r["plot"].get(key)
                if c is None:
                    continue
                text += (f"| {r['model']} | {_setting(r)} | {ahead} | {r['plot']['predict_alone_seconds']:.3f} | "
                         + " | ".join(f"{c[str(k)][0]:.3f} ({c[str(k)][1]:.3f})" if str(k) in c else "-"
                                      for k in CHUNK_ROWS) + " |\n")
    errors = [f"- {r['model']} compile={_setting(r)}: {r['error']}" for r in rows if "error" in r]
    if errors:
        text += "\nStopped with an error:\n" + "\n".join(errors) + "\n"
    text += ("\nPLOT img/s counts the training images of one PLOT epoch over its whole time (training, the "
             "relabelling: the prediction pass over the training set and the OT solve, the bookkeeping). On CUDA "
             "the exact OT runs on the CPU while the GPU predicts the next chunk of bags, so the solver's seconds "
             "overlap the prediction pass; \"OT not hidden\" is what the OT adds to the epoch: the relabelling's "
             "seconds less those of the same prediction pass alone (best of two, measured after the epochs). "
             "A \"-\" is a stage that did not finish within the run's time limit.\n")
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    ap.add_argument("--synthetic", action="store_true", help="random images of CIFAR-10's shape (speed only)")
    ap.add_argument("--models", nargs="+", default=["conv-large", "wrn-28-2"])
    ap.add_argument("--compile", nargs="+", default=["off", "on"], choices=["off", "on", "static"],
                    help="off: eager; on: torch.compile as `plotllp train --compile`; static: dynamic=False")
    ap.add_argument("--adam", nargs="+", default=["foreach"], choices=["foreach", "fused"],
                    help="Adam's implementation: foreach (torch's default, as plotllp train) or fused; a row each")
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs of each kind, after one warm-up epoch")
    ap.add_argument("--train-size", type=int, default=None)
    ap.add_argument("--test-size", type=int, default=10000, help="--synthetic: test images (default 10,000)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--rows", default=None, help="JSON file of rows to add to (kept between invocations)")
    ap.add_argument("--out-dir", default=RESULTS, help="folder of gpu.md and gpu.json (default: benchmarks/results)")
    args = ap.parse_args()
    device = resolve_device(args.device)
    torch.backends.cudnn.benchmark = True
    ds = synthetic_cifar(args.train_size or 50000, args.test_size) if args.synthetic else load_dataset(
        "cifar10", data_dir=args.data_dir, train_size=args.train_size)
    bags = uniform_bags(ds.y_train, 64, num_classes=10, seed=0)
    data = LLPData(ds.x_train, bags, device, hidden_labels=ds.y_train)
    x_test = torch.from_numpy(ds.x_test).to(device)
    augment = resolve_augment("auto", "cifar10")
    rows = []
    if args.rows and os.path.exists(args.rows):
        with open(args.rows) as f:
            rows = json.load(f)
        if not isinstance(rows, list):      # e.g. benchmarks/results/gpu.json, the runs kept by hand
            raise SystemExit(f"--rows {args.rows} does not hold the list of rows gpu.py writes; give a new file")
    name = "gpu" if device.type == "cuda" else "gpu_cpu_check"
    os.makedirs(args.out_dir, exist_ok=True)

    def save():
        text = render(rows, args, data.num_members, bags.num_bags)
        with open(os.path.join(args.out_dir, f"{name}.md"), "w") as f:
            f.write(text)
        for path in {os.path.join(args.out_dir, f"{name}.json"), args.rows} - {None}:
            with open(path, "w") as f:
                json.dump(rows, f, indent=1)
        return text

    for model_name, comp, adam in ((m, c, a) for m in args.models for c in args.compile for a in args.adam):
        row = {"model": model_name, "compile": comp, "adam": adam}
        rows.append(row)
        try:
            torch.manual_seed(0)
            model = build_model(model_name, ds.input_shape, 10, normalization=ds.normalization).to(device)
            if device.type == "cuda":
                model = model.to(memory_format=torch.channels_last)
            if comp == "static":                # a graph per input size: more than torch's default 8 here
                torch._dynamo.config.recompile_limit = 64
                net = torch.compile(model, dynamic=False)
            else:
                net = maybe_compile(model, comp == "on")

            def report(results, row=row):
                row.update(results)
                save()

            time_stages(net, data, augment, args.epochs, device, report, fused=adam == "fused")
            for kind in KINDS:
                print(f"{model_name} compile={comp} adam={adam} {kind}: {row[kind]['seconds']:.2f} s/epoch "
                      f"({row[kind]['images_per_second']:.0f} images/s, OT {row[kind]['ot_seconds']:.3f} s, "
                      f"relabel {row[kind]['relabel_seconds']:.3f} s)", flush=True)
            predict_proba(net, x_test)                     # warm-up of the eval-mode graph
            sync(device)
            t = time.perf_counter()
            predict_proba(net, x_test)
            sync(device)
            row["eval_seconds"] = time.perf_counter() - t
            row["paper_cell_minutes"] = paper_cell_minutes(row)
            if device.type == "cuda":
                row["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
        except Exception as exc:                            # keep the other rows; say what broke
            traceback.print_exc()
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        save()
    text = save()
    print(text)
    print(f"wrote {os.path.join(args.out_dir, name + '.md')}")


if __name__ == "__main__":
    main()
