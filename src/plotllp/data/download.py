"""Fetch the official files of an image data set, verified by checksum.

``download(name, data_dir)`` puts the files where :func:`plotllp.data.load_dataset` looks for them
(``DATA_DIR`` for archives and ``.mat`` files, ``DATA_DIR/NAME/`` for IDX files). A file already
there with the right checksum is not fetched again. Each file is written to a temporary name and
renamed only once its MD5 matches, so an interrupted or corrupt download never leaves a file that
looks complete.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request

from ..errors import DataFileError, LLPInputError

#: name -> (folder relative to data_dir, [(url, file name, md5)]), the addresses of the official pages
SOURCES: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "cifar10": ("", [("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "cifar-10-python.tar.gz",
                      "c58f30108f718f92721af3b95e74349a")]),
    "cifar100": ("", [("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "cifar-100-python.tar.gz",
                       "eb9058c3a382ffc7106e4002c42a8d85")]),
    "mnist": ("mnist", [(f"https://ossci-datasets.s3.amazonaws.com/mnist/{f}", f, md5) for f, md5 in (
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"))]),
    "fashion_mnist": ("fashion_mnist", [(f"http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/{f}", f, md5)
                                        for f, md5 in (
        ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"))]),
    "svhn": ("", [("http://ufldl.stanford.edu/housenumbers/train_32x32.mat", "train_32x32.mat",
                   "e26dedcc434d2e4c54c9b2d4a06d8373"),
                  ("http://ufldl.stanford.edu/housenumbers/test_32x32.mat", "test_32x32.mat",
                   "eb5a983be6a315427106f1b6b13f5d8e")]),
}


def md5sum(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, path: str, md5: str, *, log=None, timeout: float = 60.0) -> str:
    """Download ``url`` to ``path`` unless a file with checksum ``md5`` is already there."""
    if os.path.isfile(path) and md5sum(path) == md5:
        return path
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".download-")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0)
            done = 0
            while True:
                block = resp.read(1 << 20)
                if not block:
                    break
                out.write(block)
                done += len(block)
                if log is not None and total:
                    log(f"\rdownloading {os.path.basename(path)}: {done / 2**20:.1f} / {total / 2**20:.1f} MiB", end="")
        if log is not None and total:
            log("")
        got = md5sum(tmp)
        if got != md5:
            raise DataFileError(f"{url} arrived with MD5 {got}, expected {md5}: the download is corrupt or not the "
                                f"official file; nothing was kept")
        os.replace(tmp, path)
        return path
    except (urllib.error.URLError, OSError, ValueError) as e:
        if isinstance(e, DataFileError):
            raise
        reason = getattr(e, "reason", None) or e
        raise DataFileError(f"cannot download {url}: {reason}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def download(name: str, data_dir: str, *, log=None, sources=None) -> list[str]:
    """Fetch the files of ``name`` into ``data_dir``; returns their paths."""
    sources = SOURCES if sources is None else sources
    if name not in sources:
        raise LLPInputError(f"no download is known for {name!r}; --download works for: {', '.join(sources)}")
    sub, files = sources[name]
    log = log if log is not None else (lambda *a, **k: print(*a, **k, file=sys.stderr, flush=True))
    return [fetch(url, os.path.join(data_dir, sub, fname), md5, log=log) for url, fname, md5 in files]
