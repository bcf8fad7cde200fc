"""One whole run from a :class:`~plotllp.config.TrainConfig`: data, bags, first stage, PLOT, results.

``train(config)`` is what ``plotllp train`` does. It writes into ``config.out``:
``results.json`` (SPEC section 7), ``model.pt`` (final weights) and ``first_stage.pt``, and
``config.yaml`` (every resolved setting, reusable with ``--config``). Files are written atomically
(a temporary file renamed into place), so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import stat
import tempfile
import time
import zipfile
from dataclasses import dataclass

import numpy as np
import torch
import yaml

try:
    import fcntl
except ImportError:                 # Windows: no advisory locks; two runs into one folder are not detected
    fcntl = None

from .augment import resolve_augment
from .bags import Bags, clustered_bags, dirichlet_bags, sampled_bags, uniform_bags
from .config import (CHECKPOINT, PRESETS, RUN_OUTPUTS, RUN_SETTINGS, SWEEP_PID_VARIABLE, TrainConfig, make_config,
                     saved_setting)
from .data import load_dataset
from .distributed import MemberLayout, from_environment, shard_bags
from .errors import DataFileError, LauncherGone, LLPInputError
from .engine import (EpochState, Evaluator, LLPData, OptimConfig, class_counts, collapse_message, maybe_compile,
                     one_class_collapse, resolve_device)
from .models import build_model
from .stages import FIRST_STAGES, PLOT

__all__ = ["train", "RunResult", "atomic_write", "atomic_torch_save", "load_weights", "load_checkpoint"]


@dataclass
class RunResult:
    results: dict
    model: torch.nn.Module
    first_stage_model: torch.nn.Module
    dataset: object
    out: str
    is_main: bool = True      # False on the ranks > 0 of a distributed run (they write nothing)


def _atomic(path: str, write) -> None:
    """Write ``path`` through a temporary file in the same folder, synced, then renamed into place:
    a reader (or a crash) sees the old file or the new one, never half of one."""
    if not path:
        raise LLPInputError("the output path is empty")
    if os.path.isdir(path) or path.endswith((os.sep, "/")):
        raise LLPInputError(f"cannot write {path}: it names a folder; give a file name")
    d = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(d, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise LLPInputError(f"cannot write {path}: {os.path.dirname(path) or d} is a file, not a folder") from None
    try:
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=os.path.basename(path))
    except OSError as e:                   # an unwritable folder: say the file asked for, not the temporary one
        raise OSError(e.errno, e.strerror, path) from None
    fh = None
    try:
        with os.fdopen(fd, "wb") as raw:
            fh = _KeepsWriteErrors(raw)
            with contextlib.suppress(OSError):   # mkstemp's files are private (0600); results are not (a file
                os.fchmod(raw.fileno(), _file_mode(path))            # system without modes keeps its own)
            write(fh)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        error = fh.error if fh is not None and fh.error is not None else e
        if isinstance(error, OSError) and error.filename in (None, tmp):   # a full disk: say which file
            error.filename, error.filename2 = path, None
        if error is not e:
            raise error from None
        raise


class _KeepsWriteErrors:
    """A binary file that keeps the first exception its ``write`` raised: torch.save turns any exception of
    the file's write (Ctrl-C, a full disk) into a RuntimeError that would hide it."""

    def __init__(self, fh):
        self._fh, self.error = fh, None

    def write(self, data):
        try:
            return self._fh.write(data)
        except BaseException as e:
            if self.error is None:
                self.error = e
            raise

    def __getattr__(self, name):
        return getattr(self._fh, name)


