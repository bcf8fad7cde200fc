"""Data sets by name (SPEC section 7).

Built in: ``moons``, ``digits``. From the official files in ``--data-dir``: ``mnist``,
``fashion_mnist``, ``cifar10``, ``cifar100``, ``svhn`` (see :mod:`plotllp.data.images`); tables:
``table:FILE`` (CSV or Parquet, see :mod:`plotllp.data.tables`).
"""

from __future__ import annotations

from ..errors import DataFileError, LLPInputError, PlotLLPError
from .dataset import Dataset
from .images import channel_stats, load_cifar, load_idx_dataset, load_svhn, locate
from .synthetic import digits, moons

__all__ = ["Dataset", "load_dataset", "check_files", "DATASETS", "moons", "digits"]

IMAGE_DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn")
DATASETS = ("moons", "digits") + IMAGE_DATASETS


def _check_images(ds: Dataset) -> None:
    """What every image data set must be: uint8 images (N, C, H, W) with one label in [0, K) each."""
    k = len(ds.class_names) or None
    for part, x, y in (("training", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        if x.ndim != 4 or len(x) != len(y) or len(y) == 0:
            raise DataFileError(f"{ds.name}: the {part} set has images of shape {tuple(x.shape)} and {len(y)} labels "
                                "(expected N images of C x H x W and N labels)")
        if y.min() < 0 or (k is not None and y.max() >= k):
            raise DataFileError(f"{ds.name}: a {part} label is {int(y.min()) if y.min() < 0 else int(y.max())}, "
                                f"outside 0..{(k or 1) - 1}")


def _unknown_dataset(name: str) -> LLPInputError:
    return LLPInputError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}, or table:FILE for a "
                         "CSV or Parquet file of your own")


def check_files(name: str, data_dir: str | None = None) -> None:
    """Raise the error :func:`load_dataset` would for data set ``name`` whose files are missing (an
    image data set's official files in ``data_dir``, a table's file), without reading them."""
    if name in IMAGE_DATASETS:
        locate(name, data_dir or "data")
    elif name.startswith("table:"):
        from .tables import check_table_file

        check_table_file(name[len("table:"):])
    elif name not in DATASETS:
        raise _unknown_dataset(name)


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
        try:
            if name in ("mnist", "fashion_mnist"):
                ds = load_idx_dataset(name, data_dir)
            elif name in ("cifar10", "cifar100"):
                ds = load_cifar(name, data_dir)
            else:
                ds = load_svhn(data_dir)
            _check_images(ds)
        except (PlotLLPError, MemoryError):
            raise
        except Exception as e:  # a damaged or foreign file makes the readers raise many kinds
            raise DataFileError(f"the {name} files in {data_dir} are damaged or not in the official format "
                                f"({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})") from None
    elif name.startswith("table:"):
        from .tables import load_table
        if train_size is not None:
            raise LLPInputError("--train-size does not apply to tables (select rows in the file)")
        return load_table(name[len("table:"):], seed=seed, **(table_options or {}))
    else:
        raise _unknown_dataset(name)
    if train_size is not None and train_size > len(ds.y_train):
        raise LLPInputError(f"--train-size {train_size} is more than the {len(ds.y_train)} training instances of {name}")
    if train_size is not None and train_size < len(ds.y_train):
        ds = ds.subset_train(train_size, seed)
    if ds.is_image and ds.normalization is None:
        ds.normalization = channel_stats(ds.x_train)
    return ds
