"""Data sets by name (SPEC section 7). Built in: ``moons``, ``digits``."""

from __future__ import annotations

from ..errors import LLPInputError
from .dataset import Dataset
from .synthetic import digits, moons

__all__ = ["Dataset", "load_dataset", "DATASETS", "moons", "digits"]

#: Names of the SPEC that a later release reads from official files; listed so the error says so.
PLANNED = ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn", "table:FILE")
DATASETS = ("moons", "digits")


def load_dataset(name: str, *, data_dir: str | None = None, seed: int = 0, noise: float = 0.1,
                 train_size: int | None = None) -> Dataset:
    """Load data set ``name``. ``seed`` draws synthetic data and splits; ``noise`` is two-moons' noise."""
    if name == "moons":
        return moons(n_train=train_size or 2000, noise=noise, seed=seed)
    if name == "digits":
        return digits(seed=seed)
    base = name.split(":", 1)[0] + (":FILE" if name.startswith("table:") else "")
    if base in PLANNED:
        raise LLPInputError(f"dataset {name!r} is not supported by this version yet; available: {', '.join(DATASETS)}")
    raise LLPInputError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