def _file_mode(path: str) -> int:
    """The mode ``open(path, "w")`` would give: the file's own if it exists, else 0666 less the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write(path: str, text: str) -> None:
    _atomic(path, lambda fh: fh.write(text.encode()))


def atomic_write_with(path: str, write) -> None:
    """``write(fh)`` into ``path`` through a temporary file, as :func:`atomic_write` (a binary file handle)."""
    _atomic(path, write)


def atomic_torch_save(obj, path: str) -> None:
    _atomic(path, lambda fh: torch.save(obj, fh))


CHECKPOINT_FORMAT = "plotllp-checkpoint-1"
#: What a checkpoint's training loop state holds (plotllp.engine.fit_stage's on_epoch_end).
LOOP_KEYS = ("epoch", "elapsed", "history", "optimizer", "scheduler", "numpy_rng", "torch_rng", "stage")
#: settings that may differ between a run and its resumption
RESUMABLE_CHANGES = RUN_SETTINGS      # where and how the run executes: the data folder may move, the device change
#: a table file at least this large is announced before it is read (a million rows take seconds:
#: benchmarks/results/tables.md)
ANNOUNCE_TABLE_BYTES = 32 * 2 ** 20


def torch_load(path: str):
    """``torch.load`` (tensors only, onto the CPU) of a file that torch saved, its checksums checked first:
    torch reads a record whose bytes were damaged (on disk, by a bad copy) without noticing, and a damaged
    weight is finite and plausible. Raises :class:`DataFileError` naming the damaged record."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
        if damaged is not None:
            raise DataFileError(f"{path} is damaged (its record {damaged} fails its checksum)")
    return torch.load(path, map_location="cpu", weights_only=True)


def load_checkpoint(path: str, cfg: TrainConfig) -> dict:
    """The checkpoint of an interrupted run with the same settings as ``cfg``, checked."""
    if not os.path.isfile(path):
        raise LLPInputError(f"nothing to resume: {path} does not exist (the run finished, or never started)")
    try:
        ck = torch_load(path)
    except DataFileError as e:
        raise DataFileError(f"checkpoint {e}; remove it to start the run afresh") from None
    except Exception as e:  # truncated, foreign or corrupt files raise many kinds
        raise DataFileError(f"checkpoint {path} is corrupt or unreadable ({type(e).__name__}); "
                            f"remove it to start the run afresh") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise DataFileError(f"{path} is not a plotllp checkpoint")
    phase, loop = ck.get("phase"), ck.get("loop")
    need = {"first": ("model", "loop"), "second": ("model", "loop", "first_model", "first_history", "first_summary")}
    if (phase not in need or not isinstance(ck.get("config"), dict) or any(k not in ck for k in need[phase])
            or (loop is not None and not (isinstance(loop, dict) and all(k in loop for k in LOOP_KEYS)))):
        raise DataFileError(f"checkpoint {path} is incomplete or damaged; remove it to start the run afresh")
    old, new = ck["config"], cfg.to_dict()
    for key in new:
        if key not in RESUMABLE_CHANGES and saved_setting(old, key) != new[key]:
            raise LLPInputError(f"the checkpoint in {cfg.out} was made with {key.replace('_', '-')}="
                                f"{saved_setting(old, key)!r}, "
                                f"not {new[key]!r}; resume with the same settings, or choose another --out")
    return ck


def data_fingerprint(cfg: TrainConfig) -> dict:
    """SHA-256 of the files a resumed run reads again that a user may edit between a crash and
    ``--resume`` (a table and its proportions): a resume refuses files that changed. (``--init``
    weights are read only when a run starts.)"""
    paths = [cfg.dataset.split(":", 1)[1]] if cfg.dataset.startswith("table:") else []
    paths += [p for p in (cfg.proportions,) if p]
    out = {}
    for path in paths:
        if os.path.isfile(path):
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            out[path] = h.hexdigest()
    return out


def _restore(module: torch.nn.Module, state, path: str) -> None:
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError, KeyError) as e:
        raise DataFileError(f"checkpoint {path} does not fit this run's network ({type(e).__name__}); remove it "
                            "to start the run afresh") from None


def load_weights(model: torch.nn.Module, path: str) -> None:
    """Load weights saved by plotllp (``model.pt``, ``first_stage.pt``) or a plain state_dict."""
    _apply_weights(model, _read_weights(path), path)


def _read_weights(path: str):
    if not os.path.isfile(path):
        raise DataFileError(f"model file {path} does not exist")
    try:
        return torch_load(path)
    except DataFileError:
        raise
    except Exception as e:  # torch raises many kinds for a file that is not a checkpoint
        raise DataFileError(f"{path} is not a model file saved by torch ({type(e).__name__})") from None


