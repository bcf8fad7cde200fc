"""Readers for the official on-disk formats of image data sets (no torchvision needed).

- MNIST, Fashion-MNIST: the four IDX files (``train-images-idx3-ubyte`` ... ``t10k-labels-idx1-ubyte``),
  gzipped or not, in ``DIR`` or ``DIR/mnist`` (``DIR/fashion_mnist``).
- CIFAR-10: the "python version" (``cifar-10-batches-py/`` with ``data_batch_1..5``, ``test_batch``,
  ``batches.meta``); CIFAR-100: ``cifar-100-python/`` with ``train``, ``test``, ``meta`` (fine labels).
  Either the extracted folder (or its parent) or the downloaded ``.tar.gz`` archive itself.
- SVHN: ``train_32x32.mat`` and ``test_32x32.mat`` (label 10 stands for the digit 0).

Images come back as uint8 arrays of shape (N, C, H, W); labels as int64.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import tarfile

import numpy as np

from ..errors import DataFileError
from .dataset import Dataset

MNIST_FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
               "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
CIFAR = {"cifar10": ("cifar-10-batches-py", "cifar-10-python.tar.gz"),
         "cifar100": ("cifar-100-python", "cifar-100-python.tar.gz")}


# -- IDX (MNIST, Fashion-MNIST) ----------------------------------------------------------------
def read_idx(path: str) -> np.ndarray:
    """An IDX file (gzipped or not) as a numpy array; raises :class:`DataFileError` if it is not one."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as e:
        raise DataFileError(f"cannot read {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataFileError(f"{path} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DataFileError(f"{path} is truncated (no complete IDX header)")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    expected = 4 + 4 * ndim + int(np.prod(shape))
    if len(raw) != expected:
        raise DataFileError(f"{path} has {len(raw)} bytes but its header says {expected} (truncated or corrupt)")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find(folder: str, stem: str) -> str:
    for name in (stem, stem + ".gz"):
        p = os.path.join(folder, name)
        if os.path.isfile(p):
            return p
    raise DataFileError(f"missing {os.path.join(folder, stem)}[.gz]: expected the four IDX files "
                        f"{', '.join(MNIST_FILES.values())} (gzipped or not) in {folder}")


def _data_folder(folder: str) -> None:
    if os.path.isfile(folder):
        raise DataFileError(f"--data-dir {folder} is a file; give the folder that holds the data set's files")
    if not os.path.isdir(folder):
        raise DataFileError(f"data folder {folder} does not exist (use --data-dir)")


def _idx_files(name: str, data_dir: str) -> dict:
    """The four IDX files of MNIST or Fashion-MNIST in ``data_dir`` or ``data_dir/name``."""
    folder = data_dir
    sub = os.path.join(data_dir, name)
    if not any(os.path.exists(os.path.join(folder, MNIST_FILES["train_x"] + e)) for e in ("", ".gz")) \
            and os.path.isdir(sub):
        folder = sub
    _data_folder(folder)
    return {k: _find(folder, stem) for k, stem in MNIST_FILES.items()}


def _svhn_file(data_dir: str, split: str) -> str:
    path = os.path.join(data_dir, f"{split}_32x32.mat")
    if not os.path.isfile(path):
        alt = os.path.join(data_dir, "svhn", f"{split}_32x32.mat")
        if not os.path.isfile(alt):
            if os.path.isfile(data_dir):
                _data_folder(data_dir)
            raise DataFileError(f"missing {path}: expected train_32x32.mat and test_32x32.mat in {data_dir}")
        path = alt
    return path


def locate(name: str, data_dir: str) -> None:
    """Check that the official files of image data set ``name`` are in ``data_dir`` (without reading
    them): the error :func:`load_idx_dataset`, :func:`load_cifar` or :func:`load_svhn` would raise."""
    if name in ("mnist", "fashion_mnist"):
        _idx_files(name, data_dir)
    elif name in CIFAR:
        src = _Source(name, data_dir)
        if src.tar is not None:
            src.tar.close()
    else:
        for split in ("train", "test"):
            _svhn_file(data_dir, split)


def load_idx_dataset(name: str, data_dir: str) -> Dataset:
    """MNIST or Fashion-MNIST from ``data_dir`` or ``data_dir/name``."""
    files = _idx_files(name, data_dir)
    folder = os.path.dirname(files["train_x"])
    arrays = {k: read_idx(path) for k, path in files.items()}
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise DataFileError(f"{name} {split}: images of shape {tuple(x.shape)} and labels of shape {tuple(y.shape)} "
                                f"in {folder} (expected N x H x W images and N labels)")
        if y.max() > 9:
            raise DataFileError(f"{name} {split} labels go up to {int(y.max())}; expected 0..9")
    classes = FASHION_CLASSES if name == "fashion_mnist" else [str(i) for i in range(10)]
    return Dataset(name, arrays["train_x"][:, None].copy(), arrays["train_y"].astype(np.int64),
                   arrays["test_x"][:, None].copy(), arrays["test_y"].astype(np.int64), classes)


# -- CIFAR-10 / CIFAR-100 python pickles -----------------------------------------------------------
class _Source:
    """Files of a CIFAR folder, read from the extracted folder or from inside the .tar.gz archive."""

    def __init__(self, name: str, data_dir: str):
        folder, archive = CIFAR[name]
        self.tar = None
        self.layout = f"{folder}/ (extracted) or {archive}"
        candidates = [data_dir, os.path.join(data_dir, folder)]
        for c in candidates:
            if os.path.isdir(c) and os.path.isfile(os.path.join(c, "batches.meta" if name == "cifar10" else "meta")):
                self.folder = c
                return
        tar_path = data_dir if data_dir.endswith((".tar.gz", ".tgz")) else os.path.join(data_dir, archive)
        if os.path.isfile(tar_path):
            try:
                self.tar = tarfile.open(tar_path, "r:gz")
                self.members = {m.name.split("/", 1)[-1]: m for m in self.tar.getmembers() if m.isfile()}
            except (tarfile.TarError, OSError, EOFError) as e:
                raise DataFileError(f"{tar_path} is not a readable .tar.gz archive ({e})") from None
            self.where = tar_path
            return
        raise DataFileError(f"no {name} data in {data_dir}: expected {self.layout} there (use --data-dir)")

    def load(self, name: str) -> dict:
        try:
            if self.tar is not None:
                if name not in self.members:
                    raise DataFileError(f"{self.where} has no file {name}: expected the layout {self.layout}")
                fh = self.tar.extractfile(self.members[name])
                return pickle.load(fh, encoding="bytes")
            path = os.path.join(self.folder, name)
            if not os.path.isfile(path):
                raise DataFileError(f"missing {path}: expected the layout {self.layout}")
            with open(path, "rb") as fh:
                return pickle.load(fh, encoding="bytes")
        except DataFileError:
            raise
        except (pickle.UnpicklingError, EOFError, OSError, tarfile.TarError, ValueError) as e:
            raise DataFileError(f"{name} of the CIFAR data is corrupt ({type(e).__name__}: {e})") from None


def _get(d: dict, key: str):
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise DataFileError(f"CIFAR pickle has no '{key}' entry")


def _images(batch: dict, where: str) -> np.ndarray:
    data = np.asarray(_get(batch, "data"), dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DataFileError(f"{where}: 'data' has shape {data.shape}, expected (N, 3072)")
    return data.reshape(-1, 3, 32, 32)


def load_cifar(name: str, data_dir: str) -> Dataset:
    """CIFAR-10 or CIFAR-100 (fine labels) from the official python-version files."""
    src = _Source(name, data_dir)
    if name == "cifar10":
        parts = [src.load(f"data_batch_{i}") for i in range(1, 6)]
        test = src.load("test_batch")
        meta = src.load("batches.meta")
        classes = [c.decode() if isinstance(c, bytes) else c for c in _get(meta, "label_names")]
        label = "labels"
    else:
        parts = [src.load("train")]
        test = src.load("test")
        meta = src.load("meta")
        classes = [c.decode() if isinstance(c, bytes) else c for c in _get(meta, "fine_label_names")]
        label = "fine_labels"
    x_tr = np.concatenate([_images(p, name) for p in parts])
    y_tr = np.concatenate([np.asarray(_get(p, label), dtype=np.int64) for p in parts])
    x_te, y_te = _images(test, name), np.asarray(_get(test, label), dtype=np.int64)
    if x_tr.shape[0] != y_tr.shape[0] or x_te.shape[0] != y_te.shape[0]:
        raise DataFileError(f"{name}: the number of images and labels differ")
    return Dataset(name, x_tr, y_tr, x_te, y_te, classes)


# -- SVHN .mat -----------------------------------------------------------------------------------
def load_svhn(data_dir: str) -> Dataset:
    """SVHN cropped digits from ``train_32x32.mat`` and ``test_32x32.mat`` (label 10 is digit 0)."""
    from scipy.io import loadmat

    out = {}
    for split in ("train", "test"):
        path = _svhn_file(data_dir, split)
        try:
            m = loadmat(path)
            x, y = np.asarray(m["X"]), np.asarray(m["y"]).reshape(-1).astype(np.int64)
        except (ValueError, KeyError, OSError, TypeError, NotImplementedError) as e:
            raise DataFileError(f"{path} is not an SVHN .mat file with X and y ({type(e).__name__})") from None
        if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != y.size:
            raise DataFileError(f"{path}: X has shape {x.shape}, expected (32, 32, 3, N) with N = {y.size} labels")
        out[split] = (np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8), np.where(y == 10, 0, y))
    return Dataset("svhn", *out["train"], *out["test"], [str(i) for i in range(10)])


def channel_stats(x: np.ndarray, chunk: int = 5000) -> tuple[list, list]:
    """Per-channel mean and std of uint8 images (N, C, H, W), in [0, 1] units."""
    c = x.shape[1]
    s = np.zeros(c)
    s2 = np.zeros(c)
    for i in range(0, x.shape[0], chunk):
        b = x[i:i + chunk].astype(np.float64) / 255.0
        s += b.sum(axis=(0, 2, 3))
        s2 += (b ** 2).sum(axis=(0, 2, 3))
    n = x.shape[0] * x.shape[2] * x.shape[3]
    mean = s / n
    return mean.tolist(), np.sqrt(np.maximum(s2 / n - mean ** 2, 0)).tolist()
