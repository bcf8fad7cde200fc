"""Reading a large table: the seconds and memory of ``--dataset table:FILE`` and of ``plotllp predict``.

Writes a CSV (or, with ``--format parquet``, a Parquet file: pyarrow) of ``--rows`` rows (a bag id,
``--features`` numeric columns of 5 decimals, a yes/no label; bags of about ``--bag-size`` rows), then,
each in a fresh Python process, times

- ``load``: ``plotllp.data.tables.load_table(FILE, bag_column="bag", label_column="label")``, what
  ``plotllp train --dataset table:FILE --bag-column bag --label-column label`` does before training;
- ``predict-read``: ``read_table`` (the bag column kept as text) and ``feature_matrix``, what
  ``plotllp predict`` reads,

and records the process's peak resident memory (``VmHWM``, Linux) beside its memory once plotllp was
imported. ``--against REV [REV ...]`` measures the code of other commits the same way (each a ``git
worktree`` in a temporary folder), the codes taking turns.

``--block-sizes N ...`` also times this commit's ``predict-read`` with the CSV reader's block of N rows.

Run: ``python benchmarks/tables.py [--rows 1000000] [--features 20] [--format csv|parquet] [--against REV
...] [--block-sizes N ...]``; writes ``benchmarks/results/tables.md`` (``tables_parquet.md`` for Parquet; or into ``--out-dir``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import RESULTS, commit, header, table_head, write  # noqa: E402

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import plotllp.data.tables as t
def peak_mb():   # this process's high-water mark (ru_maxrss would start at the parent's, kept across exec)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
base = peak_mb()
path, what = sys.argv[2], sys.argv[3]
if len(sys.argv) > 4:   # a CSV block size of the reader's (--block-sizes)
    import functools
    t._read_csv = functools.partial(t._read_csv, block=int(sys.argv[4]))
t0 = time.perf_counter()
if what == "load":
    ds = t.load_table(path, bag_column="bag", label_column="label")
    shape = list(ds.x_train.shape) + [int(ds.bags.num_bags)]
else:
    import inspect   # (an older read_table has no text=)
    cols = t.read_table(path, **({"text": ["bag"]} if "text" in inspect.signature(t.read_table).parameters else {}))
    x = t.feature_matrix(path, cols, [c for c in cols if c.startswith("f")])
    shape = list(x.shape)
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "peak_mb": peak_mb(), "import_mb": base, "file": t.__file__,
                  "shape": shape}))
"""


def write_table(path: str, rows: int, features: int, bag_size: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    bag = rng.integers(0, max(1, rows // bag_size), rows)
    label = np.where(x[:, 0] + rng.normal(size=rows) > 0, "yes", "no")
    if path.endswith(".parquet"):                    # the same table, its numbers as float64 columns
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"bag": np.char.add("b", bag.astype(str)),
                                 **{f"f{j}": np.round(x[:, j], 5) for j in range(features)}, "label": label}), path)
        return
    with open(path, "w") as f:
        f.write("bag," + ",".join(f"f{j}" for j in range(features)) + ",label\n")
        for i in range(0, rows, 100_000):            # numpy formats the numbers, a block at a time
            block = x[i:i + 100_000]
            text = np.char.mod("%.5f", block)
            for b, r, y in zip(bag[i:i + 100_000], text, label[i:i + 100_000]):
                f.write(f"b{b}," + ",".join(r) + f",{y}\n")


def measure(src: str, path: str, what: str, block: int | None = None) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, src, path, what, *([str(block)] if block else [])],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"the {what} run with {src} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--bag-size", type=int, default=64)
    ap.add_argument("--format", choices=["csv", "parquet"], default="csv", help="the table file's format")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each kind (the fastest is reported)")
    ap.add_argument("--against", nargs="+", default=[], metavar="REV",
                    help="other commits to measure the same way (each a git worktree)")
    ap.add_argument("--block-sizes", nargs="+", type=int, default=[], metavar="ROWS",
                    help="also time this commit's predict-read of the CSV with each of these reader block sizes")
    ap.add_argument("--out-dir", default=RESULTS, help="folder of the result file (default: benchmarks/results)")
    args = ap.parse_args()
    if args.block_sizes and args.format != "csv":
        raise SystemExit("--block-sizes are the CSV reader's; leave out --format parquet")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"table.{args.format}")
        write_table(path, args.rows, args.features, args.bag_size)
        size_mb = os.path.getsize(path) / 2 ** 20
        print(f"wrote a table of {args.rows:,} rows and {args.features} features, {size_mb:.0f} MB", flush=True)
        codes, trees = [], []
        for i, against in enumerate(args.against):
            tree = os.path.join(tmp, f"against{i}")
            subprocess.run(["git", "worktree", "add", "--detach", "-q", tree, against], check=True)
            trees.append(tree)
            rev = subprocess.run(["git", "rev-parse", "--short", against], capture_output=True, text=True,
                                 check=True).stdout.strip()
            codes.append((rev, os.path.join(tree, "src")))
        codes.append((commit(), SRC))
        runs = [(rev, src, what, None) for what in ("load", "predict-read") for rev, src in codes]
        runs += [(f"{codes[-1][0]}, block {b}", SRC, "predict-read", b) for b in args.block_sizes]
        try:
            results = {(label, what): [] for label, _, what, _ in runs}
            for _ in range(args.repeats):
                for label, src, what, block in runs:        # the codes take turns
                    r = measure(src, path, what, block)
                    results[label, what].append(r)
                    print(f"{label} {what}: {r['seconds']:.2f} s, peak {r['peak_mb']:.0f} MB "
                          f"({r['import_mb']:.0f} MB after import)", flush=True)
        finally:
            for tree in trees:
                subprocess.run(["git", "worktree", "remove", "--force", tree], check=False)
    text = header("Reading a large table") + "\n"
    kind = "CSV" if args.format == "csv" else "Parquet file"
    text += (f"A {kind} of {args.rows:,} rows ({size_mb:.0f} MB): a bag id (bags of about {args.bag_size} rows), "
             f"{args.features} numeric columns written with 5 decimals, a yes/no label. Each run in a fresh "
             "process; the fastest of "
             f"{args.repeats} runs, and the largest peak memory. `load`: `load_table` (what `plotllp train "
             "--dataset table:FILE --label-column label` does before training); `predict-read`: `read_table` "
             "and `feature_matrix` (what `plotllp predict` reads). Peak memory is the process's "
             "(`VmHWM`), the memory after importing plotllp beside it."
             + (" `block N`: the CSV reader's block of N rows (`_read_csv`)." if args.block_sizes else "") + "\n\n")
    text += table_head("code", "what", "seconds", "peak memory MB", "after import MB")
    for (rev, what), runs in results.items():
        text += (f"| {rev} | {what} | {min(r['seconds'] for r in runs):.2f} | "
                 f"{max(r['peak_mb'] for r in runs):.0f} | {max(r['import_mb'] for r in runs):.0f} |\n")
    write("tables.md" if args.format == "csv" else "tables_parquet.md", text, args.out_dir)


if __name__ == "__main__":
    main()
