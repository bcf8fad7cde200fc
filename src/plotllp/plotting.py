"""Figures: decision boundaries on two-dimensional data (the paper's Figure 2)."""

from __future__ import annotations

import numpy as np
import torch

from .engine import predict_proba

COLORS = ("#d62728", "#2ca02c", "#1f77b4", "#ff7f0e")


def decision_boundaries(panels, x, y, path: str, *, title: str | None = None, resolution: int = 300) -> str:
    """Draw one panel per ``(name, model)`` in ``panels``: the predicted class over the plane, the
    points coloured by their true class, misclassified points ringed in black. Writes ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    lo, hi = x.min(0) - 0.5, x.max(0) + 0.5
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    grid = torch.from_numpy(np.c_[gx.ravel(), gy.ravel()].astype(np.float32))
    k = int(y.max()) + 1
    cmap = ListedColormap([COLORS[i % len(COLORS)] for i in range(k)])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.2), squeeze=False)
    for ax, (name, model) in zip(axes[0], panels):
        dev = next(model.parameters()).device
        z = predict_proba(model, grid.to(dev)).argmax(1).cpu().numpy().reshape(gx.shape)
        pred = predict_proba(model, torch.from_numpy(x).to(dev)).argmax(1).cpu().numpy()
        acc = (pred == y).mean()
        ax.contourf(gx, gy, z, levels=np.arange(k + 1) - 0.5, cmap=cmap, alpha=0.18)
        ax.scatter(x[:, 0], x[:, 1], c=y, cmap=cmap, vmin=-0.5, vmax=k - 0.5, s=7, linewidths=0)
        wrong = pred != y
        ax.scatter(x[wrong, 0], x[wrong, 1], facecolors="none", edgecolors="black", s=26, linewidths=0.8,
                   label=f"misclassified ({wrong.sum()})")
        ax.set_title(f"{name}: {100 * acc:.2f}% test accuracy", fontsize=11)
        ax.set_xlabel("feature 1 (standardised)")
        ax.set_ylabel("feature 2 (standardised)")
        ax.legend(loc="lower left", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
