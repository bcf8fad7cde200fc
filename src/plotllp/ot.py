r"""Per-bag optimal transport pseudo-labels (paper, section 4, equations (3)-(7)).

For bag :math:`i` with :math:`n_i` instances, model probabilities :math:`P \in \mathbb{R}^{n_i\times K}`
and label proportions :math:`\mathbf{p}_i`, the pseudo-labels solve

.. math::
    \min_{Q \in U(\mathbf{1}_{n_i}/n_i,\ \mathbf{p}_i)} \langle Q, -\log P\rangle
    \;-\; \varepsilon\, \mathbf{H}(Q)

and the label of instance :math:`j` is the row :math:`n_i Q_{j\cdot}` (it sums to 1; the labels of
a bag sum to the class counts :math:`n_i \mathbf{p}_i`).

- ``hard=True`` (:math:`\varepsilon = 0`, equation (4)): exact OT, a transportation LP. With integer
  counts its optimal vertex is integral, so every label is one-hot and the bag's class counts are met
  exactly. Counts that are not integers are rounded by largest remainder first
  (:func:`plotllp.bags.integer_counts`). A bag is solved as an assignment of its instances to the
  class slots (class :math:`k` repeated :math:`c_k` times) with SciPy's ``linear_sum_assignment``;
  larger bags (more than about 100 instances, or 5 per class) with POT's network simplex ``ot.emd``
  on the :math:`n_i \times K` plan, whose optimum is the same and whose integral vertex is one-hot.
  Both release the GIL, so groups of bags are solved in parallel threads (one per torch thread).
- ``hard=False`` (equation (7)): entropic OT with ``reg`` :math:`=\varepsilon = 1/\lambda`
  (default 1/25, the self-labelling reference). The plan is
  :math:`Q_{jk} = \tfrac{1}{n_i}\operatorname{softmax}_k((g_k - C_{jk})/\varepsilon)` where the column
  potential :math:`g \in \mathbb{R}^K` maximises the concave semi-dual

  .. math::
      \Phi(g) = \langle \mathbf{p}_i, g\rangle - \frac{\varepsilon}{n_i}\sum_j
      \log\sum_k \exp\big((g_k - C_{jk})/\varepsilon\big).

  :math:`\nabla\Phi = \mathbf{p}_i - Q^\top \mathbf{1}` and
  :math:`-\nabla^2\Phi = \tfrac{1}{\varepsilon}\sum_j \tfrac{1}{n_i}(\operatorname{diag}(s_j) - s_j s_j^\top)`
  with :math:`s_j` the softmax rows, so a damped Newton method on these :math:`K` variables converges
  in a handful of iterations where plain Sinkhorn at :math:`\lambda = 25` needs thousands. All bags are
  solved at once as batched tensor operations (padded by size bucket), in float64, in the log domain.
  Classes of zero proportion are excluded (their mass is exactly zero).
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import torch

from .bags import integer_counts, validate_bag_ids, validate_proportions
from .errors import LLPInputError

__all__ = ["pseudo_labels", "exact_labels", "improve_assignment", "entropic_labels", "WarmStart", "DEFAULT_REG"]

#: Entropic regularisation 1/lambda with lambda = 25 (self-labelling reference code).
DEFAULT_REG = 1.0 / 25.0
#: A bag of n instances and K classes is solved as an assignment problem (SciPy, O(n^3)) when
#: n <= max(ASSIGNMENT_MIN_BAG, ASSIGNMENT_PER_CLASS * K), else by network simplex on the n x K plan
#: (POT). The two take the same time near n = 96 for K = 10 and n = 256 for K = 100 (2 CPU cores, one bag
#: at a time: ``benchmarks/results/exact_crossover.md``).
ASSIGNMENT_MIN_BAG = 96
ASSIGNMENT_PER_CLASS = 5
#: Exact OT over at least this many rows runs in parallel threads (one per torch thread).
PARALLEL_MIN_ROWS = 4096
#: Equal-sized bags solved as assignment problems are gathered at most this many cost entries at a time.
EXPAND_ELEMENTS = 1 << 20
#: A warm start (``init``) cancels at most this many negative cycles per bag; bags still unproven are
#: solved from scratch. Few rows change between PLOT epochs, so most bags need one or two.
WARM_START_ROUNDS = 4
#: :class:`WarmStart` starts from the last labels when fewer than this fraction of rows changed class
#: between the two solves before. Measured on Fashion-MNIST, MLP, bags of 64 (2 CPU cores): 3-8% of rows
#: changed, warm start 30-40% faster than solving afresh; 15% changed, 50% slower.
WARM_START_MAX_CHANGE = 0.10
#: Log-domain Sinkhorn steps that start every epsilon stage of the entropic solver's later tries on a bag
#: whose solve did not converge (see _newton_semidual and _newton_stage): 3 steps in the second try, 300 in
#: the third and 3,000 in the fourth, each on the bags still off.
SINKHORN_WARMUP = (3, 300, 3000)
#: Smallest probability used in the cost -log p (so that p = 0 gives a large finite cost).
_TINY = 1e-300


def pseudo_labels(probs, bag_ids, proportions, *, hard: bool, reg: float | None = None,
                  tol: float = 1e-10, max_iter: int = 100, init=None) -> torch.Tensor:
    r"""Pseudo-labels that meet every bag's label proportions, by per-bag optimal transport.

    Parameters
    ----------
    probs : (N, K) tensor or array
        Class probabilities :math:`p_\theta(k \mid x_j)` of every instance (rows need not be normalised).
    bag_ids : (N,) integers in ``[0, m)``
        The bag of each instance. Every bag must hold at least one instance.
    proportions : (m, K)
        Label proportions of each bag; rows are non-negative and sum to 1.
    hard : bool
        ``True``: exact OT, one-hot rows, per-bag class counts ``n_i * p_i`` (rounded to integers by
        largest remainder where they are not integral). ``False``: entropic OT.
    reg : float, optional
        Entropic regularisation :math:`\varepsilon = 1/\lambda` for ``hard=False`` (default 1/25).
    tol : float
        Soft labels: stop when every bag's class masses :math:`\sum_j Q_{jk}` are within ``tol``
        (L1, in fractions of the bag) of its proportions.
    max_iter : int
        Soft labels: at most this many Newton iterations.
    init : (N,) class indices or (N, K) one-hot labels, optional
        Hard labels: an assignment to start from, such as the previous epoch's labels. Each bag whose
        ``init`` rows meet its class counts (and whose size at least 8 bags share) is improved to an
        optimum by cancelling negative cycles (:func:`improve_assignment`) on the device of ``probs``;
        the others are solved from scratch. The result is an optimal
        assignment either way; where a bag has several, it may be another one than without ``init``.

    Returns
    -------
    torch.Tensor (N, K)
        On the device of ``probs`` (CPU for numpy input), in its floating dtype (float64 for numpy).
        Rows sum to 1.

    Raises
    ------
    ValueError (:class:`plotllp.errors.LLPInputError`)
        Shapes that do not match, proportions that are negative, NaN or do not sum to 1, bag ids
        out of range, a bag with no instances, NaN or negative probabilities, ``reg <= 0``.
    """
    p_t, device, dtype = _as_tensor(probs)
    if p_t.ndim != 2:
        raise LLPInputError(f"probs must be a 2-d array (instances x classes), got shape {tuple(p_t.shape)}")
    n_inst, n_cls = p_t.shape
    props = validate_proportions(proportions, num_classes=n_cls)
    props = props / props.sum(axis=1, keepdims=True)     # exact in float64 (float32 input sums to 1 +- 1e-7)
    m = props.shape[0]
    ids = validate_bag_ids(bag_ids, m)
    if ids.size != n_inst:
        raise LLPInputError(f"bag_ids has {ids.size} entries but probs has {n_inst} rows")
    sizes = np.bincount(ids, minlength=m)
    if (sizes == 0).any():
        raise LLPInputError(f"bag {int(np.flatnonzero(sizes == 0)[0])} has no instances")
    if p_t.numel():                                       # one pass: NaN propagates to both ends
        lo, hi = torch.aminmax(p_t if p_t.is_floating_point() else p_t.double())
        if not bool(torch.isfinite(lo) & torch.isfinite(hi)):
            raise LLPInputError("probs contain NaN or infinity")
        if lo < 0:
            raise LLPInputError("probs contain negative values")
    if not isinstance(hard, (bool, np.bool_)):
        raise LLPInputError(f"hard must be True (exact OT) or False (entropic OT), got {hard!r}")
    if hard:
        out = exact_labels(p_t, ids, props, sizes, init=None if init is None else _init_classes(init, n_inst, n_cls),
                           dtype=dtype)
    else:
        reg = DEFAULT_REG if reg is None else float(reg)
        if not (reg > 0 and math.isfinite(reg)):
            raise LLPInputError(f"reg must be a positive number, got {reg}")
        if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
            raise LLPInputError(f"max_iter must be a positive integer, got {max_iter!r}")
        if not (tol > 0 and math.isfinite(tol)):
            raise LLPInputError(f"tol must be a positive number, got {tol}")
        out = entropic_labels(p_t, ids, props, sizes, reg=reg, tol=tol, max_iter=max_iter)
    return out.to(device=device, dtype=dtype)


# -- hard labels: exact OT ------------------------------------------------------------------
def exact_labels(probs: torch.Tensor, ids: np.ndarray, props: np.ndarray, sizes: np.ndarray,
                 init: np.ndarray | None = None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """One-hot labels of the exact per-bag OT (validated inputs; see :func:`pseudo_labels`); ``init``:
    (N,) classes to start from, or None. The warm start runs on the device of ``probs`` (it is tensor
    operations); the solvers of bags solved from scratch run on the CPU. Returns CPU labels of ``dtype``."""
    from scipy.optimize import linear_sum_assignment

    counts = integer_counts(props, sizes)
    in_order = bool((np.diff(ids) >= 0).all())          # members listed bag by bag (as LLPData holds them)
    order = None if in_order else np.argsort(ids, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    # -log p in float64, bag by bag: on the device of probs for a warm start, else on the CPU
    cost_dev = probs.device if init is not None else torch.device("cpu")
    cost_t = (probs.detach().to(cost_dev, torch.float64, copy=True) if in_order       # a copy: changed in place
              else probs.detach()[torch.from_numpy(order).to(probs.device)].to(cost_dev, torch.float64))
    cost_t = cost_t.clamp_min_(_TINY).log_().neg_()
    cost_sorted = None                                  # the CPU copy (numpy) for the solvers, made when needed
    labels_sorted = np.empty(ids.size, dtype=np.int64)
    n_cls = cost_t.shape[1]
    classes = np.arange(n_cls)
    max_assignment = max(ASSIGNMENT_MIN_BAG, ASSIGNMENT_PER_CLASS * n_cls)

    def solve_equal_bags(bags: np.ndarray, n: int) -> None:
        """Bags of ``n`` rows as assignment problems: their class-slot cost matrices (class k
        repeated c_k times) gathered in one pass, then one solver call per bag."""
        rows = offsets[bags][:, None] + np.arange(n)                                   # (g, n)
        slots = np.repeat(np.tile(classes, bags.size), counts[bags].ravel()).reshape(bags.size, n)
        expanded = np.take_along_axis(cost_sorted[rows], slots[:, None, :], axis=2)    # (g, n, n)
        cols = np.empty((bags.size, n), dtype=np.int64)
        for i in range(bags.size):
            cols[i] = linear_sum_assignment(expanded[i])[1]
        labels_sorted[rows] = np.take_along_axis(slots, cols, axis=1)

    def solve_bags(bags: np.ndarray) -> None:
        """Bags one by one: assignment for small ones, network simplex for large ones."""
        for b in bags:
            lo, hi = offsets[b], offsets[b + 1]
            if hi - lo <= max_assignment:
                slots = np.repeat(classes, counts[b])
                labels_sorted[lo:hi] = slots[linear_sum_assignment(cost_sorted[lo:hi][:, slots])[1]]
            else:
                labels_sorted[lo:hi] = _emd_assignment(cost_sorted[lo:hi], counts[b])

    todo = np.ones(sizes.size, dtype=bool)
    if init is not None:                  # warm start: improve the bags whose init is feasible
        init_sorted = init if in_order else init[order]
        bag_of = np.repeat(np.arange(sizes.size), sizes)
        have = np.bincount(bag_of * n_cls + init_sorted, minlength=sizes.size * n_cls).reshape(-1, n_cls)
        feasible = (have == counts).all(axis=1)
        for n, group in _equal_size_groups(sizes, feasible):
            rows = offsets[group][:, None] + np.arange(n)
            if group.size == sizes.size:  # every bag, in order: views, no copies
                group_cost, group_init = cost_t.view(-1, n, n_cls), init_sorted.reshape(-1, n)
            else:
                group_cost, group_init = cost_t[torch.from_numpy(rows).to(cost_t.device)], init_sorted[rows]
            improved, certified = improve_assignment(group_cost, torch.from_numpy(group_init).to(cost_t.device),
                                                     max_rounds=WARM_START_ROUNDS)
            done = certified.cpu().numpy()
            labels_sorted[rows[done]] = improved.cpu().numpy()[done]
            todo[group[done]] = False
    if todo.any():
        cost_sorted = cost_t.cpu().numpy()

    threads = _solver_threads()
    small = (sizes <= max_assignment) & todo
    tasks, rest = [], todo.copy()         # bags left in rest are solved one by one
    for n, group in _equal_size_groups(sizes, small):
        rest[group] = False
        per_task = max(1, min(EXPAND_ELEMENTS // (n * n), -(-group.size // threads)))
        tasks += [(solve_equal_bags, (group[s:s + per_task], n)) for s in range(0, group.size, per_task)]
    others = np.flatnonzero(rest)
    if others.size:                       # split by rows, so the threads get about equal work
        cuts = np.searchsorted(np.cumsum(sizes[others]), np.linspace(0, sizes[others].sum(), threads + 1)[1:-1])
        tasks += [(solve_bags, (part,)) for part in np.split(others, cuts) if part.size]
    # The solvers release the GIL: the tasks (groups of whole bags) run in parallel threads.
    workers = min(threads, len(tasks)) if ids.size >= PARALLEL_MIN_ROWS else 1
    if workers > 1:
        list(_pool(workers).map(lambda task: task[0](*task[1]), tasks))
    else:
        for fn, task_args in tasks:
            fn(*task_args)
    if in_order:
        labels = labels_sorted
    else:
        labels = np.empty_like(labels_sorted)
        labels[order] = labels_sorted
    return torch.zeros(ids.size, n_cls, dtype=dtype).scatter_(1, torch.from_numpy(labels)[:, None], 1.0)


def _equal_size_groups(sizes: np.ndarray, mask: np.ndarray, min_bags: int = 8):
    """``(n, bags)`` for each size ``n`` shared by at least ``min_bags`` of the bags in ``mask``: those
    are solved together; a few bags of one size are not worth gathering."""
    for n in np.unique(sizes[mask]):
        group = np.flatnonzero(mask & (sizes == n))
        if group.size >= min_bags:
            yield int(n), group


def improve_assignment(cost: torch.Tensor, labels: torch.Tensor, *, max_rounds: int = 40,
                       tol: float = 1e-9) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Improve feasible assignments of equal-sized bags to optimal ones, all bags at once.

    ``cost`` (m, n, K): :math:`C_{jk}` of each bag's rows; ``labels`` (m, n): a class per row, meeting
    the bag's class counts. Moving one row :math:`j` from class :math:`s` to class :math:`t` costs
    :math:`C_{jt} - C_{js}`; the class graph of a bag has the edges
    :math:`W_{st} = \min_{j:\,a_j = s} (C_{jt} - C_{js})`. A cycle of this graph moves one row along
    each of its edges and keeps every class count, and an assignment is optimal exactly when the graph
    has no negative cycle (the residual-graph criterion of min-cost flow, Ahuja, Magnanti & Orlin 1993,
    theorem 9.1, with the rows contracted). Negative 2-cycles (two rows trading classes) are cancelled
    first, cheaply; then each round finds one negative cycle per bag by Bellman-Ford on the :math:`K`
    classes and moves its rows; a bag with none is optimal (certified). Each bag's class graph is
    built once and rebuilt only when its labels change, and Bellman-Ford drops a bag as soon as its
    distances stop changing (no negative cycle).

    Returns ``(labels, certified)``: the improved classes (m, n) and which bags are certified optimal
    (up to ``tol`` in cost) within ``max_rounds`` rounds; the others are left feasible but unproven.
    """
    m, n, k = cost.shape
    dev, dt = cost.device, cost.dtype
    labels = labels.clone()
    move, w = _class_graph(cost, labels)            # every bag's graph, brought up to date as its labels change
    _cancel_swaps(cost, labels, move, w, max_rounds, tol)               # the short cycles first, cheaply
    certified = torch.zeros(m, dtype=torch.bool, device=dev)
    index = torch.arange(m, device=dev)                                     # the bags of this round
    inf = torch.tensor(float("inf"), dtype=dt, device=dev)
    for _ in range(max_rounds):
        if index.numel() == 0:
            break
        # Bellman-Ford from a virtual source to every class; a bag whose distances stop changing has no
        # negative cycle and leaves; those still changing in the k-th pass have one.
        live = index
        wl = w[live] if live.numel() < m else w
        dist = torch.zeros(live.numel(), k, dtype=dt, device=dev)
        pred = torch.full((live.numel(), k), -1, dtype=torch.long, device=dev)
        for step in range(k):
            new, via = (dist[:, :, None] + wl).min(1)
            changed = new < dist - tol
            dist, pred = torch.where(changed, new, dist), torch.where(changed, via, pred)
            moving = changed.any(1)
            if step < k - 1 and not bool(moving.all()):
                live, wl, dist, pred = live[moving], wl[moving], dist[moving], pred[moving]
                if live.numel() == 0:
                    break
        certified[index] = True
        if live.numel() == 0:
            break
        live, p, w_sel, node = live[moving], pred[moving], wl[moving].view(-1, k * k), changed[moving]
        if live.numel() == 0:
            break
        certified[live] = False
        a_sel, move_sel = labels[live], move[live]
        node = node.to(torch.int8).argmax(1, keepdim=True)                   # (s, 1): a class updated last
        for _ in range(k):                                                   # k steps back: onto the cycle
            node = p.gather(1, node).clamp_min(0)
        ok = p.gather(1, node) >= 0                                          # (a bag without is not applied)
        start, going = node.clone(), ok.clone()
        weight = torch.zeros_like(node, dtype=dt)
        new_a = a_sel.clone()
        for _ in range(k):                                                   # around the cycle: one row per edge
            src = p.gather(1, node).clamp_min(0)
            weight += torch.where(going, w_sel.gather(1, src * k + node), 0.0)
            cost_in = move_sel.gather(2, node[:, :, None].expand(-1, n, 1)).squeeze(2)   # rows -> class node
            j = torch.where(a_sel == src, cost_in, inf).argmin(1, keepdim=True)          # the best row of src
            new_a.scatter_(1, j, torch.where(going, node, new_a.gather(1, j)))
            node = torch.where(going, src, node)
            going = going & (node != start)
            if not going.any():                                              # most cycles are short: stop early
                break
        apply = (ok & ~going & (weight < -tol)).squeeze(1)                  # a closed, negative cycle
        index = live[apply]
        labels[index] = new_a[apply]
        move[index], w[index] = _class_graph(cost[index], labels[index])
    return labels, certified


