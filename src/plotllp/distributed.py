r"""Data-parallel training over several processes with ``torch.distributed`` (``torchrun``).

``torchrun --nproc_per_node N -m plotllp train ...`` starts N ranks; each one:

- holds a **shard of whole bags** (balanced by members, at most one bag more than another rank;
  bags of equal size go round robin: :func:`shard_owners`), so the proportion loss of a bag and
  PLOT's per-bag OT are computed where the bag lives, without communication;
- takes the same number of steps per epoch as every other rank (a rank whose shard is smaller draws
  some of its bags or instances twice), with ``batch_bags / N`` bags or ``batch_size / N`` instances
  per step, so the **global batch** is the one the settings name, whatever N;
- **averages the gradients** of every optimiser before its step: one ``all_reduce`` of the flattened
  gradients per step (:func:`install_gradient_averaging`), the arithmetic of
  ``DistributedDataParallel``. The hook sits on the optimiser, not on the module, because the
  first stages are not one-forward-one-backward: LLP-VAT differentiates with respect to its inputs
  and LLP-GAN steps two optimisers (the generator's gradients are averaged the same way). On a CPU,
  DDP's overlap of the reduction with the backward pass was no faster than this one call (slower with
  the MLP, equal within noise with conv-large: ``benchmarks/results/grad_sync_cpu.md``);
- broadcasts the BatchNorm statistics of rank 0 after every epoch, reduces the loss and the
  training-set diagnostics across ranks, and lets only rank 0 print and write files.

Checkpoints hold PLOT's pseudo-labels in the **global** member order, so a run resumes with the same
or a different number of ranks. Random streams are drawn afresh for each epoch from
``(seed, epoch, rank)``: a resume with the same number of ranks continues exactly as an uninterrupted
run would.

Backends: NCCL when the device is CUDA (rank :math:`r` uses ``cuda:LOCAL_RANK``), Gloo on CPU.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.optim.optimizer import register_optimizer_step_pre_hook

from .bags import Bags
from .errors import LLPInputError

__all__ = ["Distributed", "from_environment", "MemberLayout", "shard_bags", "shard_owners"]

#: Stage and evaluator state entries that hold one row per bag member (PLOT's label windows).
MEMBER_STATE_KEYS = ("targets", "ot_window", "window", "warm_start")


@dataclass
class MemberLayout:
    """Where the members of this rank's bags sit in the global member order (bags in order, their
    members in order), and how many members there are in all."""
    global_pos: torch.Tensor
    num_global: int


def shard_owners(sizes: np.ndarray, world: int) -> np.ndarray:
    """The rank that holds each bag: bags taken largest first (ties in bag order), each to the rank with
    the fewest members among those holding fewer than ``ceil(m / world)`` bags. So the shards differ by
    at most one bag, and their members as little as whole bags allow; bags of equal size go round robin
    (bag :math:`b` to rank :math:`b \bmod N`)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    cap = -(-sizes.size // world)
    load, count = np.zeros(world, dtype=np.int64), np.zeros(world, dtype=np.int64)
    owner = np.empty(sizes.size, dtype=np.int64)
    for b in np.argsort(-sizes, kind="stable"):
        open_ranks = np.flatnonzero(count < cap)
        r = int(open_ranks[np.argmin(load[open_ranks])])
        owner[b], load[r], count[r] = r, load[r] + sizes[b], count[r] + 1
    return owner


def shard_bags(bags: Bags, rank: int, world: int) -> tuple[Bags, np.ndarray]:
    """The bags of ``bags`` that rank ``rank`` holds (:func:`shard_owners`), in bag order, and the global
    positions of their members."""
    if bags.num_bags < world:
        raise LLPInputError(f"{bags.num_bags} training bags cannot be shared by {world} processes; "
                            f"use at most {bags.num_bags} processes")
    mine = np.flatnonzero(shard_owners(bags.sizes, world) == rank)
    sizes = bags.sizes[mine]
    starts = bags.offsets[mine]
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    pos = np.repeat(starts - first, sizes) + np.arange(int(sizes.sum()))
    return bags.subset(mine), pos


class Distributed:
    """This process's place among the ranks, and the collectives the training loop needs."""

    def __init__(self, rank: int, world: int, local_rank: int, device: torch.device):
        self.rank, self.world, self.local_rank, self.device = rank, world, local_rank, device
        self._hook = None
        self._launcher = os.getppid()

    def stop_if_orphaned(self) -> None:
        """Exit at once, writing nothing, when the launcher that started this rank has gone. torchrun
        starts each rank in a session of its own, so killing torchrun (or its process group) leaves the
        ranks running: they would train on and write into ``--out`` beside a ``--resume``. Called
        after every epoch, before the checkpoint, and before the results are written."""
        if os.getppid() != self._launcher:
            try:
                sys.stderr.write(f"plotllp (rank {self.rank}): the launcher that started this process has gone "
                                 "(killed?); stopping without writing\n")
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os._exit(1)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- set-up --------------------------------------------------------------------------------
    def split_batch(self, value: int, what: str, source: str = "") -> int:
        """The per-rank share of a global batch setting, which must divide evenly (``source``: where the
        value came from, for the message)."""
        if value % self.world:
            raise LLPInputError(f"--{what} {value} (the global batch{source}) cannot be split evenly over "
                                f"{self.world} processes; give --{what} a multiple of {self.world}, or use fewer processes")
        return value // self.world

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers everywhere."""
        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, 0)

    def sync_buffers(self, module: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) everywhere."""
        for t in module.buffers():
            dist.broadcast(t.data, 0)

    # -- reductions ----------------------------------------------------------------------------
    def max_int(self, value: int) -> int:
        t = torch.tensor([int(value)], dtype=torch.int64, device=self._comm_device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def weighted_mean(self, value: float, weight: float) -> float:
        """:math:`\\sum_r w_r v_r / \\sum_r w_r` over the ranks."""
        t = torch.tensor([float(value) * weight, float(weight)], dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(t)
        return float(t[0] / t[1])

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """The elementwise sum of ``t`` over the ranks (float64, on the CPU)."""
        t = t.to(device=self._comm_device, dtype=torch.float64).clone()
        dist.all_reduce(t)
        return t.cpu()

    def mean(self, value: float) -> float:
        return self.weighted_mean(value, 1.0)

    def mean_dict(self, values: dict) -> dict:
        """Numbers averaged over the ranks, flags (bools) True where they are True on every rank (a PLOT
        epoch's ``warm_start``: every rank's OT started from its last labels), anything else unchanged;
        every rank must pass the same keys."""
        keys = sorted(k for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
        flags = sorted(k for k, v in values.items() if isinstance(v, bool))
        if not keys and not flags:
            return values
        t = torch.tensor([float(values[k]) for k in keys] + [float(not values[k]) for k in flags],
                         dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(t)
        sums = t.tolist()
        return {**values, **{k: v / self.world for k, v in zip(keys, sums)},
                **{k: v == 0 for k, v in zip(flags, sums[len(keys):])}}

    @property
    def _comm_device(self):
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    # -- gradients -----------------------------------------------------------------------------
    def average_gradients(self, params) -> None:
        """Average ``p.grad`` over the ranks in one ``all_reduce`` (a missing gradient counts as 0)."""
        params = [p for p in params if p.requires_grad]
        if not params:
            return
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        dist.all_reduce(flat)
        flat /= self.world
        i = 0
        for p in params:
            n = p.numel()
            if p.grad is not None:
                p.grad.copy_(flat[i:i + n].view_as(p))
            i += n

    def install_gradient_averaging(self) -> None:
        """Average the gradients before every optimiser step in this process (every optimiser)."""
        if self._hook is None:
            def hook(optimizer, args, kwargs):
                self.average_gradients(p for g in optimizer.param_groups for p in g["params"])
            self._hook = register_optimizer_step_pre_hook(hook)

    # -- member-level state (checkpoints) ------------------------------------------------------
    def to_global(self, t: torch.Tensor, layout: MemberLayout) -> torch.Tensor:
        """Rows of every rank's members gathered into the global member order (on every rank)."""
        parts = [None] * self.world
        dist.all_gather_object(parts, (layout.global_pos.cpu(), t.cpu()))
        out = torch.empty((layout.num_global,) + tuple(t.shape[1:]), dtype=t.dtype)
        for pos, rows in parts:
            out[pos] = rows
        return out

    def globalize_state(self, state, layout: MemberLayout):
        """``state`` (a stage's or the evaluator's) with its member rows in the global order."""
        if not isinstance(state, dict):
            return state
        return {k: ([self.to_global(q, layout) for q in v] if k in MEMBER_STATE_KEYS else v)
                for k, v in state.items()}

    @staticmethod
    def localize_state(state, layout: MemberLayout):
        """The inverse of :meth:`globalize_state`: this rank's rows of a global state."""
        if not isinstance(state, dict):
            return state
        out = {}
        for k, v in state.items():
            if k in MEMBER_STATE_KEYS:
                if any(q.shape[0] != layout.num_global for q in v):
                    raise LLPInputError("the checkpoint's pseudo-labels do not fit these bags; resume with the "
                                        "same settings")
                v = [q[layout.global_pos.cpu()] for q in v]
            out[k] = v
        return out

    def epoch_seed(self, seed: int, epoch: int) -> list[int]:
        return [int(seed), int(epoch), self.rank]

    def barrier(self) -> None:
        dist.barrier()

    def close(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if dist.is_initialized():
            dist.destroy_process_group()


def from_environment(device_name: str = "auto") -> Distributed | None:
    """The :class:`Distributed` context when started by ``torchrun`` with more than one process
    (``WORLD_SIZE`` > 1), else ``None``. Initialises the process group (NCCL on CUDA, Gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return None
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise LLPInputError(f"device {device_name!r} asked for but CUDA is not available here; use --device cpu")
        gpus = torch.cuda.device_count()
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "0") or 0)
        if local_world > gpus and "CUDA_VISIBLE_DEVICES" not in os.environ:   # every process sees every GPU
            raise LLPInputError(f"{local_world} processes on this machine but {gpus} GPU(s): NCCL cannot put two "
                                f"processes on one GPU; use torchrun --nproc_per_node {gpus} or fewer (or --device cpu)")
        # (where a launcher gives each process its own GPU through CUDA_VISIBLE_DEVICES, it is cuda:0)
        device = torch.device("cuda", local_rank % gpus)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        if device_name not in ("auto", "cpu"):
            raise LLPInputError(f"device {device_name!r} is not supported with torchrun; use auto, cpu or cuda")
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ:
            raise LLPInputError("WORLD_SIZE is set but MASTER_ADDR is not: start several processes with "
                                "torchrun --nproc_per_node N -m plotllp train ...")
        dist.init_process_group(backend=backend)
    return Distributed(rank, world, local_rank, device)
