"""Run many training runs ("cells"), each in its own folder, several at a time, resumably.

Cells come from YAML files. A file with a ``grid`` key is a grid: every combination of the listed
values, on top of the file's ``base`` settings::

    base: {dataset: fashion_mnist, data_dir: ../shared/data, epochs1: 15, epochs2: 10}
    grid:
      bag_size: [16, 64, 256]
      first_stage: [dllp, vat, gan]
      seeds: [0, 1, 2]         # "seeds" sets seed, bag_seed and data_seed together

A grid value may be a mapping of settings that go together (``bag: [{bag_size: 16, batch_bags: 16},
{bag_size: 64, batch_bags: 4}]``); the cell's name joins its values.

Any other file is one cell (a ``plotllp train --config`` file). ``--seeds`` multiplies every cell by
seeds. A cell's folder is ``OUT/<name>``: a cell whose ``results.json`` exists is skipped (when it ran
the cell's settings; a finished cell with other settings stops the sweep with an error); one whose
``checkpoint.pt`` exists (an interrupted run) is resumed with ``plotllp train --resume``; the rest
start fresh. Each cell runs as its own ``plotllp train`` process (its output in ``OUT/<name>/log.txt``),
``jobs`` at a time; with several GPUs each process sees one (``CUDA_VISIBLE_DEVICES``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import yaml

from ..config import CHECKPOINT, RUN_SETTINGS, SWEEP_PID_VARIABLE, load_yaml, make_config, saved_setting
from ..errors import LLPInputError, PlotLLPError
from .results import is_number

SEED_KEYS = ("seed", "bag_seed", "data_seed")


#: What torchrun sets for its ranks; a sweep's cells do not inherit it.
DISTRIBUTED_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                         "ROLE_RANK", "ROLE_WORLD_SIZE", "ROLE_NAME", "MASTER_ADDR", "MASTER_PORT")


def _name_part(key: str, value) -> str:
    text = str(value).replace(os.sep, "-").replace("/", "-").replace(" ", "").replace("..", "-")
    return f"{key}-{text}"


def expand(files, seeds=None, overrides=None) -> list[tuple[str, dict]]:
    """``[(name, settings)]`` of every cell in ``files`` (module docstring), each checked as a valid
    configuration; ``overrides`` apply to every cell."""
    given = {str(k).replace("-", "_") for k in overrides or {}}
    if seeds and given & set(SEED_KEYS):
        raise LLPInputError(f"--set {sorted(given & set(SEED_KEYS))[0]} and --seeds both set the seeds; give one")
    cells = []
    for path in files:
        spec = load_yaml(path)
        stem = os.path.splitext(os.path.basename(path))[0]
        if "grid" in spec:
            unknown = set(spec) - {"base", "grid", "name"}
            if unknown:
                raise LLPInputError(f"{path}: a grid file holds base, grid (and name), not {', '.join(sorted(unknown))}")
            base, grid = spec.get("base") or {}, spec["grid"]
            if not isinstance(base, dict):
                raise LLPInputError(f"{path}: base must be a mapping of settings, not {type(base).__name__}")
            base = dict(base)
            if not isinstance(grid, dict) or not grid or not all(isinstance(v, list) and v for v in grid.values()):
                raise LLPInputError(f"{path}: grid must map each setting to a non-empty list of values")
            keys = list(grid)
            varied = {str(s).replace("-", "_") for k in keys for v in grid[k]
                      for s in (SEED_KEYS if k == "seeds" else v if isinstance(v, dict) else (k,))}
            if seeds and varied & set(SEED_KEYS):
                raise LLPInputError(f"--seeds: the grid of {path} already varies the seeds; change the grid's seeds, "
                                    "or leave --seeds out")
            clash = sorted(varied & given)
            if clash:
                raise LLPInputError(f"--set {clash[0]}: the grid of {path} already varies {clash[0]}; change the "
                                    "grid, or leave it out of --set")
            for k in keys:
                values = [repr(v) for v in grid[k]]
                if len(set(values)) < len(values):
                    raise LLPInputError(f"{path}: the grid's values of {k} repeat "
                                        f"({next(v for v in values if values.count(v) > 1)})")
            for combo in itertools.product(*(grid[k] for k in keys)):
                settings = dict(base)
                for k, v in zip(keys, combo):
                    if k == "seeds":
                        settings.update({s: v for s in SEED_KEYS})
                    elif isinstance(v, dict):          # several settings that go together
                        settings.update(v)
                    else:
                        settings[k] = v
                name = "_".join(_name_part("seed" if k == "seeds" else k, "-".join(map(str, v.values())) if isinstance(
                    v, dict) else v) for k, v in zip(keys, combo))
                prefix = _name_part("", spec.get("name", stem))[1:]          # a name, never a path
                cells.append((f"{prefix}_{name}" if len(files) > 1 else name, settings))
        else:
            if not spec:
                raise LLPInputError(f"{path} holds no settings (an empty file is not a cell; give at least its "
                                    "dataset)")
            cells.append((stem, dict(spec)))
    if seeds:
        cells = [(f"{n}_seed-{s}", {**c, **{k: s for k in SEED_KEYS}}) for n, c in cells for s in seeds]
    names = [n for n, _ in cells]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise LLPInputError(f"two cells would share the folder {sorted(dup)[0]}: give the files different names "
                            "(or, in a grid, values that differ once written as a folder name)")
    for name, settings in cells:
        settings.update(overrides or {})
        try:
            make_config(settings)
        except LLPInputError as e:
            raise LLPInputError(f"cell {name}: {e}") from None
    return cells


def status(out: str) -> str:
    """``done``, ``interrupted`` (a checkpoint to resume) or ``new``."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise LLPInputError(f"{out} is a file, not a folder for a sweep cell; choose another --out")
    if os.path.exists(os.path.join(out, CHECKPOINT)):
        return "interrupted"
    return "done" if os.path.exists(os.path.join(out, "results.json")) else "new"