def _class_graph(c: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(move, W)``: ``move[b, j, t] = C_jt - C_j,a_j`` and the class graph ``W[b, s, t]``, the cheapest
    move of a row of class ``s`` to class ``t`` (infinite where ``s`` has no rows, and for ``s = t``)."""
    g, n, k = c.shape
    move = c - c.gather(2, a[:, :, None])
    w = torch.full((g, k, k), float("inf"), dtype=c.dtype, device=c.device)
    w.scatter_reduce_(1, a[:, :, None].expand(g, n, k), move, "amin", include_self=True)
    w.diagonal(dim1=1, dim2=2).fill_(float("inf"))
    return move, w


def _cancel_swaps(cost: torch.Tensor, labels: torch.Tensor, move: torch.Tensor, w: torch.Tensor,
                  rounds: int, tol: float) -> None:
    """Cancel negative 2-cycles of the class graph (two rows trading classes), the most negative one per
    bag and round, all bags at once; ``labels`` and the graphs ``move, w`` (:func:`_class_graph`) are
    updated in place. Most of the changes between two PLOT epochs are such swaps;
    :func:`improve_assignment` then certifies (or goes on)."""
    m, n, k = cost.shape
    inf = torch.tensor(float("inf"), dtype=cost.dtype, device=cost.device)
    index = torch.arange(m, device=cost.device)                              # the bags of this round
    for _ in range(rounds):
        if index.numel() == 0:
            break
        wa = w[index] if index.numel() < m else w
        best, at = (wa + wa.transpose(1, 2)).flatten(1).min(1)              # W[s, t] + W[t, s]
        sel = torch.nonzero(best < -tol).squeeze(1)
        if sel.numel() == 0:
            break
        index = index[sel]
        s_cls, t_cls = (at[sel] // k)[:, None], (at[sel] % k)[:, None]
        a_sel, move_sel = labels[index], move[index]
        j_st = torch.where(a_sel == s_cls, move_sel.gather(2, t_cls[:, :, None].expand(-1, n, 1)).squeeze(2),
                           inf).argmin(1, keepdim=True)                                          # s -> t
        j_ts = torch.where(a_sel == t_cls, move_sel.gather(2, s_cls[:, :, None].expand(-1, n, 1)).squeeze(2),
                           inf).argmin(1, keepdim=True)                                          # t -> s
        a_sel.scatter_(1, j_st, t_cls).scatter_(1, j_ts, s_cls)
        labels[index] = a_sel
        move[index], w[index] = _class_graph(cost[index], a_sel)


class WarmStart:
    """When to start the next exact OT of a sequence (one solve per epoch, the same instances and bags)
    from the last labels: when fewer than ``max_change`` of the rows changed class between the last
    two solves; after the first solve, which has none before it, when fewer than ``max_change`` of the
    predicted classes (argmax of the probabilities) changed since it. Then most bags need one or two
    cycles cancelled (:func:`improve_assignment`), which is cheaper than solving them afresh; with many
    changes it is not. The labels are optimal either way. ::

        start = WarmStart()
        for epoch in range(epochs):
            ...
            q = pseudo_labels(probs, bag_ids, proportions, hard=True, init=start.init(probs))
            start.record(q, probs)
    """

    def __init__(self, max_change: float = WARM_START_MAX_CHANGE):
        self.max_change = float(max_change)
        self._last = self._before = self._first_predicted = None

    def init(self, probs: torch.Tensor) -> torch.Tensor | None:
        """The last labels' classes (N,) to start the solve on ``probs`` from, or None (solve afresh)."""
        if self._last is None:
            return None
        if self._before is not None:
            changed = (self._last != self._before).float().mean()
        elif self._first_predicted is not None:
            changed = (probs.argmax(1) != self._first_predicted).float().mean()
        else:
            return None
        return self._last if float(changed) < self.max_change else None

    @classmethod
    def resumed(cls, window) -> "WarmStart":
        """A WarmStart that has recorded the last two labels of ``window`` (a restored
        :class:`plotllp.engine.LabelWindow`), as after a resume."""
        start = cls()
        for q in ([window.previous] if len(window) > 1 else []) + ([window.latest] if len(window) else []):
            start.record(q)
        return start

    _SLOTS = ("_last", "_before", "_first_predicted")

    def state_dict(self) -> dict:
        """For a checkpoint: ``warm_start``, the recorded classes (each (N,), on the CPU), and
        ``warm_start_slots``, their names (a resumed run then starts the solves the uninterrupted one does)."""
        slots = [name for name in self._SLOTS if getattr(self, name) is not None]
        return {"warm_start": [getattr(self, name).cpu() for name in slots], "warm_start_slots": slots}

    @classmethod
    def restored(cls, state: dict, window, device) -> "WarmStart":
        """The inverse of :meth:`state_dict` (its keys among others in ``state``); from a checkpoint written
        before it held them, rebuilt from the restored label ``window`` (:meth:`resumed`)."""
        if "warm_start" not in state:
            return cls.resumed(window)
        start = cls()
        for name, value in zip(state["warm_start_slots"], state["warm_start"]):
            if name not in cls._SLOTS:
                raise LLPInputError(f"unknown warm-start state {name!r}")
            setattr(start, name, value.to(device))
        return start

    def record(self, labels: torch.Tensor, probs: torch.Tensor | None = None) -> None:
        """After each solve: its (N, K) labels, and for the first solve the probabilities it solved."""
        first = self._last is None
        self._before, self._last = self._last, labels.argmax(1)
        self._first_predicted = probs.argmax(1) if first and probs is not None else None


def _init_classes(init, n_inst: int, n_cls: int) -> np.ndarray:
    """``init`` of :func:`pseudo_labels` as (N,) int64 classes, checked."""
    arr = init.detach().cpu().numpy() if isinstance(init, torch.Tensor) else np.asarray(init)
    if arr.ndim == 2 and arr.shape == (n_inst, n_cls):
        arr = arr.argmax(axis=1)
    if arr.shape != (n_inst,):
        raise LLPInputError(f"init must hold a class per instance ({n_inst},) or one-hot rows ({n_inst}, {n_cls}), "
                            f"got shape {arr.shape}")
    if arr.dtype.kind not in "iub" and not (np.isfinite(arr).all() and (np.mod(arr, 1) == 0).all()):
        raise LLPInputError("init classes must be whole numbers")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= n_cls):
        raise LLPInputError(f"init classes must lie in [0, {n_cls})")
    return arr


