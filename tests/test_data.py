"""Readers of the official formats: the real files in ../shared/data, and small files of the official
formats that the tests write themselves (CIFAR-100, SVHN, IDX), plus missing and corrupt files."""

import contextlib
import gzip
import hashlib
import json
import os
import pickle
import struct
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from plotllp.data import load_dataset
from plotllp.data.images import read_idx
from plotllp.errors import DataFileError, LLPInputError

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
needs_shared = pytest.mark.skipif(not os.path.isdir(SHARED), reason="../shared/data is not here")


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "plotllp", *args], capture_output=True, text=True, timeout=300, cwd=cwd)


@needs_shared
@pytest.mark.parametrize("name, mean, std", [("mnist", 0.1307, 0.3081), ("fashion_mnist", 0.2860, 0.3530)])
def test_real_idx_datasets(name, mean, std):
    ds = load_dataset(name, data_dir=SHARED)
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.x_train.dtype == np.uint8 and ds.num_classes == 10
    assert abs(ds.normalization[0][0] - mean) < 1e-3 and abs(ds.normalization[1][0] - std) < 1e-3
    if name == "fashion_mnist":
        assert (np.bincount(ds.y_train) == 6000).all()


@needs_shared
def test_real_cifar10_from_the_archive():
    ds = load_dataset("cifar10", data_dir=os.path.join(SHARED, "cifar-10-python.tar.gz"))
    assert ds.x_train.shape == (50000, 3, 32, 32) and ds.x_test.shape == (10000, 3, 32, 32)
    assert (np.bincount(ds.y_train) == 5000).all() and (np.bincount(ds.y_test) == 1000).all()
    assert ds.class_names[0] == "airplane"
    assert np.allclose(ds.normalization[0], [0.4914, 0.4822, 0.4465], atol=1e-3)
    assert np.allclose(ds.normalization[1], [0.2470, 0.2435, 0.2616], atol=1e-3)


def write_cifar100(folder, n_train=40, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"fine_labels": rng.integers(0, 100, n).tolist(),
             b"coarse_labels": rng.integers(0, 20, n).tolist()}
        with open(os.path.join(folder, split), "wb") as fh:
            pickle.dump(d, fh)
    with open(os.path.join(folder, "meta"), "wb") as fh:
        pickle.dump({b"fine_label_names": [f"class{i}".encode() for i in range(100)]}, fh)


