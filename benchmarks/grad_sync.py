"""Data-parallel gradient averaging: plotllp's one all-reduce per step against DDP's overlapped buckets.

plotllp averages the gradients of its ranks with one ``all_reduce`` of the flattened gradients before
every optimiser step (``plotllp.distributed.Distributed.average_gradients``, a hook on the optimiser),
after the backward pass. ``torch.nn.parallel.DistributedDataParallel`` instead reduces buckets of
gradients while the backward pass still runs. This times one PLOT training step (forward, SCE loss,
backward, gradient averaging, Adam) on ``--ranks`` processes, per step and per rank, in four modes that
take turns round by round on the same machine:

- ``none``: no communication at all (the compute alone; the ranks drift apart, a lower bound);
- ``plotllp``: the step-hook averaging plotllp uses;
- ``ddp``: DDP with its default buckets (25 MB; the first one 1 MB);
- ``ddp-small``: DDP with buckets of ``--small-bucket-mb``, so that more of the reduction overlaps
  the backward pass.

It also times the ``all_reduce`` of the flattened gradients alone, and checks on one step that DDP's
averaged gradients equal plotllp's. Inputs are random tensors of the data set's shape (speed does not
depend on their values), with the global batch of ``plotllp train`` (128 instances) split over the
ranks. Gloo on a CPU, NCCL where every rank has its own GPU.

Run: ``python benchmarks/grad_sync.py`` (MLP of width 256 on Fashion-MNIST's shape, and conv-large on
CIFAR-10's); writes ``benchmarks/results/grad_sync_cpu.md`` (``_cuda`` on GPUs) and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time
import warnings

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import RESULTS, header, write  # noqa: E402

from plotllp.distributed import Distributed  # noqa: E402
from plotllp.losses import symmetric_cross_entropy  # noqa: E402
from plotllp.models import build_model  # noqa: E402

SHAPES = {"mlp": (1, 28, 28), "conv-large": (3, 32, 32), "wrn-28-2": (3, 32, 32), "small-cnn": (3, 32, 32)}
MODES = ("none", "plotllp", "ddp", "ddp-small")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def worker(rank: int, args, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cuda = torch.cuda.is_available() and torch.cuda.device_count() >= args.ranks
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.ranks))
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=args.ranks)
    helper = Distributed(rank, args.ranks, rank, device)
    warnings.filterwarnings("ignore", message=".*broadcast_buffers.*", category=FutureWarning)
    shape = SHAPES[args.model]
    batch = args.batch // args.ranks
    torch.manual_seed(0)
    base = build_model(args.model, shape, 10, width=args.width).to(device)
    nets = {"none": base, "plotllp": base,
            "ddp": torch.nn.parallel.DistributedDataParallel(base, broadcast_buffers=False),
            "ddp-small": torch.nn.parallel.DistributedDataParallel(base, broadcast_buffers=False,
                                                                   bucket_cap_mb=args.small_bucket_mb)}
    opt = torch.optim.Adam(base.parameters(), lr=1e-4)
    g = torch.Generator(device="cpu").manual_seed(rank)
    x = torch.randn(batch, *shape, generator=g).to(device)
    y = torch.softmax(torch.randn(batch, 10, generator=g), 1).to(device)

    def step(mode):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = nets[mode](x)
        loss = symmetric_cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if mode == "plotllp":
            helper.average_gradients(base.parameters())
        opt.step()

    # one step's averaged gradients, plotllp's against DDP's (no optimiser step)
    grads = {}
    for mode in ("plotllp", "ddp"):
        base.zero_grad(set_to_none=True)
        torch.manual_seed(1 + rank)                  # the same dropout masks in both
        symmetric_cross_entropy(nets[mode](x), y).backward()
        if mode == "plotllp":
            helper.average_gradients(base.parameters())
        grads[mode] = torch.cat([p.grad.reshape(-1) for p in base.parameters()]).clone()
    max_diff = float((grads["plotllp"] - grads["ddp"]).abs().max())
    scale = float(grads["plotllp"].abs().max())

    times = {m: [] for m in MODES}
    for m in MODES:                                  # warm-up: buckets built, kernels chosen
        for _ in range(args.warmup):
            step(m)
    for _ in range(args.rounds):
        for m in MODES:
            dist.barrier()
            sync(device)
            t = time.perf_counter()
            for _ in range(args.steps):
                step(m)
            sync(device)
            times[m].append((time.perf_counter() - t) / args.steps)
    flat = torch.cat([p.detach().reshape(-1) for p in base.parameters()])
    ar = []
    for _ in range(args.rounds * args.steps):
        dist.barrier()
        t = time.perf_counter()
        dist.all_reduce(flat)
        sync(device)
        ar.append(time.perf_counter() - t)
    if rank == 0:
        queue.put({"model": args.model, "ranks": args.ranks, "threads_per_rank": torch.get_num_threads(),
                   "per_rank_batch": batch, "device": str(device.type),
                   "backend": dist.get_backend(), "params": sum(p.numel() for p in base.parameters()),
                   "ms": {m: 1e3 * statistics.median(v) for m, v in times.items()},
                   "ms_rounds": {m: [1e3 * t for t in v] for m, v in times.items()},
                   "all_reduce_ms": 1e3 * statistics.median(ar), "grad_max_abs_diff": max_diff,
                   "grad_max_abs": scale})
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.spawn(worker, args=(args, free_port(), queue), nprocs=args.ranks, join=True)
    return queue.get()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["mlp", "conv-large"], choices=sorted(SHAPES))
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128, help="global batch (PLOT's default, 128)")
    ap.add_argument("--width", type=int, default=256, help="MLP width (default 256)")
    ap.add_argument("--small-bucket-mb", type=float, default=0.25)
    ap.add_argument("--rounds", type=int, default=5, help="rounds of the four modes taking turns")
    ap.add_argument("--steps", type=int, default=0, help="timed steps per mode and round (default: 40 for the "
                                                          "MLP, 3 for the convolutional networks on a CPU)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out-dir", default=RESULTS)
    args = ap.parse_args()
    if args.ranks < 2 or args.batch % args.ranks:
        ap.error("--ranks must be at least 2 and divide --batch")
    rows = []
    for model in args.models:
        a = argparse.Namespace(**vars(args), model=model)
        if not a.steps:
            a.steps = 40 if model == "mlp" or torch.cuda.is_available() else 3
        t = time.perf_counter()
        r = run(a)
        r["steps"], r["rounds"], r["wall_s"] = a.steps, a.rounds, time.perf_counter() - t
        print(json.dumps({k: v for k, v in r.items() if k != "ms_rounds"}), flush=True)
        rows.append(r)
    kind = "cuda" if rows and rows[0]["device"] == "cuda" else "cpu"
    lines = [header("Gradient averaging over data-parallel ranks: one all-reduce per step against DDP's buckets"),
             "",
             f"{args.ranks} ranks ({rows[0]['threads_per_rank'] if rows else '?'} CPU thread(s) each), global batch "
             f"{args.batch}, one PLOT step (forward, SCE, backward, gradient "
             f"averaging, Adam) on random inputs of the data set's shape; ms per step, median of {args.rounds} "
             "rounds in which the modes take turns. `none`: no communication (compute alone); `plotllp`: one "
             "all-reduce of the flattened gradients before the optimiser step (what plotllp does); `ddp`: "
             "DistributedDataParallel, default buckets; `ddp-small`: buckets of "
             f"{args.small_bucket_mb} MB (more overlap with the backward pass).",
             "",
             "| network | parameters | backend | batch per rank | none ms | plotllp ms | ddp ms | ddp-small ms "
             "| all-reduce alone ms | DDP gradients vs plotllp's (max abs diff / max abs) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        ms = r["ms"]
        lines.append(f"| {r['model']} | {r['params']:,} | {r['backend']} | {r['per_rank_batch']} | {ms['none']:.2f} "
                     f"| {ms['plotllp']:.2f} | {ms['ddp']:.2f} | {ms['ddp-small']:.2f} | {r['all_reduce_ms']:.2f} "
                     f"| {r['grad_max_abs_diff']:.1e} / {r['grad_max_abs']:.1e} |")
    write(f"grad_sync_{kind}.md", "\n".join(lines) + "\n", args.out_dir)
    write(f"grad_sync_{kind}.json", json.dumps(rows, indent=1) + "\n", args.out_dir)


if __name__ == "__main__":
    main()
