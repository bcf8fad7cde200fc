"""How much bf16 logits move the exact-OT pseudo-labels (CUDA's prediction pass runs under bf16 autocast).

A synthetic, moderately trained model's logits (``N(0, 2^2)`` noise plus 4 on the true class; 300 bags
of 64, 10 classes, the bags' true proportions) are solved once as float32 and once rounded to bf16
(only the final rounding: a lower bound on what a whole bf16 forward pass changes).

Run: ``python benchmarks/bf16_labels.py``; writes ``benchmarks/results/bf16_labels.md``.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import header, write  # noqa: E402

from plotllp.ot import pseudo_labels  # noqa: E402


def main():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n, k, m = 64, 10, 300
    y = rng.integers(0, k, n * m)
    logits = torch.randn(n * m, k) * 2 + 4 * torch.nn.functional.one_hot(torch.from_numpy(y), k)
    ids = np.repeat(np.arange(m), n)
    props = np.stack([np.bincount(y[ids == b], minlength=k) / n for b in range(m)])
    q32 = pseudo_labels(torch.softmax(logits, 1), ids, props, hard=True).argmax(1)
    q16 = pseudo_labels(torch.softmax(logits.bfloat16().float(), 1), ids, props, hard=True).argmax(1)
    ot_changed = float((q32 != q16).float().mean())
    argmax_changed = float((logits.argmax(1) != logits.bfloat16().float().argmax(1)).float().mean())
    text = header("Exact-OT pseudo-labels from bf16 logits")
    text += (f"\n{n * m} rows in {m} bags of {n}, {k} classes, synthetic logits rounded to bf16 once.\n\n"
             f"- exact-OT labels that changed: {100 * ot_changed:.2f}%\n"
             f"- argmax classes that changed: {100 * argmax_changed:.2f}%\n")
    print(text)
    write("bf16_labels.md", text)


if __name__ == "__main__":
    main()
