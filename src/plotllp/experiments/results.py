"""Finished runs as table entries: find ``results.json`` files, name each run's methods, and group
their test accuracies by (data set, method, bag size) over seeds.

A run with a second stage yields two entries: its first stage alone (``first_stage`` metrics, the
model before PLOT) and the first stage followed by PLOT (``final``; for ``seconds``, both stages'
time). A run without one yields the first stage only, and a PLOT run that continues another listed
run's model (``--init`` that run's file, ``--epochs1 0``) yields its PLOT entry only. When several runs
of the same seed and settings give the same entry (a ``_none`` run and a ``_plot`` run of one cell share
their first stage; a run repeated on another device), the first found is kept, so a seed is never
counted twice.

Runs are told apart by every setting that changes what they compute (not the seeds, which a cell
averages over; not where or how they ran, :data:`plotllp.config.RUN_SETTINGS`; for a first-stage
entry, not the second stage's settings). Where runs of one method and bag size differ in such a
setting (a grid over learning rates, two sweeps of other epochs), the method's name carries it, e.g.
``DLLP [lr=0.01]``, and each setting gets its own row: runs of different settings are never merged.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass, field

from ..config import CHECKPOINT, FIELDS, RUN_SETTINGS, SECOND_STAGE_SETTINGS, augment_name, saved_setting
from ..errors import LLPInputError

STAGE_NAMES = {"dllp": "DLLP", "vat": "LLP-VAT", "gan": "LLP-GAN"}
STAGE_ORDER = list(STAGE_NAMES)
SEED_SETTINGS = ("seed", "bag_seed", "data_seed")
#: Settings read by one first stage only (a DLLP run's vat_xi changes nothing).
_STAGE_ONLY = {"vat": ("vat_xi", "vat_eps", "vat_weight", "vat_ramp", "vat_normalize"),
               "gan": ("gan_z_dim", "gan_generator")}


def find_results(paths) -> list[str]:
    """Every ``results.json`` under ``paths`` (files or folders, searched recursively) of a finished run,
    sorted: one beside a ``checkpoint.pt`` is left out, as ``plotllp sweep`` and ``train --resume`` take
    it (its run was stopped before it had written all its files; :func:`unfinished` lists them)."""
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
    found = [p for p in found if not os.path.exists(os.path.join(os.path.dirname(p), CHECKPOINT))]
    if not found:
        busy = unfinished(paths)
        raise LLPInputError(f"no results.json of a finished run under {', '.join(map(str, paths))}"
                            + (f" ({len(busy)} folder{'s' if len(busy) > 1 else ''} with a run in progress or "
                               f"interrupted, {CHECKPOINT})" if busy else ""))
    return sorted(found)


def unfinished(paths) -> list[str]:
    """The folders under ``paths`` (as :func:`find_results` searches them) that hold a ``checkpoint.pt``: a
    run in progress or interrupted, whose results are not there yet, or not all written (``plotllp train
    --resume`` completes them)."""
    found = set()
    for p in paths:
        if os.path.isdir(p):
            found.update(d for d, _, files in os.walk(p) if CHECKPOINT in files)
        elif os.path.isfile(os.path.join(os.path.dirname(p), CHECKPOINT)):
            found.add(os.path.dirname(p) or ".")
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


def variant_rank(cfg: dict) -> tuple:
    """Where a PLOT variant's row goes: the paper's Table 3 order (the model's own predictions before
    OT labels; CE before SCE; mixup last)."""
    return (cfg.get("pseudo_source", "ot") == "ot", bool(cfg.get("mixup")), cfg.get("labels", "hard") == "soft",
            cfg.get("loss", "sce") == "sce")


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


def settings_of(cfg: dict, *, first_stage_only: bool = False, metric: str = "test_accuracy") -> dict:
    """The settings of a saved run that change what it computes (module docstring), as
    ``{name: value}``, each written one way (``lr2`` equal to ``lr`` is None; ``augment`` auto is what it
    resolves to; moons' ``train_size`` None is 2000); with ``first_stage_only``, those its first stage
    reads (and, for the first stage's OT diagnostics ``metric`` ``train_acc_ot*``, the OT's settings)."""
    first = saved_setting(cfg, "first_stage")
    dataset = str(saved_setting(cfg, "dataset"))
    skip = set(RUN_SETTINGS) | set(SEED_SETTINGS) | {"bag_size", "chunk_size"}     # chunked DLLP steps are exact
    skip |= {k for stage, keys in _STAGE_ONLY.items() if stage != first for k in keys}
    if dataset != "moons":
        skip.add("noise")
    if saved_setting(cfg, "bags") != "dirichlet":
        skip.add("bag_alpha")
    if first_stage_only:
        skip |= SECOND_STAGE_SETTINGS - ({"labels", "reg", "ensemble"} if metric.startswith("train_acc_ot") else set())
    out = {k: saved_setting(cfg, k) for k in FIELDS if k not in skip}
    if "lr2" in out and out["lr2"] == out["lr"]:
        out["lr2"] = None                                    # None: PLOT's learning rate is lr
    if "augment" in out:
        out["augment"] = augment_name(out["augment"], dataset)
    if dataset == "moons" and out.get("train_size") is None:
        out["train_size"] = 2000
    return out


def varying(settings: list[dict]) -> list[str]:
    """The names whose values differ among those of ``settings`` that have them (in the order of
    :data:`plotllp.config.FIELDS`): a setting a run does not have (``vat_xi`` of a DLLP run, :func:`settings_of`)
    does not apply to it, and does not tell it apart."""
    return [k for k in FIELDS if len({repr(s[k]) for s in settings if k in s}) > 1]


def describe(settings: dict, names) -> str:
    """``"[lr=0.01, epochs1=30]"`` for those of ``names`` that ``settings`` has; empty without any."""
    text = ", ".join(f"{k}={settings[k]}" for k in names if k in settings)
    return f" [{text}]" if text else ""


def entries(paths, metric: str = "test_accuracy") -> list[Entry]:
    """Table entries of the runs under ``paths`` (see the module docstring)."""
    raw = []
    found = find_results(paths)
    run_dirs = {os.path.dirname(os.path.realpath(p)) for p in found}
    for path in found:
        r = load(path)
        cfg = r["config"]
        first = cfg["first_stage"]
        name = STAGE_NAMES.get(first, first)
        rank = STAGE_ORDER.index(first) if first in STAGE_ORDER else len(STAGE_ORDER)
        rows = [(name, r["first_stage"].get(metric), (rank, 0, (), ""),
                 settings_of(cfg, first_stage_only=True, metric=metric))]
        init = saved_setting(cfg, "init")
        if int(saved_setting(cfg, "epochs1")) == 0 and init and os.path.dirname(os.path.realpath(init)) in run_dirs:
            rows = []                 # PLOT from another listed run's model: that run's first stage is this one's
        if cfg.get("second_stage", "none") != "none" and int(cfg.get("epochs2", 0)) > 0:
            variant = plot_variant(cfg)
            value = r["final"].get(metric)
            if metric == "seconds" and is_number(value) and is_number(r["first_stage"].get(metric)):
                value += r["first_stage"][metric]          # the first stage, then PLOT: both stages' time
            rows.append((f"{name} + PLOT{variant}", value, (rank, 1, variant_rank(cfg), variant), settings_of(cfg)))
        bag_size = 0 if str(cfg["dataset"]).startswith("table:") else int(cfg["bag_size"])   # 0: the table's bags
        seeds = tuple(int(saved_setting(cfg, k)) for k in SEED_SETTINGS)
        for method, value, order, settings in rows:
            if is_number(value):                            # else not reported (or not a number) by this run
                raw.append((str(cfg["dataset"]), method, bag_size, seeds, settings, float(value), path, order))
    # the settings that tell apart runs of one method and bag size name the rows of their data set's table
    # (every row that has them, so that rows from two sweeps say which they come from)
    groups: dict = {}
    for ds, method, bag_size, _, settings, *_ in raw:
        groups.setdefault((ds, method, bag_size), []).append(settings)
    shown: dict = {}
    for (ds, *_), column in groups.items():
        shown.setdefault(ds, set()).update(varying(column))
    out, seen = [], set()
    for ds, method, bag_size, seeds, settings, value, path, order in raw:
        label = method + describe(settings, [k for k in FIELDS if k in shown[ds] and k in settings])
        key = (ds, label, bag_size, seeds, repr(sorted(settings.items())))
        if key in seen:
            continue
        seen.add(key)
        out.append(Entry(ds, label, bag_size, seeds[0], value, path, order + (label,)))
    return out


def is_number(value) -> bool:
    """A metric's value a table can show: a number, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class Cell:
    values: list

    @property
    def mean(self) -> float:
        return statistics.mean(self.values)

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (0 for one seed, where tables show none)."""
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
