"""The in-memory form of a data set: train and test arrays with their (hidden) labels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Dataset:
    """Arrays of a data set. ``y_train`` is hidden from training: it makes the bags' proportions
    (simulated LLP) and the diagnostics of SPEC section 1, nothing else."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list = field(default_factory=list)
    #: per-channel (mean, std) in [0, 1] units for uint8 images, None for feature tables
    normalization: tuple | None = None
    #: a table's held-out bags (rows of the test arrays); None: the test bags are formed like the training bags
    test_bags: object = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else int(max(self.y_train.max(), self.y_test.max())) + 1

    @property
    def is_image(self) -> bool:
        return self.x_train.dtype == np.uint8 and self.x_train.ndim == 4

    def subset_train(self, n: int, seed: int = 0) -> "Dataset":
        """A fixed, seeded subset of ``n`` training instances (the test set is kept whole)."""
        idx = np.sort(np.random.default_rng(seed).permutation(len(self.y_train))[:n])
        return Dataset(self.name, self.x_train[idx], self.y_train[idx], self.x_test, self.y_test, self.class_names,
                       self.normalization)

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])
