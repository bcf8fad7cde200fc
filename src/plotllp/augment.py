"""Data augmentation of whole batches on the training device (no per-sample Python).

``random_crop_flip``: pad by ``pad`` pixels (zeros), take a random crop of the original size, and
flip horizontally with probability 1/2 -- the paper's CIFAR augmentation (section 5.2). Randomness
comes from torch's generator of the batch's device (seeded by the training loop).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H, W): per-sample random translation by up to ``pad`` pixels and flip."""
    n, c, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n,), device=dev)
    ox = torch.randint(0, 2 * pad + 1, (n,), device=dev)
    rows = (oy[:, None] + torch.arange(h, device=dev))[:, None, :, None]
    cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, None, :]
    if flip:
        flipped = torch.rand(n, device=dev) < 0.5
        cols = torch.where(flipped[:, None, None, None], cols.flip(3), cols)
    out = padded[torch.arange(n, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
                 rows, cols]
    return out


AUGMENTATIONS = {
    "none": None,
    "crop": lambda x: random_crop_flip(x, flip=False),
    "crop-flip": random_crop_flip,
}


def resolve_augment(name: str, dataset: str):
    """The batch transform for ``--augment NAME`` (``auto``: crop-flip on CIFAR, none elsewhere)."""
    from .config import augment_name

    return AUGMENTATIONS[augment_name(name, dataset)]