_POOL: dict = {}


def _solver_threads() -> int:
    return max(1, min(torch.get_num_threads(), os.cpu_count() or 1))


def _pool(workers: int):
    """A thread pool kept for the process's life (threads are cheap to keep, costly to start each epoch)."""
    from concurrent.futures import ThreadPoolExecutor

    if workers not in _POOL:
        _POOL[workers] = ThreadPoolExecutor(workers, thread_name_prefix="plotllp-ot")
    return _POOL[workers]


def _emd_assignment(cost: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Class of each row in POT's exact plan with row masses 1 and column masses ``counts``."""
    import ot

    active = np.flatnonzero(counts > 0)
    plan = ot.emd(np.ones(cost.shape[0]), counts[active].astype(np.float64),
                  np.ascontiguousarray(cost[:, active]), numItermax=10_000_000)
    return active[plan.argmax(axis=1)]


# -- soft labels: entropic OT by Newton's method on the semi-dual ---------------------------
def entropic_labels(probs: torch.Tensor, ids: np.ndarray, props: np.ndarray, sizes: np.ndarray, *,
                    reg: float, tol: float = 1e-10, max_iter: int = 100,
                    max_elements: int = 1 << 24) -> torch.Tensor:
    """Rows of ``n_i Q`` for the entropic per-bag OT (validated inputs; see :func:`pseudo_labels`)."""
    device = probs.device
    cost = -torch.log(probs.detach().to(torch.float64).clamp_min(_TINY))
    n_cls = cost.shape[1]
    order = torch.from_numpy(np.argsort(ids, kind="stable")).to(device)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    out_sorted = torch.empty_like(cost)
    cost_sorted = cost[order]
    props_t = torch.from_numpy(props).to(device)
    # Bags are grouped in buckets of sizes within a factor 2 and padded to the bucket's largest
    # size, in chunks of at most `max_elements` padded entries, so memory stays bounded.
    bucket = np.ceil(np.log2(sizes)).astype(np.int64)
    worst = 0.0
    for key in np.unique(bucket):
        bags = np.flatnonzero(bucket == key)
        n_pad = int(sizes[bags].max())
        per_chunk = max(1, max_elements // (n_pad * n_cls))
        for s in range(0, bags.size, per_chunk):
            chunk = bags[s:s + per_chunk]
            pos, valid = _padded_positions(offsets[chunk], sizes[chunk], n_pad, device)
            c = cost_sorted[pos]                                     # (g, n_pad, K)
            q, err = _newton_semidual(c, valid, props_t[torch.from_numpy(chunk).to(device)], reg, tol, max_iter)
            out_sorted[pos[valid]] = q[valid]
            worst = max(worst, err)
    if worst > max(tol, 1e-6):
        warnings.warn(f"entropic OT stopped after {max_iter} iterations with class-mass error {worst:.2e}",
                      RuntimeWarning, stacklevel=3)
    out = torch.empty_like(out_sorted)
    out[order] = out_sorted
    return out


def _padded_positions(starts, lengths, n_pad, device):
    starts = torch.as_tensor(starts, device=device)
    lengths = torch.as_tensor(lengths, device=device)
    ar = torch.arange(n_pad, device=device)
    valid = ar[None, :] < lengths[:, None]
    pos = torch.where(valid, starts[:, None] + ar[None, :], starts[:, None])
    return pos, valid


def _newton_semidual(cost, valid, props, eps, tol, max_iter, *, eps_start=1.0, eps_factor=0.5, tol_start=1e-3,
                     warmup: int = 0):
    """Maximise every bag's semi-dual by damped Newton; return (labels, max L1 class-mass error).

    Globalisation: epsilon-scaling (solve loosely for eps_start, eps_start * eps_factor, ... down to
    ``eps``, each warm-starting the next) and Levenberg-Marquardt damping ``mu * diag(mass)``
    adapted per bag (a step is kept only if it increases Phi). Bags that have converged leave the
    working set, so the slowest bag does not make every bag pay for its iterations. Bags still off by
    more than ``tol`` are solved again, from each of the ``SINKHORN_WARMUP`` numbers of log-domain
    Sinkhorn steps in turn (``warmup``; see :func:`_newton_stage`) while some are off, and the best
    solution of each bag is kept.
    """
    labels, err = _newton_solve(cost, valid, props, eps, tol, max_iter, eps_start, eps_factor, tol_start, warmup)
    for steps in (SINKHORN_WARMUP if warmup == 0 else ()):
        bad = torch.nonzero(err > max(tol, 1e-6)).squeeze(1)
        if not bad.numel():
            break
        again, err2 = _newton_solve(cost[bad], valid[bad], props[bad], eps, tol, max_iter, eps_start, eps_factor,
                                    tol_start, steps)
        better = err2 < err[bad]
        labels[bad[better]] = again[better]
        err[bad[better]] = err2[better]
    return labels, float(err.max()) if err.numel() else 0.0


def _newton_solve(cost, valid, props, eps, tol, max_iter, eps_start, eps_factor, tol_start, warmup):
    """:func:`_newton_semidual`'s solve from one start: (labels, per-bag L1 class-mass error)."""
    n_bags, n_pad, n_cls = cost.shape
    weight = valid.to(cost.dtype) / valid.sum(1, keepdim=True)        # a_j = 1/n_i on real rows
    active = props > 0                                                 # zero-proportion classes get no mass
    cost = torch.where(active[:, None, :], cost, math.inf)             # so exp((g - C)/eps) = 0 there
    eye = torch.eye(n_cls, dtype=cost.dtype, device=cost.device)
    g = torch.zeros(n_bags, n_cls, dtype=cost.dtype, device=cost.device)
    schedule = []
    e = max(eps_start, eps)
    while e > eps * (1 + 1e-9):
        schedule.append((e, tol_start))
        e *= eps_factor
    schedule.append((eps, tol))
    for i, (e, stage_tol) in enumerate(schedule):
        g, _ = _newton_stage(cost, weight, props, active, g, e, stage_tol, max_iter, eye, warmup=warmup)
    z = (g[:, None, :] - cost) / eps
    labels = torch.softmax(z, dim=2) * valid[..., None]
    mass = (weight[..., None] * labels).sum(1)
    return labels, torch.where(active, props - mass, 0).abs().sum(1)


def _newton_stage(cost, weight, props, active, g, eps, tol, max_iter, eye, warmup: int = 0):
    """Damped Newton iterations at one epsilon on the bags whose class masses are off by > tol, after
    ``warmup`` log-domain Sinkhorn steps."""
    live = torch.arange(g.shape[0], device=g.device)
    c, w8, p, act, gl = cost, weight, props, active, g.clone()
    mu = torch.full((live.numel(),), 1e-3, dtype=g.dtype, device=g.device)

    def evaluate(gv, c, w8, p):
        z = (gv[:, None, :] - c) / eps
        lse = torch.logsumexp(z, dim=2)
        phi = (p * torch.where(p > 0, gv, 0)).sum(1) - eps * (w8 * lse).sum(1)
        return phi, torch.exp(z - lse[..., None])

    # Log-domain Sinkhorn steps on the semi-dual, g_k += eps (log p_k - log mass_k): each sets every class's
    # mass to p_k up to the rows' normalisation, however far g starts from the optimum (a class of
    # probability ~0 in a whole bag has a cost of ~690, a gap that Newton, whose Hessian there is ~0, cannot cross)
    # A step is kept only for the bags whose semi-dual it increases (it is a heuristic, not an ascent method).
    log_p = torch.where(act, p, 1.0).log()
    phi, s = evaluate(gl, c, w8, p)
    for _ in range(warmup):
        z = (gl[:, None, :] - c) / eps
        log_s = z - torch.logsumexp(z, dim=2, keepdim=True)
        log_mass = torch.logsumexp(log_s + w8.clamp_min(_TINY).log()[..., None], dim=1)
        cand = torch.where(act, gl + eps * (log_p - log_mass), gl)
        c_phi, c_s = evaluate(cand, c, w8, p)
        up = c_phi > phi
        gl = torch.where(up[:, None], cand, gl)
        phi = torch.where(up, c_phi, phi)
        s = torch.where(up[:, None, None], c_s, s)
    worst = 0.0
    for _ in range(max_iter):
        ws = w8[..., None] * s
        mass = ws.sum(1)
        grad = torch.where(act, p - mass, 0)
        err = grad.abs().sum(1)
        done = err <= tol
        if bool(done.any()):                                           # converged bags leave the working set
            g[live[done]] = gl[done]
            keep = ~done
            live, c, w8, p, act, gl = live[keep], c[keep], w8[keep], p[keep], act[keep], gl[keep]
            mu, phi, s, ws, mass, grad = mu[keep], phi[keep], s[keep], ws[keep], mass[keep], grad[keep]
            if live.numel() == 0:
                return g, worst
        hess = torch.diag_embed(mass) - ws.transpose(1, 2) @ s         # = eps * (-Hessian of Phi)
        damp = mu[:, None] * mass + 1e-12 * mass.amax(1, keepdim=True)
        hess = hess + eye * torch.where(act, damp, 1.0)[:, None, :]
        step = eps * torch.linalg.solve(hess, grad.unsqueeze(-1)).squeeze(-1)
        step = torch.where(act, step, 0)
        slope = (grad * step).sum(1)
        c_phi, c_s = evaluate(gl + step, c, w8, p)
        ok = c_phi >= phi + 1e-4 * slope - 1e-13 * phi.abs()
        gl = torch.where(ok[:, None], gl + step, gl)
        phi = torch.where(ok, c_phi, phi)
        s = torch.where(ok[:, None, None], c_s, s)
        mu = torch.where(ok, (mu * 0.25).clamp_min(1e-10), mu * 4.0)
    mass = (w8[..., None] * s).sum(1)
    worst = float(torch.where(act, p - mass, 0).abs().sum(1).max())
    g[live] = gl
    return g, worst


def _as_tensor(x):
    """(tensor, original device, output dtype) for torch or numpy input."""
    if isinstance(x, torch.Tensor):
        dtype = x.dtype if x.is_floating_point() else torch.float32
        return x.detach(), x.device, dtype
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise LLPInputError(f"probs must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    return torch.from_numpy(np.ascontiguousarray(arr)), torch.device("cpu"), torch.float64
