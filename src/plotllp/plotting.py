"""Figures of the paper from finished runs: decision boundaries on two-dimensional data (Figure 2),
training-set accuracy of the model, its OT labels and their ensemble across PLOT (Figure 3), hard vs
soft labels (Figure 4), and test accuracy against bag size for every method. Each writes PNG and SVG."""

from __future__ import annotations

import numpy as np
import torch

from .engine import predict_proba
from .errors import LLPInputError

COLORS = ("#d62728", "#2ca02c", "#1f77b4", "#ff7f0e")


def decision_boundaries(panels, x, y, path: str, *, title: str | None = None, resolution: int = 300) -> str:
    """Draw one panel per ``(name, model)`` in ``panels``: the predicted class over the plane, the
    points ``x`` coloured by their true class ``y``, misclassified points ringed in black. A panel
    ``(name, model, x, y)`` brings its own points (runs on different data). Writes ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    panels = [(p[0], p[1], np.asarray(p[2], dtype=np.float32), np.asarray(p[3])) if len(p) == 4
              else (p[0], p[1], np.asarray(x, dtype=np.float32), np.asarray(y)) for p in panels]
    every = np.concatenate([px for *_, px, _ in panels])
    lo, hi = every.min(0) - 0.5, every.max(0) + 0.5
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    grid = torch.from_numpy(np.c_[gx.ravel(), gy.ravel()].astype(np.float32))
    k = max(int(py.max()) for *_, py in panels) + 1
    cmap = ListedColormap([COLORS[i % len(COLORS)] for i in range(k)])
    ncols = len(panels) if len(panels) <= 3 else 2          # more panels: pairs (first stage, + PLOT) per row
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 4.2 * nrows), squeeze=False)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    for ax, (name, model, x, y) in zip(axes.ravel(), panels):
        dev = next(model.parameters()).device
        z = predict_proba(model, grid.to(dev)).argmax(1).cpu().numpy().reshape(gx.shape)
        pred = predict_proba(model, torch.from_numpy(x).to(dev)).argmax(1).cpu().numpy()
        acc = (pred == y).mean()
        ax.contourf(gx, gy, z, levels=np.arange(k + 1) - 0.5, cmap=cmap, alpha=0.18)
        ax.scatter(x[:, 0], x[:, 1], c=y, cmap=cmap, vmin=-0.5, vmax=k - 0.5, s=7, linewidths=0)
        wrong = pred != y
        ax.scatter(x[wrong, 0], x[wrong, 1], facecolors="none", edgecolors="black", s=26, linewidths=0.8,
                   label=f"misclassified ({wrong.sum()})")
        sep = ":\n" if len(name) > 24 else ": "                # a long name (runs' settings): its own line
        ax.set_title(f"{name}{sep}{100 * acc:.2f}% test accuracy", fontsize=11 if len(name) <= 48 else 9)
        ax.set_xlabel("feature 1 (standardised)")
        ax.set_ylabel("feature 2 (standardised)")
        ax.legend(loc="lower left", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    import os

    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    if path.endswith(".png"):
        fig.savefig(path[:-4] + ".svg")
    plt.close(fig)
    return path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def file_stem(out: str) -> str:
    """``out`` without a .png or .svg suffix: a figure is written as STEM.png and STEM.svg."""
    return out[:-4] if out.endswith((".png", ".svg")) else out


def _save(fig, out: str) -> list[str]:
    """Write ``out`` as PNG and SVG (``out`` without a suffix, or ending in .png or .svg)."""
    import os

    stem = file_stem(out)
    d = os.path.dirname(stem)
    if d:
        os.makedirs(d, exist_ok=True)
    fig.tight_layout()
    paths = [stem + ".png", stem + ".svg"]
    fig.savefig(paths[0], dpi=120)
    fig.savefig(paths[1])
    _plt().close(fig)
    return paths


def _history(results: dict):
    first = results["config"]["first_stage"]
    return [r for r in results["history"] if r["stage"] == first], [r for r in results["history"] if r["stage"] == "plot"]


def training_curves(runs: list[tuple[str, dict]], out: str) -> list[str]:
    """Figure 3: per run (``(label, results)``), the training-set accuracy of the model (TD), of its OT
    labels (TD_OT) and of the mean of the last 5 OT labels (TD_OT_5) across both stages; test accuracy
    dashed. The first stage's epochs come first; the line marks where PLOT starts."""
    plt = _plt()
    ncols = min(len(runs), 3)                                  # more runs: rows of three
    nrows = -(-len(runs) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.6 * ncols, 4.2 * nrows), squeeze=False)
    for ax in axes.ravel()[len(runs):]:
        ax.set_visible(False)
    for ax, (label, r) in zip(axes.ravel(), runs):
        h1, h2 = _history(r)
        rows = h1 + h2
        x = list(range(1, len(rows) + 1))
        for key, name, style in (("train_acc_model", "model (TD)", "-"), ("train_acc_ot", "OT labels (TD_OT)", "-"),
                                 ("train_acc_ot_ensemble", "ensemble of 5 OT labels (TD_OT_5)", "-"),
                                 ("test_accuracy", "test accuracy", "--")):
            ys = [100 * row[key] if row.get(key) is not None else float("nan") for row in rows]
            ax.plot(x, ys, style, label=name, linewidth=1.6)
        if h2:
            ax.axvline(len(h1) + 0.5, color="grey", linewidth=0.8)
            ax.text(len(h1) + 1, ax.get_ylim()[0], " PLOT", color="grey", va="bottom", fontsize=9)
        ax.set_xlabel("epoch (first stage, then PLOT)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(label.replace(" [", "\n["), fontsize=11 if len(label) <= 48 else 9)   # settings: own line
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    return _save(fig, out)


def label_convergence(runs: list[tuple[str, dict]], out: str) -> list[str]:
    """Figure 4: test accuracy (left) and OT-label accuracy on the training set (right) per PLOT epoch,
    one line per run (e.g. hard and soft labels from the same first stage)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, r in runs:
        _, h2 = _history(r)
        x = [row["epoch"] for row in h2]
        for ax, key in zip(axes, ("test_accuracy", "train_acc_ot")):
            ax.plot(x, [100 * row[key] if row.get(key) is not None else float("nan") for row in h2], label=label,
                    linewidth=1.6)
    from matplotlib.ticker import MaxNLocator

    for ax, what in zip(axes, ("test accuracy (%)", "training-set accuracy of the OT labels (%)")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("PLOT epoch")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    return _save(fig, out)


def accuracy_vs_bag_size(data: dict, out: str) -> list[str]:
    """Test accuracy (mean and std over seeds) against bag size, one line per method, one panel per data
    set; ``data`` is :func:`plotllp.experiments.results.aggregate`'s output."""
    data = {ds: (methods, [b for b in bags if b > 0], cells) for ds, (methods, bags, cells) in data.items()}
    data = {ds: v for ds, v in data.items() if v[1]}           # a table's own bags (0) have no one size
    if not data:
        raise LLPInputError("no runs with bags of one size (a table's own bags have many): nothing to plot "
                            "against bag size")
    plt = _plt()
    fig, axes = plt.subplots(1, len(data), figsize=(6.2 * len(data), 4.4), squeeze=False)
    for ax, (ds, (methods, bags, cells)) in zip(axes[0], data.items()):
        for m in methods:
            pts = [(b, cells[(m, b)]) for b in bags if (m, b) in cells]
            ax.errorbar([b for b, _ in pts], [100 * c.mean for _, c in pts], yerr=[100 * c.std for _, c in pts],
                        marker="o", capsize=3, linestyle="--" if "PLOT" not in m else "-", label=m)
        ax.set_xscale("log", base=2)
        ax.set_xticks(bags)
        ax.set_xticklabels([str(b) for b in bags])
        ax.set_xlabel("bag size")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(ds, fontsize=11)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, out)
