"""The training loop shared by every stage: device, optimiser, schedule, evaluation, logging.

A stage (:mod:`plotllp.stages`) says what one epoch of training is; :func:`fit_stage` runs its
epochs with Adam and a step schedule (halve the learning rate every ``lr_halve_every`` epochs, the
paper's section 5.2), checks that the loss stays finite (a NaN stops the run loudly), evaluates
after every epoch and prints one progress line per epoch.
"""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
import time
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch

from .bags import Bags, uniform_bags
from .errors import LLPInputError, TrainingDivergedError
from .models.folding import fold_batchnorm
from .ot import WarmStart, pseudo_labels

__all__ = ["resolve_device", "LLPData", "predict_proba", "Evaluator", "OptimConfig", "fit_stage",
           "LabelWindow", "EpochState", "maybe_compile", "compile_failure", "inference_network", "folds_by_default",
           "overlapped_exact_labels"]


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise the named device (or a ``torch.device``), checked."""
    if isinstance(name, torch.device):
        name = str(name)
    if not isinstance(name, str):
        raise LLPInputError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise LLPInputError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LLPInputError(f"device {name!r} asked for but CUDA is not available here; use the cpu device "
                            "(--device cpu)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise LLPInputError(f"device {name!r} asked for but this machine has {torch.cuda.device_count()} CUDA "
                            f"device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if dev.type not in ("cpu", "cuda"):
        raise LLPInputError(f"device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    return dev


def maybe_compile(model: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """``torch.compile(model)`` when ``enabled`` (it shares ``model``'s parameters), else ``model``.
    The compilation itself happens at the first call; :func:`compile_failure` reads its errors."""
    if not enabled:
        return model
    try:
        return torch.compile(model)
    except RuntimeError as e:                  # e.g. a Python version that torch.compile does not support yet
        raise LLPInputError(f"--compile is not available here: {str(e).splitlines()[0]}; train without "
                            f"--compile") from None


def compile_failure(exc: BaseException) -> str | None:
    """What stopped ``torch.compile`` in one line (for example, no C++ compiler for CPU code, or no Triton
    for CUDA), when ``exc`` is torch's error that the compiler backend failed; else None."""
    try:
        from torch._dynamo.exc import BackendCompilerFailed
    except ImportError:                        # a torch without it: nothing to recognise
        return None
    if not isinstance(exc, BackendCompilerFailed):
        return None
    inner = getattr(exc, "inner_exception", None) or exc
    lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
    return f"{type(inner).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def autocast(device: torch.device):
    """bf16 autocast on CUDA, nothing on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def as_input_tensor(x, device) -> torch.Tensor:
    """Inputs on the training device: uint8 images (3 or more dimensions) stay uint8 (4x less memory;
    the network's :class:`~plotllp.models.Normalized` wrapper scales them), anything else becomes float32."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        t = torch.from_numpy(np.ascontiguousarray(np.asarray(x)))
    return t.to(device) if t.dtype == torch.uint8 and t.dim() >= 3 else t.to(device=device, dtype=torch.float32)


class LLPData:
    """Training instances and their bags, held on the training device.

    ``members`` are the bags' instance indices in bag order (an instance in two bags appears
    twice); PLOT's pseudo-labels are per member. ``hidden_labels`` of the members serve the
    diagnostics only and may be ``None`` (real LLP data).
    """

    def __init__(self, x, bags: Bags, device: torch.device | str = "cpu", hidden_labels=None):
        device = resolve_device(device)
        self.device = device
        self.bags = bags
        self.x = as_input_tensor(x, device)
        if self.x.is_floating_point() and not bool(torch.isfinite(self.x).all()):
            raise LLPInputError("the inputs contain NaN or infinity; fill or drop the missing values first")
        if bags.indices.max() >= self.x.shape[0]:
            raise LLPInputError(f"bags refer to instance {int(bags.indices.max())} but there are only "
                                f"{self.x.shape[0]} instances")
        self.members = torch.from_numpy(bags.indices).to(device)
        self.member_bag = torch.from_numpy(bags.bag_ids).to(device)
        self.offsets = torch.from_numpy(bags.offsets).to(device)
        self.sizes = torch.from_numpy(bags.sizes).to(device)
        self.proportions = torch.from_numpy(bags.proportions).float().to(device)
        self.hidden = None
        #: distributed runs (:mod:`plotllp.distributed`): where these members sit among all ranks', and
        #: the bag and member counts of the largest shard, which set the steps per epoch of every rank
        self.layout = None
        self.epoch_bags, self.epoch_members = self.num_bags, self.num_members
        if hidden_labels is not None:
            self.hidden = torch.as_tensor(np.asarray(hidden_labels)[bags.indices], dtype=torch.long).to(device)

    @property
    def num_bags(self) -> int:
        return self.bags.num_bags

    @property
    def num_members(self) -> int:
        return int(self.members.numel())

    @property
    def num_classes(self) -> int:
        return self.bags.num_classes

    def epoch_order(self, n: int, n_epoch: int, rng, as_tensor: bool = True):
        """A random order of ``range(n)`` for one epoch, extended to ``n_epoch`` entries by drawing
        some again (a smaller shard of a distributed run keeps in step with the largest); a tensor on
        the device, or the numpy array."""
        order = rng.permutation(n)
        if n_epoch > n:
            order = np.concatenate([order, rng.choice(n, n_epoch - n)])
        return torch.from_numpy(order).to(self.device) if as_tensor else order

    def bag_members(self, bag_sel: torch.Tensor, total: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(member positions, local bag index in [0, len(bag_sel))) of the selected bags; vectorised.
        ``total``: their number of members, if the caller knows it (then CUDA need not be asked for it)."""
        lengths = self.sizes[bag_sel]
        starts = self.offsets[bag_sel]
        local = torch.repeat_interleave(torch.arange(bag_sel.numel(), device=self.device), lengths,
                                        output_size=total)
        first = torch.cumsum(lengths, 0) - lengths
        pos = starts[local] + torch.arange(local.numel(), device=self.device) - first[local]
        return pos, local


#: model -> (its modules' identities, its FoldedNetwork or None where nothing folds), made on the first
#: prediction pass and made again when the model's modules change
_FOLDED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def inference_network(model: torch.nn.Module) -> torch.nn.Module:
    """The module that computes ``model``'s eval-mode outputs for prediction: ``model`` with its
    BatchNorm layers folded into the convolution or linear layer before them
    (:func:`plotllp.models.folding.fold_batchnorm`; traced once per model and again when a layer is
    added, removed or replaced; weights refreshed on every call), or ``model`` itself where nothing folds.
    A compiled module is returned as it is (the compiler fuses BatchNorm itself). Use it in eval mode
    only. The trace fixes what the model's ``forward`` reads from its own Python attributes as it was
    then: for a network whose ``forward`` branches on, or computes with, attributes that change later,
    predict with ``predict_proba(..., fold=False)`` (what ``predict_proba`` does by default for any
    network with a module class of its own, :func:`folds_by_default`)."""
    if hasattr(model, "_orig_mod"):                    # torch.compile's wrapper
        return model
    structure = tuple(map(id, model.modules()))
    cached = _FOLDED.get(model)
    if cached is None or cached[0] != structure:
        folded = fold_batchnorm(model)
        _FOLDED[model] = (structure, folded if folded.pairs else None)
        return folded.network
    folded = cached[1]
    return model if folded is None else folded.refresh()


def folds_by_default(model: torch.nn.Module) -> bool:
    """Whether :func:`predict_proba` folds ``model``'s BatchNorm layers on a CPU by default: when every
    module of it is one of torch.nn's or plotllp's networks, whose ``forward`` depends on nothing but
    their layers (a user's own module class may read attributes that the trace would freeze)."""
    return all(type(m).__module__.startswith(("torch.nn.", "plotllp.models")) for m in model.modules())


@torch.no_grad()
def predict_proba(model: torch.nn.Module, x: torch.Tensor, batch_size: int | None = None,
                  fold: bool | None = None) -> torch.Tensor:
    """(N, K) float32 softmax probabilities of ``model`` in eval mode, on ``x``'s device.

    ``fold``: compute them by :func:`inference_network` (BatchNorm folded); ``None`` (default) folds
    on a CPU a network made of torch.nn's and plotllp's modules (:func:`folds_by_default`), never on CUDA.
    On an H100 (bf16, channels-last) folding made conv-large's prediction pass
    slower, 0.283-0.286 s against 0.247-0.250 s for 50,000 images (WRN-28-2: 0.236-0.240 against
    0.242-0.244 s), since a convolution's bias is added by a separate elementwise pass that took longer
    than cuDNN's BatchNorm (0.419 against 0.272 ms on a 1024 x 128 x 32 x 32 activation;
    ``benchmarks/prediction.py``, ``benchmarks/results/gpu.md``). Default batch: 4096 rows of
    features; images 1024 on a GPU, 256 on a CPU (a conv net's activations on 4096 images take
    gigabytes)."""
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    if not isinstance(x, torch.Tensor):                 # numpy arrays, lists: on the model's device
        x = as_input_tensor(x, param.device if param is not None else "cpu")
    if param is not None and x.is_floating_point() and x.dtype != param.dtype:
        x = x.to(param.dtype)                           # float64 inputs to a float32 network, ...
    if batch_size is None:
        batch_size = (1024 if x.is_cuda else 256) if x.dim() == 4 else 4096
    if fold is None:
        fold = not x.is_cuda and folds_by_default(model)
    was_training = model.training
    model.eval()
    net = inference_network(model).eval() if fold else model
    # One output written batch by batch: a list of small outputs, each kept between the batches' freed
    # activations, grew the C heap by ~0.9 MB a batch (predict of a million rows read from Parquet: peak
    # 1.22 -> 1.01 GB, commit 0c618ab).
    out = None
    with autocast(x.device):
        for i in range(0, x.shape[0], batch_size):
            p = torch.softmax(net(x[i:i + batch_size]).float(), dim=1)
            if out is None:
                out = torch.empty((x.shape[0], *p.shape[1:]), device=p.device)
            out[i:i + len(p)] = p
    model.train(was_training)
    return out if out is not None else torch.empty(0)


def overlapped_exact_labels(model, data: LLPData, chunk_rows: int = 16384, lookahead: int = 1):
    """Hard pseudo-labels of every bag, the exact OT solved on the CPU for one chunk of whole bags
    while the device predicts the next ``lookahead`` chunks (CUDA runs kernels asynchronously, so the
    two overlap; with ``lookahead`` 2 the device has a chunk queued while it waits for the CPU to
    ask for the next one).

    Returns ``(probs, labels, ot_seconds)``: the device's predictions and the one-hot labels of
    every member, and the seconds the CPU spent in the solver. The labels are those of
    :func:`plotllp.ot.pseudo_labels` on all bags at once (each bag is solved on its own either way),
    whatever ``chunk_rows`` and ``lookahead``. The defaults were the fastest on H200 machines (50,000
    CIFAR-10 images, conv-large and WRN-28-2): chunks of 1,024 or 4,096 rows spent 2-5 times the solver's
    seconds, and a second chunk queued ahead gained or lost under 0.01 s (``benchmarks/results/gpu.md``, runs 6, 7).
    """
    from collections import deque

    for name, value in (("chunk_rows", chunk_rows), ("lookahead", lookahead)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise LLPInputError(f"{name} must be a whole number of at least 1, got {value!r}")
    chunk_rows, lookahead = int(chunk_rows), int(lookahead)
    bags = data.bags
    sizes, offsets = bags.sizes, bags.offsets
    chunks, b0 = [], 0
    while b0 < bags.num_bags:                  # whole bags, about chunk_rows rows each
        b1 = int(np.searchsorted(offsets, offsets[b0] + chunk_rows, side="right")) - 1
        b1 = min(max(b1, b0 + 1), bags.num_bags)
        chunks.append((b0, b1))
        b0 = b1
    cuda = data.device.type == "cuda"
    labels = torch.empty(data.num_members, data.num_classes)
    parts, pending, ot_seconds = [], deque(), 0.0

    def solve(job):
        nonlocal ot_seconds
        (c0, c1), host, event = job
        if event is not None:
            event.synchronize()
        check_finite(host, "training-set predictions")
        t = time.perf_counter()
        ids = np.repeat(np.arange(c1 - c0), sizes[c0:c1])
        labels[offsets[c0]:offsets[c1]] = pseudo_labels(host, ids, bags.proportions[c0:c1], hard=True).float()
        ot_seconds += time.perf_counter() - t

    for c0, c1 in chunks:
        p = predict_proba(model, data.x[data.members[int(offsets[c0]):int(offsets[c1])]])
        parts.append(p)
        host = p.to("cpu", non_blocking=True)
        event = None
        if cuda:
            event = torch.cuda.Event()
            event.record()
        pending.append(((c0, c1), host, event))
        if len(pending) > lookahead:
            solve(pending.popleft())           # the device works on the chunks queued after it meanwhile
    while pending:
        solve(pending.popleft())
    return torch.cat(parts), labels.to(data.device, non_blocking=True), ot_seconds


class LabelWindow:
    """The last ``k`` label matrices and their mean (the ensemble target of paper Fig. 3)."""

    def __init__(self, k: int):
        self.k = int(k)
        self._items: list[torch.Tensor] = []

    def push(self, q: torch.Tensor) -> None:
        self._items.append(q)
        if len(self._items) > self.k:
            self._items.pop(0)

    @property
    def latest(self) -> torch.Tensor:
        return self._items[-1]

    @property
    def previous(self) -> torch.Tensor:
        """The matrix pushed before the latest one."""
        return self._items[-2]

    def mean(self) -> torch.Tensor:
        return torch.stack(self._items).mean(0) if len(self._items) > 1 else self._items[-1]

    def __len__(self) -> int:
        return len(self._items)

    def state_dict(self) -> list:
        return [q.cpu() for q in self._items]

    def load_state_dict(self, items: list, device) -> None:
        self._items = [q.to(device) for q in items]


def vote(ensemble: torch.Tensor, latest: torch.Tensor) -> torch.Tensor:
    """The class (N,) of each row of an ensemble of label matrices (the mean of the last few, paper Fig. 3's
    TD_OT_5): its largest entry, a tie going to the latest labels' class (a row whose hard label changed
    once in a window of two or four ties; argmax alone would give it class 0)."""
    best = ensemble.argmax(1)
    last = latest.argmax(1, keepdim=True)
    tied = ensemble.gather(1, last).squeeze(1) == ensemble.gather(1, best[:, None]).squeeze(1)
    return torch.where(tied, last.squeeze(1), best)


@dataclass
class EpochState:
    """What a stage knows at the end of an epoch (anything missing the evaluator computes)."""
    loss: float
    train_probs: torch.Tensor | None = None
    ot_labels: torch.Tensor | None = None
    ot_ensemble: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)


class Evaluator:
    """Per-epoch metrics (SPEC section 1): test accuracy, bag-level MAE on test bags (``test_bags``, a
    :class:`~plotllp.bags.Bags` over the test rows, built like the training bags; default: uniform random
    bags of ``bag_size``), the validation bags' MAE (no instance labels needed), and the training-set
    diagnostics (accuracy of the model, of its OT labels, of the ensemble of the last k OT labels
    against the hidden labels). ``train_diagnostics=False`` leaves the latter out of the epochs whose stage
    did not compute OT labels (the first stage's), which then need no prediction pass over the training set
    nor OT solve; the model trains the same."""

    def __init__(self, x_test, y_test, bag_size: int, bag_seed: int, num_classes: int, device, *,
                 labels: str = "hard", reg: float = 1 / 25, ensemble: int = 5, val: LLPData | None = None,
                 test_bags: Bags | None = None, train_diagnostics: bool = True):
        self.device = torch.device(device)
        self.has_test = y_test is not None and len(y_test) > 0
        if self.has_test:
            self.x_test = as_input_tensor(x_test, self.device)
            self.y_test = torch.as_tensor(np.asarray(y_test), dtype=torch.long).to(self.device)
            y = np.asarray(y_test)
            self.test_bags = (test_bags if test_bags is not None
                              else uniform_bags(y, min(bag_size, y.size), num_classes=num_classes, seed=bag_seed))
            if self.test_bags.indices.size and int(self.test_bags.indices.max()) >= y.size:
                raise LLPInputError(f"test_bags name row {int(self.test_bags.indices.max())} of a test set of {y.size}")
            self.test_members = torch.from_numpy(self.test_bags.indices).to(self.device)
            self.test_bag_ids = torch.from_numpy(self.test_bags.bag_ids).to(self.device)
            self.test_props = torch.from_numpy(self.test_bags.proportions).float().to(self.device)
        self.hard = labels == "hard"
        self.reg = reg
        self.window = LabelWindow(ensemble)
        self.warm_start = WarmStart()         # off CUDA the diagnostics' exact OT starts from the last labels
        self.overlap = None                   # None: on CUDA, solve the exact OT while the device predicts, as PLOT
        self.val = val
        self.train_diagnostics = bool(train_diagnostics)
        self.dist = None      # a plotllp.distributed.Distributed: training-set metrics are reduced over ranks

    def state_dict(self) -> dict:
        return {"window": self.window.state_dict(), **self.warm_start.state_dict()}

    def load_state_dict(self, state: dict, device) -> None:
        self.window.load_state_dict(state["window"], device)
        self.warm_start = WarmStart.restored(state, self.window, device)

    @staticmethod
    def bag_mae(probs: torch.Tensor, bag_ids: torch.Tensor, proportions: torch.Tensor) -> float:
        """Mean over bags and classes of |mean predicted probability - true proportion|."""
        m = proportions.shape[0]
        sums = torch.zeros_like(proportions).index_add(0, bag_ids, probs)
        sizes = torch.bincount(bag_ids, minlength=m).clamp_min(1)
        return float((sums / sizes[:, None] - proportions).abs().mean())

    def __call__(self, model, data: LLPData, state: EpochState) -> dict:
        row = {}
        if self.has_test:
            probs = predict_proba(model, self.x_test)
            check_finite(probs, "test-set predictions")
            row = {"test_accuracy": float((probs.argmax(1) == self.y_test).float().mean()),
                   "bag_mae": self.bag_mae(probs[self.test_members], self.test_bag_ids, self.test_props)}
        else:                                 # no labelled test set (real LLP data): the training bags' error
            train_probs = state.train_probs if state.train_probs is not None else predict_proba(
                model, data.x[data.members])
            state.train_probs = train_probs
            check_finite(train_probs, "training-set predictions")
            row["train_bag_mae"] = self._reduce(self.bag_mae(train_probs, data.member_bag, data.proportions),
                                                data.num_bags)
        if self.val is not None:
            vp = predict_proba(model, self.val.x[self.val.members])
            check_finite(vp, "held-out bags' predictions")
            row["val_bag_mae"] = self.bag_mae(vp, self.val.member_bag, self.val.proportions)
        if data.hidden is not None and (self.train_diagnostics or state.ot_labels is not None):
            train_probs, ot_labels, ensemble = state.train_probs, state.ot_labels, state.ot_ensemble
            overlap = self.overlap if self.overlap is not None else data.device.type == "cuda"
            if ot_labels is None:
                if train_probs is None and self.hard and overlap:         # as PLOT's relabelling on CUDA
                    train_probs, ot_labels, _ = overlapped_exact_labels(model, data)
                else:
                    if train_probs is None:
                        train_probs = predict_proba(model, data.x[data.members])
                    check_finite(train_probs, "training-set predictions")
                    warm = self.hard and not train_probs.is_cuda     # as PLOT: on CUDA the CPU solver, from scratch
                    init = self.warm_start.init(train_probs) if warm else None
                    ot_labels = pseudo_labels(train_probs, data.member_bag, data.proportions, hard=self.hard,
                                              reg=self.reg, init=init)
                    if warm:
                        self.warm_start.record(ot_labels, train_probs)
                self.window.push(ot_labels)
                ensemble = self.window.mean()
            if train_probs is None:
                train_probs = predict_proba(model, data.x[data.members])
            if ensemble is None:
                ensemble = ot_labels
            h = data.hidden
            n = data.num_members
            row["train_acc_model"] = self._reduce(float((train_probs.argmax(1) == h).float().mean()), n)
            row["train_acc_ot"] = self._reduce(float((ot_labels.argmax(1) == h).float().mean()), n)
            row["train_acc_ot_ensemble"] = self._reduce(float((vote(ensemble, ot_labels) == h).float().mean()), n)
        return row

    def _reduce(self, value: float, weight: float) -> float:
        return value if self.dist is None else self.dist.weighted_mean(value, weight)


@dataclass
class OptimConfig:
    """Adam with a step schedule: ``lr`` halved every ``halve_every`` epochs (0: constant)."""
    lr: float = 1e-3
    betas: tuple = (0.9, 0.999)
    weight_decay: float = 0.0
    halve_every: int = 100


def check_finite(t: torch.Tensor, what: str) -> None:
    if not bool(torch.isfinite(t).all()):
        raise TrainingDivergedError(f"{what} contain NaN or infinity: training diverged "
                                    f"(try a lower learning rate)")


def finite_weights(model: torch.nn.Module) -> bool:
    """Whether every parameter and buffer of ``model`` is finite (one host synchronisation)."""
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    return not tensors or bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


COLLAPSE_AT_LEAST = 0.99      # a network that puts this share of the training rows in one class ...
COLLAPSE_BAGS_AT_MOST = 0.9   # ... that the bags give at most this share of them has collapsed


@torch.no_grad()
def class_counts(model: torch.nn.Module, data: LLPData) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Over the training rows of ``data``: how many the network predicts in each class, and how many
    the bags' proportions give each class (:math:`\sum_b |B_b| p_b`), both (K,) float64 on the CPU."""
    probs = predict_proba(model, data.x[data.members])
    predicted = torch.bincount(probs.argmax(1), minlength=data.num_classes).double()
    expected = data.proportions[data.member_bag].double().sum(0)
    return predicted.cpu(), expected.cpu()


def one_class_collapse(predicted, expected) -> tuple[int, float, float] | None:
    """``(c, predicted share, bags' share)`` when the network predicts class c for at least 99% of the
    training rows though the bags give c at most 90% of them (``predicted``, ``expected``: counts per
    class, :func:`class_counts`); else None. Such a network learnt nothing but a constant: a too large
    learning rate does it without any NaN (Adam's steps are bounded, the proportion loss is clamped)."""
    predicted, expected = np.asarray(predicted, dtype=float), np.asarray(expected, dtype=float)
    n = predicted.sum()
    if predicted.size < 2 or n <= 0:
        return None
    c = int(predicted.argmax())
    share, bag_share = predicted[c] / n, expected[c] / max(expected.sum(), 1e-12)
    if share >= COLLAPSE_AT_LEAST and bag_share <= COLLAPSE_BAGS_AT_MOST:
        return c, float(share), float(bag_share)
    return None


def collapse_message(found: tuple[int, float, float], class_names=None) -> str:
    c, share, bag_share = found
    name = f"'{class_names[c]}'" if class_names is not None and c < len(class_names) else str(c)
    return (f"the trained network predicts class {name} for {100 * share:.1f}% of the training rows, which "
            f"the bags give {100 * bag_share:.1f}% of: it has collapsed to one class (a too large learning rate does "
            "this, as do inputs of very different scales: try a lower learning rate, or standardise the inputs)")


def _fmt(row: dict) -> str:
    parts = [f"loss {row['loss']:.4f}"]
    if "test_accuracy" in row:
        parts += [f"test {100 * row['test_accuracy']:.2f}%", f"bag-mae {row['bag_mae']:.4f}"]
    if "train_bag_mae" in row:
        parts.append(f"train-bag-mae {row['train_bag_mae']:.4f}")
    if "val_bag_mae" in row:
        parts.append(f"val-mae {row['val_bag_mae']:.4f}")
    if "train_acc_model" in row:
        parts.append(f"train: model {100 * row['train_acc_model']:.1f}% ot {100 * row['train_acc_ot']:.1f}% "
                     f"ens {100 * row['train_acc_ot_ensemble']:.1f}%")
    if "g_loss" in row:
        parts.append(f"gan: D {row['d_unsup_loss']:.4f} + prop {row['proportion_loss']:.4f}  G {row['g_loss']:.4f}")
    if "vat_loss" in row:
        parts.append(f"vat {row['vat_loss']:.4f} (w {row['vat_weight']:.3f})")
    return "  ".join(parts)


def fit_stage(stage, model: torch.nn.Module, data: LLPData, optim: OptimConfig, *, epochs: int,
              evaluator: Evaluator | None = None, log=print, seed: int = 0, on_epoch_end=None,
              resume: dict | None = None, dist=None) -> list[dict]:
    """Run ``epochs`` epochs of ``stage`` on ``model``; return one history row per epoch.

    ``dist`` (a :class:`plotllp.distributed.Distributed`): one rank of a data-parallel run; its
    gradients are averaged over the ranks at every optimiser step, its random streams drawn afresh each
    epoch from ``(seed, epoch, rank)``, and its loss, diagnostics and checkpoint state gathered.

    ``on_epoch_end(loop_state)`` is called after every epoch with everything the loop needs besides the
    model's weights to go on later (optimiser, schedule, random-number states, the stage's and
    evaluator's state, the history), a snapshot that later epochs do not change; passing that dict back
    as ``resume``, with the model's weights of that epoch, continues the loop exactly where it was.

    The global random-number state of torch (the CPU's, and every CUDA device's when training on CUDA)
    is the caller's again when this returns: the stage draws from ``seed``, not from it.
    """
    devices = list(range(torch.cuda.device_count())) if data.device.type == "cuda" else []   # resume sets them all
    with torch.random.fork_rng(devices=devices):
        return _fit_stage(stage, model, data, optim, epochs=epochs, evaluator=evaluator, log=log, seed=seed,
                          on_epoch_end=on_epoch_end, resume=resume, dist=dist)


@torch.no_grad()
def check_model_inputs(model: torch.nn.Module, data: "LLPData") -> None:
    """A one-line error for a network that cannot take ``data``'s inputs: plotllp trains float32
    parameters (bf16 autocast on CUDA), and the network must map the training inputs (uint8 images
    as they are: :class:`plotllp.models.Normalized` scales them) to one logit per class (checked on two
    instances, in eval mode)."""
    from .models import Normalized
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if dtypes - {torch.float32}:
        raise LLPInputError(f"the network's parameters are {', '.join(sorted(str(d) for d in dtypes))}; plotllp "
                            "trains float32 networks (bf16 autocast on CUDA): call model.float()")
    inner = getattr(model, "_orig_mod", model)          # torch.compile's wrapper
    if data.num_members == 0:
        return
    x = data.x[data.members[:2]]
    was_training = inner.training
    inner.eval()
    try:
        with autocast(data.device):
            out = inner(x)
    except (RuntimeError, TypeError, ValueError) as e:
        hint = ("; the inputs are uint8 images, which plotllp keeps as they are to save memory: wrap the network "
                "in plotllp.models.Normalized(network, mean, std), which scales them, or pass float inputs"
                if x.dtype == torch.uint8 and not any(isinstance(m, Normalized) for m in inner.modules()) else "")
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise LLPInputError(f"the network fails on training inputs of shape {tuple(x.shape[1:])} and dtype "
                            f"{str(x.dtype).replace('torch.', '')} ({type(e).__name__}: {first}){hint}") from None
    finally:
        inner.train(was_training)
    n = x.shape[0]
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != data.num_classes:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise LLPInputError(f"the network maps {n} instance(s) to {shape}, not to logits of the {data.num_classes} "
                            f"classes of the proportions ({n}, {data.num_classes})")


def _fit_stage(stage, model, data, optim, *, epochs, evaluator, log, seed, on_epoch_end, resume, dist):
    model.to(data.device)
    if data.device.type == "cuda" and data.x.dim() == 4:
        model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True     # fixed image shapes: let cuDNN pick its fastest kernels
    check_model_inputs(model, data)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=optim.halve_every or 10 ** 9, gamma=0.5)
    if resume is None:
        stage.begin(model, data)
        history, start = [], 1
    else:
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        stage_state, eval_state = resume["stage"], resume.get("evaluator")
        if dist is None:
            rng.bit_generator.state = resume["numpy_rng"]
            torch.set_rng_state(resume["torch_rng"])
            if resume.get("cuda_rng") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(resume["cuda_rng"])
        elif data.layout is not None:
            stage_state = dist.localize_state(stage_state, data.layout)
            eval_state = dist.localize_state(eval_state, data.layout)
        stage.load_state_dict(stage_state, data.device)
        if evaluator is not None and eval_state is not None:
            evaluator.load_state_dict(eval_state, data.device)
        history, start = list(resume["history"]), int(resume["epoch"]) + 1
    width = len(str(epochs))
    for epoch in range(start, epochs + 1):
        t0 = time.perf_counter()
        if dist is not None:                  # per-epoch streams: resumable on any number of ranks
            seq = np.random.SeedSequence(dist.epoch_seed(seed, epoch))
            rng = np.random.default_rng(seq)
            torch.manual_seed(int(seq.generate_state(1)[0]))
        model.train()
        state = stage.train_epoch(model, opt, data, rng)
        if dist is not None:
            state.loss = dist.mean(state.loss)
            dist.sync_buffers(model)
        if not math.isfinite(state.loss):
            raise TrainingDivergedError(f"{stage.name} epoch {epoch}: the loss is {state.loss}; training diverged "
                                        f"(try a lower learning rate)")
        if not finite_weights(model):        # the epoch's last step (after its loss was taken) may have broken them
            raise TrainingDivergedError(f"{stage.name} epoch {epoch}: the network's weights are NaN or infinite; "
                                        "training diverged (try a lower learning rate)")
        lr = opt.param_groups[0]["lr"]        # the rate this epoch trained with
        sched.step()
        state = stage.end_epoch(model, data, state)
        if dist is not None:                  # the epoch's own numbers and the relabelling's (PLOT's warm_start)
            state.extra = dist.mean_dict(state.extra)
        train_seconds = time.perf_counter() - t0
        row = {"stage": stage.name, "epoch": epoch, "loss": state.loss, "lr": lr}
        if evaluator is not None:
            t1 = time.perf_counter()
            row.update(evaluator(model, data, state))
            row["eval_seconds"] = time.perf_counter() - t1
        row.update(state.extra)
        row["seconds"] = train_seconds
        history.append(row)
        if dist is not None:
            dist.stop_if_orphaned()
        if log is not None:
            log(f"{stage.name:<5} epoch {epoch:>{width}}/{epochs}  {_fmt(row)}  {train_seconds:.2f}s")
        if on_epoch_end is not None:
            stage_state = stage.state_dict()
            eval_state = evaluator.state_dict() if evaluator is not None else None
            if dist is not None and data.layout is not None:       # every rank takes part; rank 0 saves
                stage_state = dist.globalize_state(stage_state, data.layout)
                eval_state = dist.globalize_state(eval_state, data.layout)
            stage_state, eval_state = copy.deepcopy(stage_state), copy.deepcopy(eval_state)   # a snapshot
            on_epoch_end({"epoch": epoch, "history": list(history), "optimizer": copy.deepcopy(opt.state_dict()),
                          "scheduler": sched.state_dict(), "numpy_rng": rng.bit_generator.state,
                          "torch_rng": torch.get_rng_state(),
                          "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                          "stage": stage_state, "evaluator": eval_state})
    return history