def test_cifar100_folder_and_archive(tmp_path):
    write_cifar100(tmp_path / "cifar-100-python")
    ds = load_dataset("cifar100", data_dir=str(tmp_path))
    assert ds.x_train.shape == (40, 3, 32, 32) and ds.num_classes == 100 and ds.class_names[3] == "class3"
    raw = pickle.load(open(tmp_path / "cifar-100-python" / "train", "rb"))
    assert np.array_equal(ds.x_train.reshape(40, -1), raw[b"data"]) and ds.y_train.tolist() == raw[b"fine_labels"]
    with tarfile.open(tmp_path / "cifar-100-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "cifar-100-python", arcname="cifar-100-python")
    for where in (tmp_path / "cifar-100-python.tar.gz", tmp_path / "cifar-100-python"):
        again = load_dataset("cifar100", data_dir=str(where))
        assert np.array_equal(again.x_train, ds.x_train) and np.array_equal(again.y_test, ds.y_test)


def test_svhn_mat(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(1)
    for split, n in (("train", 30), ("test", 10)):
        savemat(tmp_path / f"{split}_32x32.mat", {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                                                   "y": rng.integers(1, 11, (n, 1)).astype(np.uint8)})
    ds = load_dataset("svhn", data_dir=str(tmp_path))
    raw = __import__("scipy.io").io.loadmat(tmp_path / "train_32x32.mat")
    assert ds.x_train.shape == (30, 3, 32, 32)
    assert np.array_equal(ds.x_train[4, 2], raw["X"][:, :, 2, 4])
    assert set(ds.y_train.tolist()) <= set(range(10)) and (ds.y_train[raw["y"].ravel() == 10] == 0).all()


def write_idx(path, arr, gz=True):
    head = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = head + arr.astype(np.uint8).tobytes()
    with (gzip.open if gz else open)(path, "wb") as fh:    # closed here: Python 3.12's GzipFile buffers writes
        fh.write(data)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_written_by_hand(tmp_path, gz):
    rng = np.random.default_rng(2)
    ext = ".gz" if gz else ""
    imgs = {"train": rng.integers(0, 256, (12, 28, 28)), "t10k": rng.integers(0, 256, (5, 28, 28))}
    for split, x in imgs.items():
        write_idx(tmp_path / f"{split}-images-idx3-ubyte{ext}", x, gz)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte{ext}", np.arange(len(x)) % 10, gz)
    ds = load_dataset("mnist", data_dir=str(tmp_path))
    assert np.array_equal(ds.x_train[:, 0], imgs["train"]) and ds.y_test.tolist() == [0, 1, 2, 3, 4]


def test_corrupt_and_missing_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x00\x00\x09\x01\x00\x00\x00\x02ab")
    with pytest.raises(DataFileError, match="bad magic"):
        read_idx(str(tmp_path / "bad"))
    write_idx(tmp_path / "short", np.zeros((4, 3)), gz=False)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-2])
    with pytest.raises(DataFileError, match="truncated"):
        read_idx(str(tmp_path / "short"))
    with pytest.raises(DataFileError, match="train-images-idx3-ubyte"):
        load_dataset("fashion_mnist", data_dir=str(tmp_path))
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"this is not gzip")
    with pytest.raises(DataFileError, match="not a readable .tar.gz"):
        load_dataset("cifar10", data_dir=str(tmp_path))
    write_cifar100(tmp_path / "c100")
    (tmp_path / "c100" / "test").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataFileError, match="corrupt"):
        load_dataset("cifar100", data_dir=str(tmp_path / "c100"))


def test_damaged_files_that_parse(tmp_path):
    """Files that read without error but hold what no official file holds: one-line DataFileErrors."""
    for split in ("train", "t10k"):                       # IDX files with no images
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", np.zeros((0, 28, 28)), gz=False)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", np.zeros(0), gz=False)
    with pytest.raises(DataFileError, match="mnist"):
        load_dataset("mnist", data_dir=str(tmp_path))
    write_cifar100(tmp_path / "c100")
    d = pickle.load(open(tmp_path / "c100" / "train", "rb"))
    d[b"fine_labels"][3] = 100                            # a label outside 0..99
    pickle.dump(d, open(tmp_path / "c100" / "train", "wb"))
    with pytest.raises(DataFileError, match="a training label is 100, outside 0..99"):
        load_dataset("cifar100", data_dir=str(tmp_path / "c100"))
    pickle.dump(7, open(tmp_path / "c100" / "meta", "wb"))  # a pickle, but not the official dict
    with pytest.raises(DataFileError, match="damaged or not in the official format"):
        load_dataset("cifar100", data_dir=str(tmp_path / "c100"))


