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

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else int(max(self.y_train.max(), self.y_test.max())) + 1

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])