def _apply_weights(model: torch.nn.Module, obj, path: str) -> None:
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataFileError(f"{path} holds no state_dict of network weights")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise LLPInputError(f"the weights in {path} do not fit the network --model {type(model).__name__} "
                            f"({first[1].strip() if len(first) > 1 else first[0]})") from None


def load_run(run_dir: str):
    """``(config, model, first_stage_model)`` of a finished run folder (``results.json``, ``model.pt``,
    ``first_stage.pt``), the networks rebuilt from the saved settings, on the CPU, in eval mode."""
    return read_run(run_dir)[:3]


def read_run(run_dir: str):
    """:func:`load_run`'s three, and the rest of what ``model.pt`` holds (the data's class and feature
    names, input shape and normalisation, its ``state_dict``), each file read once."""
    path = os.path.join(run_dir, "model.pt")
    if not os.path.isfile(path):
        busy = (f": its run is in progress or was interrupted ({CHECKPOINT}); plotllp train --resume finishes it"
                if os.path.isfile(os.path.join(run_dir, CHECKPOINT)) else
                " (give the --out folder of a finished plotllp train run)")
        raise DataFileError(f"{run_dir} holds no model.pt{busy}")
    try:
        meta = torch_load(path)
        saved = meta["config"]
        shape, k, norm = meta["input_shape"], int(meta["num_classes"]), meta.get("normalization")
    except DataFileError:
        raise
    except Exception as e:  # truncated, foreign or corrupt files raise many kinds (UnpicklingError, ...)
        raise DataFileError(f"{path} is not a model saved by plotllp train ({type(e).__name__})") from None
    try:
        cfg = make_config(saved)
    except LLPInputError as e:
        raise DataFileError(f"the settings saved in {path} are not valid here ({e})") from None
    models = []
    for name in ("model.pt", "first_stage.pt"):
        m = build_model(cfg.model, shape, k, width=cfg.width, depth=cfg.depth, normalization=norm)
        file = os.path.join(run_dir, name)
        _apply_weights(m, meta if name == "model.pt" else _read_weights(file), file)
        models.append(m.eval())
    return cfg, models[0], models[1], meta


def _summary(history: list[dict], seconds: float) -> dict:
    last = history[-1]
    out = {"seconds": seconds}
    for key in ("test_accuracy", "bag_mae", "train_bag_mae", "val_bag_mae", "train_acc_model", "train_acc_ot",
                "train_acc_ot_ensemble"):
        if key in last:
            out[key] = last[key]
    return out


def table_options(cfg: TrainConfig) -> dict:
    return {"bag_column": cfg.bag_column, "features": cfg.features, "label_column": cfg.label_column,
            "proportions": cfg.proportions, "test_fraction": cfg.test_fraction}


def make_bags(cfg: TrainConfig, data) -> Bags:
    """The training bags of ``cfg.bags`` kind from the data set's (otherwise hidden) labels."""
    if getattr(data, "bags", None) is not None:          # a table: its bag column made the bags
        if cfg.bags != "uniform":
            raise LLPInputError("--bags applies to labelled data sets; a table's bags come from --bag-column")
        return data.bags
    return _bags_of_kind(cfg, data.x_train, data.y_train, cfg.bag_size, data.num_classes)


def make_test_bags(cfg: TrainConfig, data) -> Bags | None:
    """The test bags whose proportion error is reported (``bag_mae``; SPEC section 1: built the same way
    as the training bags): a table's held-out bags, else bags of ``cfg.bags`` kind formed on the test
    set (of at most as many instances as it has); None without a labelled test set."""
    if data.y_test is None or len(data.y_test) == 0:
        return None
    if getattr(data, "test_bags", None) is not None:
        return data.test_bags
    return _bags_of_kind(cfg, data.x_test, data.y_test, min(cfg.bag_size, len(data.y_test)), data.num_classes)


