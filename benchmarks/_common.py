"""Shared helpers of the benchmark scripts: provenance header and result files."""

from __future__ import annotations

import datetime
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


@functools.cache
def commit() -> str:
    """The checkout's commit (``+uncommitted`` when tracked files differ); ``$PLOTLLP_COMMIT`` where there
    is no git checkout (a copy of the tree sent to another machine). Read once, when this module is
    imported: a result file names the code that ran, even if the checkout moves on during a long run."""
    if os.environ.get("PLOTLLP_COMMIT"):
        return os.environ["PLOTLLP_COMMIT"]
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
        return (rev or "unknown") + ("+uncommitted" if dirty else "")
    except OSError:
        return "unknown"


commit()


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    # ATen's CPU kernels (AVX2, AVX512, ...; ATEN_CPU_CAPABILITY picks them): CPU results are bit-identical
    # only on the same ones (docs/reproducing.md)
    try:
        isa = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):          # an older torch
        isa = "unknown"
    return (f"{os.cpu_count()} CPU cores ({cpu}){gpu}, torch {torch.__version__} ({torch.get_num_threads()} "
            f"threads, ATen {isa} kernels), Python {platform.python_version()}")


def header(title: str) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
    return (f"# {title}\n\n- command: `{cmd}`\n- commit: {commit()}\n- machine: {machine()}\n"
            f"- date: {now}\n")


def table_head(*columns) -> str:
    """A Markdown table's header row and separator row."""
    return "| " + " | ".join(map(str, columns)) + " |\n|" + " --- |" * len(columns) + "\n"


def write(name: str, text: str, out_dir: str = RESULTS) -> str:
    """Write ``text`` to ``out_dir/name`` (default: benchmarks/results); returns the path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name)
    with open(path, "w") as f:
        f.write(text)
    print(f"wrote {os.path.relpath(path)}")
    return path


def mean_std(xs) -> str:
    """Fractions as a percentage "mean (std)" (sample std; 0 for one value)."""
    xs = [100 * x for x in xs]
    return f"{statistics.mean(xs):.2f} ({statistics.stdev(xs) if len(xs) > 1 else 0.0:.2f})"


def load_raw(name: str) -> dict:
    """The per-run numbers an earlier invocation left in ``results/NAME`` (empty if none)."""
    path = os.path.join(RESULTS, name)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def resumable_runs(raw_path: str, raw: dict, run, log, *, reuse_finished: bool = False):
    """``once(settings, tag)``: ``run(settings, tag, log)`` tagged, or the result of the same tag left
    by an earlier invocation at this commit. Each new result is written to ``raw_path`` (under
    ``"partial"``, beside ``raw``) as soon as it exists, so an interruption loses at most one run.
    ``raw``'s ``"partial"`` entry is taken out; ``reuse_finished`` also reuses the runs of ``raw``'s
    other entries (lists of tagged runs) from a finished invocation."""
    finished = raw.pop("partial", [])
    earlier = [r for runs in raw.values() for r in runs] if reuse_finished else []
    done = {r["tag"]: r for r in [*earlier, *finished] if "tag" in r}

    def once(settings, tag):
        if tag in done and done[tag]["commit"] == commit():
            log(f"{tag}: kept from an earlier invocation")
            return done[tag]
        out = {**run(settings, tag, log), "tag": tag}
        finished.append(out)
        with open(raw_path, "w") as f:
            json.dump({**raw, "partial": finished}, f, indent=1)
        done[tag] = out
        return out
    return once


def clock_log():
    """A ``log(msg)`` that prefixes the seconds since it was made."""
    t0 = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t0:7.0f}s] {msg}", flush=True)
    return log


def make_case(n_total, n_classes, bag_size, seed=0):
    """Predictions of a synthetic classifier that is right about 70% of the time (confident but
    imperfect, as a first stage is) and proportions from the true labels: ``(probs, bag ids,
    proportions, class counts, number of bags)`` for ``n_total // bag_size`` bags."""
    rng = np.random.default_rng(seed)
    m = n_total // bag_size
    n = m * bag_size
    y = rng.integers(0, n_classes, n)
    logits = rng.normal(0, 1.5, (n, n_classes))
    right = rng.random(n) < 0.7
    guess = np.where(right, y, rng.integers(0, n_classes, n))
    logits[np.arange(n), guess] += 4.0
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    ids = np.repeat(np.arange(m), bag_size)
    counts = np.zeros((m, n_classes))
    np.add.at(counts, (ids, y), 1)
    return probs, ids, counts / bag_size, counts, m