def test_data_command(tmp_path):
    write_cifar100(tmp_path / "cifar-100-python")
    r = cli("data", "cifar100", "--data-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["train_size"] == 40 and info["test_size"] == 20 and info["shape"] == [3, 32, 32]
    assert len(info["mean"]) == 3 and len(info["class_names"]) == 100
    r = cli("data", "svhn", "--data-dir", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "train_32x32.mat" in r.stderr


def test_train_on_images_end_to_end(tmp_path):
    write_cifar100(tmp_path / "cifar-100-python", n_train=64, n_test=32)
    out = tmp_path / "run"
    r = cli("train", "--dataset", "cifar100", "--data-dir", str(tmp_path), "--model", "small-cnn", "--bag-size", "16",
            "--epochs1", "1", "--epochs2", "1", "--mixup", "--device", "cpu", "--out", str(out))
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["data"]["bags"] == 4 and res["data"]["num_classes"] == 100
    assert 0 <= res["final"]["test_accuracy"] <= 1


@needs_shared
def test_train_size_subset_is_fixed(tmp_path):
    a = load_dataset("fashion_mnist", data_dir=SHARED, train_size=500, seed=3)
    b = load_dataset("fashion_mnist", data_dir=SHARED, train_size=500, seed=3)
    assert len(a.y_train) == 500 and np.array_equal(a.x_train, b.x_train) and len(a.y_test) == 10000
    with pytest.raises(LLPInputError, match="more than the 60000 training instances"):
        load_dataset("fashion_mnist", data_dir=SHARED, train_size=60001)


def test_random_crop_flip_is_a_translation_and_flip():
    import torch

    from plotllp.augment import random_crop_flip

    torch.manual_seed(0)
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8) + 1
    out = random_crop_flip(x, pad=2)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):     # each output is one crop of the padded image, flipped or not
        crops = [padded[i, :, a:a + 8, b:b + 8] for a in range(5) for b in range(5)]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(2)) for c in crops)
    u8 = torch.randint(0, 255, (4, 1, 6, 6), dtype=torch.uint8)
    assert random_crop_flip(u8).dtype == torch.uint8


@contextlib.contextmanager
def served_cifar100(folder):
    """A small CIFAR-100 archive written into ``folder`` and served by a local HTTP server while the block
    runs: ``(url, md5, requests)``, the paths it was asked for collected in ``requests``."""
    import functools
    import hashlib
    import http.server
    import threading

    write_cifar100(folder / "cifar-100-python")
    with tarfile.open(folder / "cifar-100-python.tar.gz", "w:gz") as tar:
        tar.add(folder / "cifar-100-python", arcname="cifar-100-python")
    md5 = hashlib.md5((folder / "cifar-100-python.tar.gz").read_bytes()).hexdigest()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cifar-100-python.tar.gz", md5, requests
    finally:
        server.shutdown()


def test_download_from_a_local_server(tmp_path):
    """--download against a local HTTP server serving a file the test wrote: verified by MD5,
    kept on success, never kept when the checksum is wrong, one-line error when unreachable."""
    from plotllp.data.download import download

    with served_cifar100(tmp_path / "served") as (url, md5, _):
        dest = tmp_path / "data"
        paths = download("cifar100", str(dest), log=lambda *a, **k: None,
                         sources={"cifar100": ("", [(url, "cifar-100-python.tar.gz", md5)])})
        assert paths == [str(dest / "cifar-100-python.tar.gz")]
        assert load_dataset("cifar100", data_dir=str(dest)).x_train.shape == (40, 3, 32, 32)
        with pytest.raises(DataFileError, match="expected 0000"):
            download("cifar100", str(tmp_path / "bad"), log=lambda *a, **k: None,
                     sources={"cifar100": ("", [(url, "cifar-100-python.tar.gz", "0" * 32)])})
        assert not any((tmp_path / "bad").iterdir())          # nothing half-downloaded is left behind
        with pytest.raises(DataFileError, match="cannot download"):
            download("cifar100", str(tmp_path / "gone"), log=lambda *a, **k: None,
                     sources={"cifar100": ("", [(url.replace(".tar.gz", ".nope"), "x.tar.gz", md5)])})


# -- from a second mutation audit: each test below fails on a small bug that the others let pass --

def test_a_corrupt_file_already_there_is_downloaded_again(tmp_path):
    """fetch: a file at the destination whose MD5 is not the official one is replaced, not kept."""
    from plotllp.data.download import fetch

    good = tmp_path / "served.bin"
    good.write_bytes(b"the official bytes")
    md5 = hashlib.md5(good.read_bytes()).hexdigest()
    dest = tmp_path / "data" / "file.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"a half-downloaded or corrupt file")
    assert fetch(good.as_uri(), str(dest), md5) == str(dest)
    assert dest.read_bytes() == b"the official bytes"
