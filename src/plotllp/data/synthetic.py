"""Built-in data sets that need no files: two-moons (paper, section 5.1) and scikit-learn's digits."""

from __future__ import annotations

import numpy as np

from .dataset import Dataset


def _standardize(train: np.ndarray, test: np.ndarray):
    """Scale features with the training set's mean and std (no labels involved)."""
    mean, std = train.mean(0), train.std(0)
    std = np.where(std > 0, std, 1.0)
    return ((train - mean) / std).astype(np.float32), ((test - mean) / std).astype(np.float32)


def moons(n_train: int = 2000, n_test: int = 2000, noise: float = 0.1, seed: int = 0) -> Dataset:
    """Two interleaving half circles (``sklearn.datasets.make_moons``), standardised.

    The paper's setting is 40 bags of 50 points, i.e. ``n_train = 2000`` with bag size 50.
    The test set is drawn independently with the same noise.
    """
    from sklearn.datasets import make_moons

    x_tr, y_tr = make_moons(n_train, noise=noise, random_state=seed)
    x_te, y_te = make_moons(n_test, noise=noise, random_state=seed + 10_000)
    x_tr, x_te = _standardize(x_tr, x_te)
    return Dataset("moons", x_tr, y_tr.astype(np.int64), x_te, y_te.astype(np.int64), ["red", "green"])


def digits(seed: int = 0, test_fraction: float = 0.25) -> Dataset:
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), a seeded stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(d.data, d.target, test_size=test_fraction, random_state=seed,
                                              stratify=d.target)
    x_tr, x_te = _standardize(x_tr, x_te)
    return Dataset("digits", x_tr, y_tr.astype(np.int64), x_te, y_te.astype(np.int64), [str(i) for i in range(10)])