def _bags_of_kind(cfg: TrainConfig, x, y, size: int, k: int) -> Bags:
    if cfg.bags == "dirichlet":
        return dirichlet_bags(y, size, alpha=cfg.bag_alpha, num_classes=k, seed=cfg.bag_seed)
    if cfg.bags == "clustered":
        return clustered_bags(x, y, size, num_classes=k, seed=cfg.bag_seed)
    if cfg.bags == "replacement":
        return sampled_bags(y, size, num_classes=k, seed=cfg.bag_seed)
    return uniform_bags(y, size, num_classes=k, seed=cfg.bag_seed)


def make_first_stage(cfg: TrainConfig, augment=None, batch_bags: int | None = None):
    """The first stage ``cfg.first_stage`` with the run's settings (``batch_bags``: per process, in a
    distributed run)."""
    optim = OptimConfig(cfg.lr, (cfg.beta1, cfg.beta2), cfg.weight_decay, cfg.lr_halve_every)
    options = {"vat": {"xi": cfg.vat_xi, "eps": cfg.vat_eps, "max_weight": cfg.vat_weight, "ramp": cfg.vat_ramp,
                       "normalize": cfg.vat_normalize},
               "gan": {"z_dim": cfg.gan_z_dim, "generator": cfg.gan_generator},
               "dllp": {"chunk_size": cfg.chunk_size or None}}.get(cfg.first_stage, {})
    return FIRST_STAGES[cfg.first_stage](cfg.epochs1, optim, batch_bags=batch_bags or cfg.batch_bags, augment=augment,
                                         **options)


def train(cfg: TrainConfig, log=print, write: bool = True, resume: bool = False,
          overwrite: bool = False) -> RunResult:
    """Run the configured first stage, then PLOT (unless ``second_stage == "none"``).

    After every epoch the whole state of the run is written atomically to ``OUT/checkpoint.pt``;
    ``resume=True`` continues from it (on a CPU with the same threads and ATen kernels, which the results
    record, the results equal those of an uninterrupted run). One process at a time trains into ``OUT``.
    The checkpoint is removed once the run has finished and its results are written. A folder that
    holds a finished run is trained into again only with ``overwrite=True`` (``--overwrite``).

    Started by ``torchrun`` with several processes, each trains on a shard of the bags and only rank
    0 prints and writes (:mod:`plotllp.distributed`).
    """
    cfg.validate()
    dist = from_environment(cfg.device)
    try:
        with _run_folder(cfg.out) if write and (dist is None or dist.is_main) else contextlib.nullcontext():
            result = _train(cfg, log, write, resume, dist, overwrite)
        if dist is not None:
            dist.barrier()        # the ranks leave together: none tears the group down while rank 0 still writes
        return result
    finally:
        if dist is not None:
            dist.close()


def _check_folder(out: str) -> None:
    if os.path.exists(out) and not os.path.isdir(out):
        raise LLPInputError(f"--out {out} is a file; give a folder for the run's results")


@contextlib.contextmanager
def _run_folder(out: str):
    """Hold the run folder ``out`` for one process while it trains (an advisory lock on the folder,
    released when the process ends, however it ends): a second ``plotllp train`` into it is a one-line
    error. The folder is created, and shown writable, before any data are loaded; temporary files of
    writes that a killed run left behind are removed."""
    _check_folder(out)
    try:
        os.makedirs(out, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".tmp-")
        os.close(fd)
        os.unlink(probe)
    except (FileExistsError, NotADirectoryError):
        raise LLPInputError(f"cannot create --out {out}: a part of its path is a file") from None
    except OSError as e:
        raise LLPInputError(f"cannot write into --out {out}: {e.strerror or e}") from None
    handle = os.open(out, os.O_RDONLY) if fcntl is not None else None     # (Windows opens no folder)
    try:
        if handle is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LLPInputError(f"another plotllp process is training into {out}; wait for it to end (or stop "
                                    "it), or choose another --out") from None
            except OSError:               # a file system without locks (some network ones): train unguarded
                pass
        for name in os.listdir(out):
            if name.startswith(".tmp-"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(out, name))
        yield
    finally:
        if handle is not None:
            os.close(handle)


