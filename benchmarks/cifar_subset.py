"""Write a subset of CIFAR-10 in its official layout, small enough to travel with a device call.

The first ``--per-batch`` images of each of the five training batches and the first ``--test`` images
of the test batch, unchanged, as ``OUT/cifar-10-batches-py/`` (``data_batch_1..5``, ``test_batch``,
``batches.meta``), which ``plotllp train --dataset cifar10 --data-dir OUT`` reads like the full set.
``benchmarks/gpu_session.sh`` uses it: the official archive (163 MB) is over the 64 MiB that a device
call carries. Usage: ``python benchmarks/cifar_subset.py --data-dir ../shared/data --out .gpudata``.
"""

from __future__ import annotations

import argparse
import os
import pickle
import tarfile


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--per-batch", type=int, default=3000, help="images kept of each training batch (of 10,000)")
    ap.add_argument("--test", type=int, default=3000, help="images kept of the test batch (of 10,000)")
    args = ap.parse_args()
    folder = os.path.join(args.out, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    with tarfile.open(os.path.join(args.data_dir, "cifar-10-python.tar.gz"), "r:gz") as tar:
        for m in tar.getmembers():
            name = os.path.basename(m.name)
            if not m.isfile() or not (name.startswith(("data_batch_", "test_batch")) or name == "batches.meta"):
                continue
            d = pickle.load(tar.extractfile(m), encoding="bytes")
            if name != "batches.meta":
                n = args.test if name == "test_batch" else args.per_batch
                d = {b"batch_label": d[b"batch_label"], b"labels": d[b"labels"][:n], b"data": d[b"data"][:n],
                     b"filenames": d[b"filenames"][:n]}
            with open(os.path.join(folder, name), "wb") as f:
                pickle.dump(d, f, protocol=pickle.HIGHEST_PROTOCOL)
            print(f"wrote {os.path.join(folder, name)}")


if __name__ == "__main__":
    main()