def changed_settings(out: str, settings: dict) -> list[str]:
    """The settings of a finished cell's ``results.json`` that differ from ``settings`` (those a resume
    may change, like the device, aside): a finished cell is skipped only when it ran these settings."""
    import json

    try:
        with open(os.path.join(out, "results.json")) as f:
            old = json.load(f)["config"]
    except (OSError, ValueError, KeyError, TypeError):
        raise LLPInputError(f"the results.json in {out} is unreadable (empty or corrupt); remove {out} to run "
                            "it again") from None
    new = make_config({**settings, "out": out}).to_dict()
    return [f"{k}: {saved_setting(old, k)!r} -> {v!r}" for k, v in new.items()
            if k not in RUN_SETTINGS and saved_setting(old, k) != v]


def _summary(out: str) -> str:
    import json

    try:
        with open(os.path.join(out, "results.json")) as f:
            r = json.load(f)
        for key, what, scale, unit in (("test_accuracy", "", 100, "%"), ("val_bag_mae", "val bag MAE ", 1, ""),
                                       ("train_bag_mae", "training bag MAE ", 1, "")):
            if is_number(r["first_stage"].get(key)):                    # (a table's run: no instance labels)
                text = f"first stage {what}{scale * r['first_stage'][key]:.{2 if unit else 4}f}{unit}"
                if r["config"].get("second_stage") != "none" and is_number(r["final"].get(key)):
                    text += f", + PLOT {scale * r['final'][key]:.{2 if unit else 4}f}{unit}"
                return text
        return "finished"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "no results"