def arithmetic() -> dict:
    """What decides a CPU run's last bits besides its settings: torch's thread count and the ATen kernels
    it picked for this processor (a resume repeats an uninterrupted run exactly only under the same)."""
    return {"threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def _rank_batch(dist, cfg: TrainConfig, name: str, trained: bool) -> int:
    """Each rank's share of the global batch setting ``name``; a stage that does not train (0 epochs)
    needs no even split."""
    value = getattr(cfg, name)
    if dist is None:
        return value
    if not trained:
        return max(1, value // dist.world)
    preset = PRESETS.get(cfg.dataset.split(":", 1)[0], {}).get(name)
    source = f", the {cfg.dataset} default" if preset == value else ""
    return dist.split_batch(value, name.replace("_", "-"), source)


def _train(cfg: TrainConfig, log, write: bool, resume: bool, dist, overwrite: bool = False) -> RunResult:
    main = dist is None or dist.is_main
    say = (lambda *a, **k: None) if cfg.quiet or not main else log
    device = dist.device if dist is not None else resolve_device(cfg.device)
    batch_bags = _rank_batch(dist, cfg, "batch_bags", trained=cfg.epochs1 > 0)
    batch_size = _rank_batch(dist, cfg, "batch_size", trained=cfg.second_stage == "plot" and cfg.epochs2 > 0)
    ckpt_path = os.path.join(cfg.out, CHECKPOINT)
    if write:
        _check_folder(cfg.out)
    ck = load_checkpoint(ckpt_path, cfg) if resume else None
    if ck is not None:
        then, now = {k: ck[k] for k in arithmetic() if k in ck}, arithmetic()
        changed = [f"{k.replace('_', ' ')} {then[k]} -> {now[k]}" for k in then if then[k] != now[k]]
        if changed:
            say(f"plotllp: note: the run resumes with other CPU arithmetic ({'; '.join(changed)}): from here on it "
                "differs in the last bits from an uninterrupted run (same threads and kernels repeat it exactly)")
    fingerprint = data_fingerprint(cfg)
    if ck is not None:
        for path, digest in ck.get("data", {}).items():
            if path not in fingerprint:
                raise LLPInputError(f"{path} is missing; the run in {cfg.out} resumes from the same files")
            if fingerprint[path] != digest:
                raise LLPInputError(f"{path} has changed since the checkpoint in {cfg.out} was written; resume "
                                    "with the same files, or choose another --out")
    if write and not resume and os.path.exists(ckpt_path):
        raise LLPInputError(f"{cfg.out} holds an interrupted run ({CHECKPOINT}); add --resume (Python: resume=True) to "
                            f"continue it, or choose another --out (or remove {ckpt_path} to start afresh)")
    done = os.path.join(cfg.out, "results.json")
    if write and not resume and not overwrite and os.path.exists(done):
        raise LLPInputError(f"{cfg.out} holds a finished run ({done}); choose another --out, or add --overwrite "
                            "(Python: overwrite=True) to replace it")
    # under torchrun, --download fetches once per machine (its first rank) while the other ranks wait
    fetcher = cfg.download and (dist is None or dist.local_rank == 0)
    if cfg.download and not fetcher:
        dist.barrier()
    table = cfg.dataset.split(":", 1)[1] if cfg.dataset.startswith("table:") else None
    if table and os.path.isfile(table) and os.path.getsize(table) >= ANNOUNCE_TABLE_BYTES:
        say(f"plotllp: reading {table} ({os.path.getsize(table) / 2 ** 20:.0f} MB)")
    data = load_dataset(cfg.dataset, data_dir=cfg.data_dir, seed=cfg.data_seed, noise=cfg.noise,
                        train_size=cfg.train_size, download=fetcher, table_options=table_options(cfg))
    if fetcher and dist is not None:
        dist.barrier()
    k = data.num_classes
    bags = make_bags(cfg, data)
    val = None
    if cfg.val_fraction > 0:
        bags, val_bags = bags.split(cfg.val_fraction, seed=cfg.bag_seed)
        val = LLPData(data.x_train, val_bags, device)
    if dist is None:
        train_data = LLPData(data.x_train, bags, device, hidden_labels=data.y_train)
    else:
        mine, pos = shard_bags(bags, dist.rank, dist.world)
        train_data = LLPData(data.x_train, mine, device, hidden_labels=data.y_train)
        train_data.layout = MemberLayout(torch.from_numpy(pos), int(bags.indices.size))
        train_data.epoch_bags = dist.max_int(train_data.num_bags)
        train_data.epoch_members = dist.max_int(train_data.num_members)
        fewest = -dist.max_int(-train_data.num_members)
        dist.install_gradient_averaging()
    evaluator = Evaluator(data.x_test, data.y_test, cfg.bag_size, cfg.bag_seed, k, device, labels=cfg.labels,
                          reg=cfg.reg, ensemble=cfg.ensemble, val=val, test_bags=make_test_bags(cfg, data),
                          train_diagnostics=cfg.train_diagnostics)
    evaluator.dist = dist
    say(f"plotllp: {cfg.dataset}: {bags.indices.size} training instances in {bags.num_bags} bags of "
        f"{cfg.bag_size if getattr(data, 'bags', None) is None else 'various sizes'}, "
        f"{0 if data.y_test is None else len(data.y_test)} test instances, {k} classes; device {device}"
        + (f" x {dist.world} processes ({batch_bags} bags / {batch_size} instances per step each)" if dist else ""))
    feature_names = getattr(data, "feature_names", None)
    if feature_names and not cfg.features:           # a table's numeric columns, chosen by plotllp: say which
        shown = feature_names if len(feature_names) <= 30 else [*feature_names[:30], f"... ({len(feature_names)})"]
        say(f"plotllp: features: {', '.join(shown)}")
    if dist is not None and train_data.epoch_members > 1.1 * fewest:      # whole bags of unequal sizes
        say(f"plotllp: the bags' sizes leave the ranks' shards uneven ({fewest} to {train_data.epoch_members} "
            f"instances): every rank takes the largest shard's steps, so PLOT draws the instances of the smallest "
            f"up to {train_data.epoch_members / fewest:.1f} times per epoch")

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, data.input_shape, k, width=cfg.width, depth=cfg.depth,
                        normalization=data.normalization)
    if cfg.init and ck is None:
        load_weights(model, cfg.init)
    model.to(device)
    if dist is not None:
        dist.broadcast_module(model)
    net = maybe_compile(model, cfg.compile)          # the module the stages train (model's parameters)
    betas = (cfg.beta1, cfg.beta2)
    augment = resolve_augment(cfg.augment, cfg.dataset) if data.is_image else None

    sweep_pid = os.environ.get(SWEEP_PID_VARIABLE, "")          # set by plotllp sweep for its cells
    replaced: list = []

    def saver(phase, prior_seconds, t_start, extra):
        def save(loop):
            if sweep_pid.isdigit() and os.getppid() != int(sweep_pid):
                raise LauncherGone("the plotllp sweep that started this run has gone")
            if write and main:
                loop["elapsed"] = prior_seconds + time.perf_counter() - t_start
                atomic_torch_save({"format": CHECKPOINT_FORMAT, "config": cfg.to_dict(), "phase": phase, **arithmetic(),
                                   "data": fingerprint, "model": model.state_dict(), "loop": loop, **extra}, ckpt_path)
                if overwrite and not resume and not replaced:   # the run it replaces goes once this one has an
                    replaced.append(True)                        # epoch to keep: the folder never mixes two runs
                    for name in RUN_OUTPUTS:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(os.path.join(cfg.out, name))
        return save

    # -- first stage (or where a checkpoint left it) --
    if ck is None or ck["phase"] == "first":
        first = make_first_stage(cfg, augment, batch_bags)
        loop = None
        if ck is not None:
            _restore(model, ck["model"], ckpt_path)
            loop = ck["loop"]
            say(f"plotllp: resuming the first stage after epoch {loop['epoch']} from {ckpt_path}")
        prior = loop["elapsed"] if loop else 0.0
        t0 = time.perf_counter()
        history = first.fit(net, train_data, evaluator=evaluator, log=say, seed=cfg.seed,
                            on_epoch_end=saver("first", prior, t0, {}), resume=loop,
                            dist=dist) if cfg.epochs1 > 0 else []
        if not history:                      # no first-stage training: evaluate the initial network once
            history = [{"stage": cfg.first_stage, "epoch": 0, "loss": None,
                        **evaluator(net, train_data, EpochState(loss=float("nan")))}]
        first_summary = _summary(history, prior + time.perf_counter() - t0)
        first_model = copy.deepcopy(model)
    else:
        first_model = copy.deepcopy(model)
        _restore(first_model, ck["first_model"], ckpt_path)
        _restore(model, ck["model"], ckpt_path)
        history, first_summary = list(ck["first_history"]), dict(ck["first_summary"])

    # -- second stage --
    final_summary = first_summary
    if cfg.second_stage == "plot" and cfg.epochs2 > 0:
        second = PLOT(cfg.epochs2, OptimConfig(cfg.lr2 or cfg.lr, betas, cfg.weight_decay, cfg.lr_halve_every),
                      labels=cfg.labels, loss=cfg.loss, mixup=cfg.mixup, ensemble=cfg.ensemble, reg=cfg.reg,
                      sce_alpha=cfg.sce_alpha, sce_beta=cfg.sce_beta, mixup_alpha=cfg.mixup_alpha,
                      batch_size=batch_size, pseudo_source=cfg.pseudo_source, augment=augment)
        loop = ck["loop"] if ck is not None and ck["phase"] == "second" else None
        if loop is None:
            evaluator.window = type(evaluator.window)(cfg.ensemble)
            evaluator.warm_start = type(evaluator.warm_start)()
        else:
            say(f"plotllp: resuming PLOT after epoch {loop['epoch']} from {ckpt_path}")
        prior = loop["elapsed"] if loop else 0.0
        extra = {"first_model": first_model.state_dict(), "first_history": history, "first_summary": first_summary}
        t1 = time.perf_counter()
        h2 = second.fit(net, train_data, evaluator=evaluator, log=say, seed=cfg.seed + 1,
                        on_epoch_end=saver("second", prior, t1, extra), resume=loop, dist=dist)
        history = history + h2
        final_summary = _summary(h2, prior + time.perf_counter() - t1)

    predicted, expected = class_counts(model, train_data)
    if dist is not None:
        predicted, expected = dist.sum(predicted), dist.sum(expected)
    collapse = one_class_collapse(predicted, expected)
    warnings = [collapse_message(collapse, data.class_names)] if collapse else []   # the command prints them
    results = {"config": cfg.to_dict(), "first_stage": first_summary, "final": dict(final_summary),
               "history": history,
               "data": {"train_instances": int(bags.indices.size), "bags": int(bags.num_bags),
                        "test_instances": 0 if data.y_test is None else int(len(data.y_test)), "num_classes": int(k),
                        "validation_bags": int(val.num_bags) if val is not None else 0,
                        **({"features": list(data.feature_names)} if getattr(data, "feature_names", None) else {})},
               "warnings": warnings, "device": str(device), "processes": dist.world if dist else 1, **arithmetic(),
               "plotllp_version": _version()}
    if dist is not None:
        dist.stop_if_orphaned()
    if write and main:
        os.makedirs(cfg.out, exist_ok=True)
        atomic_write(os.path.join(cfg.out, "results.json"), json.dumps(_jsonable(results), indent=1))
        atomic_write(os.path.join(cfg.out, "config.yaml"), yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        meta = {"config": cfg.to_dict(), "input_shape": list(data.input_shape), "num_classes": k,
                "class_names": list(data.class_names), "normalization": data.normalization,
                "feature_names": getattr(data, "feature_names", None)}
        atomic_torch_save({**meta, "state_dict": model.state_dict()}, os.path.join(cfg.out, "model.pt"))
        atomic_torch_save({**meta, "state_dict": first_model.state_dict()}, os.path.join(cfg.out, "first_stage.pt"))
        if os.path.exists(ckpt_path):        # the run is complete: results.json and the weights hold it now
            os.unlink(ckpt_path)
    return RunResult(results, model, first_model, data, cfg.out, main)


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def _version() -> str:
    from . import __version__
    return __version__
