"""Data sets by name (SPEC section 7).

Built in: ``moons``, ``digits``. From the official files in ``--data-dir``: ``mnist``,
``fashion_mnist``, ``cifar10``, ``cifar100``, ``svhn`` (see :mod:`plotllp.data.images`); tables:
``table:FILE`` (CSV or Parquet, see :mod:`plotllp.data.tables`).
"""

from __future__ import annotations

from ..errors import LLPInputError
from .dataset import Dataset
from .images import channel_stats, load_cifar, load_idx_dataset, load_svhn
from .synthetic import digits, moons

__all__ = ["Dataset", "load_dataset", "DATASETS", "moons", "digits"]

IMAGE_DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn")
DATASETS = ("moons", "digits") + IMAGE_DATASETS


def load_dataset(name: str, *, data_dir: str | None = None, seed: int = 0, noise: float = 0.1,
                 train_size: int | None = None, download: bool = False, table_options: dict | None = None) -> Dataset:
    """Load data set ``name``. ``seed`` draws synthetic data, splits and the ``train_size`` subset;
    ``noise`` is two-moons' noise. Images get their training set's per-channel mean and std.
    ``download``: fetch the official files into ``data_dir`` first (checksums verified)."""
    if train_size is not None and train_size < 1:
        raise LLPInputError(f"train-size must be positive, got {train_size}")
    if name == "moons":
        return moons(n_train=train_size or 2000, noise=noise, seed=seed)
    if name == "digits":
        ds = digits(seed=seed)
    elif name in IMAGE_DATASETS:
        data_dir = data_dir or "data"
        if download:
            from .download import download as fetch_files
            fetch_files(name, data_dir)
        if name in ("mnist", "fashion_mnist"):
            ds = load_idx_dataset(name, data_dir)
        elif name in ("cifar10", "cifar100"):
            ds = load_cifar(name, data_dir)
        else:
            ds = load_svhn(data_dir)
    elif name.startswith("table:"):
        from .tables import load_table
        if train_size is not None:
            raise LLPInputError("--train-size does not apply to tables (select rows in the file)")
        return load_table(name[len("table:"):], seed=seed, **(table_options or {}))
    else:
        raise LLPInputError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if train_size is not None and train_size < len(ds.y_train):
        ds = ds.subset_train(train_size, seed)
    if ds.is_image and ds.normalization is None:
        ds.normalization = channel_stats(ds.x_train)
    return ds