def run(files, out: str = "runs/sweep", *, jobs: int = 1, seeds=None, overrides=None, dry_run: bool = False,
        log=print, progress_every: float = 60.0) -> int:
    """Run every cell (module docstring); returns the number of cells that failed. While cells run, a
    line every ``progress_every`` seconds says where each one is (its last epoch line)."""
    cells = expand(files, seeds, overrides)
    if os.path.exists(out) and not os.path.isdir(out):
        raise LLPInputError(f"--out {out} is a file; give a folder for the sweep's cells")
    todo = []
    for name, settings in cells:
        d = os.path.join(out, name)
        st = status(d)
        if st == "done":
            changed = changed_settings(d, settings)
            if changed:
                raise LLPInputError(f"cell {d} finished with other settings ({'; '.join(changed[:3])}"
                                    f"{'; ...' if len(changed) > 3 else ''}); use another --out, or remove {d} to "
                                    "run it again")
        todo.append((name, settings, d, st))
    _check_data(todo)
    counts = {s: sum(1 for *_, st in todo if st == s) for s in ("done", "interrupted", "new")}
    log(f"plotllp sweep: {len(cells)} cells in {out}: {counts['done']} finished (skipped), {counts['interrupted']} "
        f"to resume, {counts['new']} to start; {jobs} at a time")
    pending = [t for t in todo if t[3] != "done"]
    if dry_run:
        for name, _, d, st in todo:
            log(f"  {st:<11} {d}")
        return 0
    try:
        os.makedirs(out, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise LLPInputError(f"cannot create --out {out}: a part of its path is a file") from None
    except OSError as e:
        raise LLPInputError(f"cannot create --out {out}: {e.strerror or e}") from None
    broken = threading.Event()

    def say(message):                  # a closed stdout (`| head`) stops the sweep as Ctrl-C does
        if broken.is_set():
            return
        try:
            log(message)
        except BrokenPipeError:
            broken.set()
            state["stop"] = True

    n_gpus = _gpu_count()
    slots: queue.Queue = queue.Queue()
    for i in range(jobs):
        slots.put(i)
    lock = threading.Lock()
    state = {"done": counts["done"], "failed": [], "running": {}, "stop": False}
    threads_per_job = max(1, (os.cpu_count() or 1) // jobs)
    t_start = time.perf_counter()

    def work(item):
        name, settings, d, st = item
        slot = slots.get()
        try:
            _work(name, settings, d, st, slot)
        except Exception as e:             # the cell could not even start (its folder, its log): a failure
            with lock:
                state["failed"].append(name)
                say(f"[{_clock(t_start)}] FAILED {name}: {type(e).__name__}: {e}")
        finally:
            slots.put(slot)

    def _work(name, settings, d, st, slot):
        if state["stop"]:
            return
        os.makedirs(d, exist_ok=True)
        cell_yaml = os.path.join(d, "cell.yaml")
        with open(cell_yaml, "w") as f:
            yaml.safe_dump({**settings, "out": d}, f, sort_keys=False)
        cmd = [sys.executable, "-m", "plotllp", "train", "--config", cell_yaml, "--out", d]
        if st == "interrupted":
            cmd.append("--resume")
        env = {k: v for k, v in os.environ.items()        # a cell is a run of its own, not a rank of a job
               if k not in DISTRIBUTED_VARIABLES and not k.startswith("TORCHELASTIC_")}
        env.setdefault("OMP_NUM_THREADS", str(threads_per_job))
        env[SWEEP_PID_VARIABLE] = str(os.getpid())       # the cell stops after its epoch if the sweep is killed
        if n_gpus > 1:
            env["CUDA_VISIBLE_DEVICES"] = str(slot % n_gpus)
        t0 = time.perf_counter()
        with open(os.path.join(d, "log.txt"), "a") as logf:
            proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env)
            with lock:
                state["running"][name] = proc
                say(f"[{_clock(t_start)}] {'resume' if st == 'interrupted' else 'start '} {name}")
            rc = proc.wait()
        with lock:
            state["running"].pop(name, None)
            if rc == 0:
                state["done"] += 1
                say(f"[{_clock(t_start)}] done   {name} ({time.perf_counter() - t0:.0f}s): {_summary(d)}  "
                    f"[{state['done']}/{len(cells)} finished, {len(state['running'])} running]")
            elif not state["stop"]:
                state["failed"].append(name)
                say(f"[{_clock(t_start)}] FAILED {name} (exit {rc}); see {os.path.join(d, 'log.txt')}: "
                    f"{_last_line(os.path.join(d, 'log.txt'))}")

    threads = [threading.Thread(target=work, args=(item,), daemon=True) for item in pending]
    next_report = time.perf_counter() + progress_every
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.2)
                if broken.is_set():
                    raise BrokenPipeError(32, "stdout closed")
                if time.perf_counter() >= next_report:
                    next_report = time.perf_counter() + progress_every
                    with lock:
                        running = list(state["running"])
                    if running:
                        say(f"[{_clock(t_start)}] running: " + ", ".join(
                            f"{name} ({_progress(os.path.join(out, name, 'log.txt'))})" for name in running))
    except (KeyboardInterrupt, BrokenPipeError):
        state["stop"] = True
        with lock:
            stopping = list(state["running"].values())
        for proc in stopping:       # SIGTERM: a cell stops as on Ctrl-C (which a background job's cells ignore)
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.perf_counter() + 60    # wait for them: a rerun must not find them still training
        for proc in stopping:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.perf_counter()))
        say("plotllp sweep: interrupted; finished cells are kept, and running ones resume from their last epoch "
            "when the same command is run again")
        raise
    if state["failed"]:
        say(f"plotllp sweep: {len(state['failed'])} cell(s) failed: {', '.join(state['failed'])}")
    else:
        say(f"plotllp sweep: all {len(cells)} cells finished in {out} ({_clock(t_start)})")
    return len(state["failed"])


def _check_data(todo) -> None:
    """The data files of every cell still to run exist (once per data set and folder): a wrong
    ``data_dir`` is one error before any cell starts, not a failure of every cell."""
    from ..data import check_files

    checked = set()
    for name, settings, _, st in todo:
        if st == "done":
            continue
        cfg = make_config(settings)
        key = (cfg.dataset, cfg.data_dir)
        if cfg.download or key in checked:
            continue
        checked.add(key)
        try:
            check_files(cfg.dataset, cfg.data_dir)
        except PlotLLPError as e:
            raise LLPInputError(f"cell {name}: {e}") from None


def _clock(t0: float) -> str:
    s = int(time.perf_counter() - t0)
    return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}"


_EPOCH = re.compile(r"^(\w+)\s+epoch\s+(\d+)\s*/\s*(\d+)")


def _progress(log_path: str) -> str:
    """Where a running cell is, from its log: ``dllp epoch 120/400``, or ``starting``."""
    try:
        with open(log_path) as f:
            lines = f.read().splitlines()
    except OSError:
        return "starting"
    for line in reversed(lines):
        m = _EPOCH.match(line.strip())
        if m:
            return f"{m.group(1)} epoch {m.group(2)}/{m.group(3)}"
    return "starting"


def _last_line(path: str) -> str:
    try:
        with open(path) as f:
            lines = [ln.strip() for ln in f if ln.strip()]
        return lines[-1] if lines else ""
    except OSError:
        return ""


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001
        return 0
