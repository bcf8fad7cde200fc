"""Finished runs as table entries: find ``results.json`` files, name each run's methods, and group
their test accuracies by (data set, method, bag size) over seeds.

A run with a second stage yields two entries: its first stage alone (``first_stage`` metrics, the
model before PLOT) and the first stage followed by PLOT (``final``). A run without one yields the first
stage only. When several runs of the same seed give the same entry (a ``_none`` run and a ``_plot``
run of one cell), the first found is kept, so a seed is never counted twice.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass, field

from ..errors import LLPInputError

STAGE_NAMES = {"dllp": "DLLP", "vat": "LLP-VAT", "gan": "LLP-GAN"}
STAGE_ORDER = list(STAGE_NAMES)


def find_results(paths) -> list[str]:
    """Every ``results.json`` under ``paths`` (files or folders, searched recursively), sorted."""
    found = []
    for p in paths:
        if os.path.isfile(p):
            found.append(p)
        elif os.path.isdir(p):
            for d, _, files in os.walk(p):
                if "results.json" in files:
                    found.append(os.path.join(d, "results.json"))
        else:
            raise LLPInputError(f"{p} does not exist (give results.json files or folders that hold them)")
    if not found:
        raise LLPInputError(f"no results.json under {', '.join(map(str, paths))}")
    return sorted(found)


def load(path: str) -> dict:
    try:
        with open(path) as f:
            r = json.load(f)
        cfg = r["config"]
        if not (isinstance(r["first_stage"], dict) and isinstance(r["final"], dict)):
            raise TypeError("first_stage and final must hold metrics")
        for key in ("dataset", "first_stage", "bag_size", "seed"):      # the settings every table and figure reads
            cfg[key]                                                   # noqa: B018
        int(cfg["bag_size"]), int(cfg["seed"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise LLPInputError(f"{path} is not a plotllp results.json ({type(e).__name__}: {e})") from None
    return r


def plot_variant(cfg: dict) -> str:
    """How this run's second stage differs from the paper's default (hard OT labels, SCE, no mixup)."""
    parts = []
    if cfg.get("pseudo_source", "ot") == "predictions":
        parts.append("no OT")
    if cfg.get("labels", "hard") == "soft":
        parts.append("soft")
    if cfg.get("loss", "sce") == "ce":
        parts.append("CE")
    if cfg.get("mixup"):
        parts.append("mixup")
    return f" ({', '.join(parts)})" if parts else ""


@dataclass
class Entry:
    dataset: str
    method: str
    bag_size: int             # 0 for a table's own bags (from its bag column, of many sizes)
    seed: int
    value: float
    path: str
    order: tuple = field(default=(0,), compare=False)


def entries(paths, metric: str = "test_accuracy") -> list[Entry]:
    """Table entries of the runs under ``paths`` (see the module docstring)."""
    out, seen = [], set()
    for path in find_results(paths):
        r = load(path)
        cfg = r["config"]
        first = cfg["first_stage"]
        name = STAGE_NAMES.get(first, first)
        rank = STAGE_ORDER.index(first) if first in STAGE_ORDER else len(STAGE_ORDER)
        rows = [(name, r["first_stage"], (rank, 0, ""))]
        if cfg.get("second_stage", "none") != "none" and int(cfg.get("epochs2", 0)) > 0:
            variant = plot_variant(cfg)
            rows.append((f"{name} + PLOT{variant}", r["final"], (rank, 1, variant)))
        bag_size = 0 if str(cfg["dataset"]).startswith("table:") else int(cfg["bag_size"])   # 0: the table's bags
        for method, metrics, order in rows:
            key = (cfg["dataset"], method, bag_size, int(cfg["seed"]), int(cfg.get("bag_seed", 0)),
                   int(cfg.get("data_seed", 0)))
            value = metrics.get(metric)
            if key in seen or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue                                  # not reported (or not a number) by this run
            seen.add(key)
            out.append(Entry(cfg["dataset"], method, bag_size, int(cfg["seed"]), float(metrics[metric]), path, order))
    return out


@dataclass
class Cell:
    values: list

    @property
    def mean(self) -> float:
        return statistics.mean(self.values)

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (0 for one seed)."""
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0


def aggregate(items: list[Entry]) -> dict:
    """``{dataset: (methods in order, bag sizes, {(method, bag): Cell})}``."""
    out = {}
    for ds in sorted({e.dataset for e in items}):
        mine = [e for e in items if e.dataset == ds]
        order = {}
        for e in mine:
            order.setdefault(e.method, e.order)
        methods = sorted(order, key=lambda m: order[m])
        bags = sorted({e.bag_size for e in mine})
        cells: dict = {}
        for e in mine:
            cells.setdefault((e.method, e.bag_size), Cell([])).values.append(e.value)
        out[ds] = (methods, bags, cells)
    return out
