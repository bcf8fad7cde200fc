"""Bags: groups of training instances of which only the class proportions are known.

An LLP training set is :math:`\\mathcal{D} = \\{(\\mathcal{B}_i, \\mathbf{p}_i)\\}_{i=1}^m` (paper,
section 3.3): bag :math:`i` holds :math:`n_i` instances and a proportion vector
:math:`\\mathbf{p}_i \\in \\Sigma^K`; its class counts are :math:`\\mathbf{c}_i = n_i \\mathbf{p}_i`.

:class:`Bags` stores the members of every bag in one flat array (``indices``) cut by ``offsets``
(a CSR layout), so bags of unequal sizes and instances shared by several bags need nothing special,
and gathering the members of a minibatch of bags is a vectorised operation.

Constructors:

- :func:`uniform_bags` -- the convention of the public LLP code (SPEC section 2): permute the
  instances with a seeded generator, cut consecutive bags of equal size, drop the last partial bag
  unless asked to keep it;
- :func:`bags_from_ids` -- a user's bag-id per instance plus proportions or counts per bag;
- for experiments (proportions from known labels): :func:`sized_bags` (unequal sizes),
  :func:`dirichlet_bags` (label-skewed, proportions ~ Dirichlet(alpha)), :func:`clustered_bags`
  (k-means on the features), :func:`feature_bags` (equal values of some columns), :func:`sampled_bags`
  (drawn with replacement).

Whole-bag validation splits: :meth:`Bags.split`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .errors import LLPInputError

#: Absolute tolerance for "the proportions of a bag sum to 1".
SUM_TOLERANCE = 1e-6


def validate_proportions(proportions, *, num_bags: int | None = None, num_classes: int | None = None,
                         name: str = "proportions", bag_names=None) -> np.ndarray:
    """Return ``proportions`` as a float64 (m, K) array, or raise :class:`LLPInputError`.

    Every row must be finite, non-negative and sum to 1 (within ``SUM_TOLERANCE``). ``bag_names``
    (one per row) name the bags in the errors; by default their row numbers.
    """
    try:
        p = np.ascontiguousarray(_to_numpy(proportions), dtype=np.float64)
    except (TypeError, ValueError):
        raise LLPInputError(f"{name} must be a numeric array (bags x classes)") from None
    if p.ndim != 2:
        raise LLPInputError(f"{name} must be a 2-d array (bags x classes), got shape {p.shape}")
    if num_bags is not None and p.shape[0] != num_bags:
        raise LLPInputError(f"{name} has {p.shape[0]} rows but there are {num_bags} bags")
    if num_classes is not None and p.shape[1] != num_classes:
        raise LLPInputError(f"{name} has {p.shape[1]} columns but there are {num_classes} classes")
    if p.shape[1] < 2:
        raise LLPInputError(f"{name} must have at least 2 classes (columns), got {p.shape[1]}")
    bad = ~np.isfinite(p).all(axis=1)
    if bad.any():
        raise LLPInputError(f"{name} of bag {_bag_name(bag_names, np.flatnonzero(bad)[0])} contain NaN or infinity")
    neg = (p < 0).any(axis=1)
    if neg.any():
        b = int(np.flatnonzero(neg)[0])
        raise LLPInputError(f"{name} of bag {_bag_name(bag_names, b)} are negative: {np.round(p[b], 6).tolist()}")
    sums = p.sum(axis=1)
    off = np.abs(sums - 1) > SUM_TOLERANCE
    if off.any():
        b = int(np.flatnonzero(off)[0])
        raise LLPInputError(f"{name} of bag {_bag_name(bag_names, b)} sum to {sums[b]:.6g}, not 1")
    return p


def _bag_name(bag_names, b) -> str:
    """Bag ``b`` as errors name it: its id from ``bag_names`` (quoted), else its row number."""
    return str(int(b)) if bag_names is None else repr(str(bag_names[int(b)]))


def validate_bag_ids(bag_ids, num_bags: int | None = None) -> np.ndarray:
    """Return bag ids as an int64 vector; raise if they are not integers in ``[0, num_bags)``."""
    ids = np.asarray(_to_numpy(bag_ids))
    if ids.ndim != 1:
        raise LLPInputError(f"bag ids must be a 1-d array, got shape {ids.shape}")
    if ids.size == 0:
        raise LLPInputError("bag ids are empty: there are no instances")
    if ids.dtype.kind == "f":
        if not np.isfinite(ids).all() or (ids != np.round(ids)).any():
            raise LLPInputError("bag ids must be integers")
        if np.abs(ids).max() >= 2 ** 53:
            raise LLPInputError(f"bag id {ids[np.abs(ids).argmax()]:.6g} is too large; bag ids must be in "
                                "[0, number of bags)")
    elif ids.dtype.kind not in "iub":
        raise LLPInputError(f"bag ids must be integers, got dtype {ids.dtype}")
    ids = ids.astype(np.int64)
    if ids.min() < 0:
        raise LLPInputError(f"bag id {int(ids.min())} is negative; bag ids must be in [0, number of bags)")
    if num_bags is not None and ids.max() >= num_bags:
        raise LLPInputError(f"bag id {int(ids.max())} is out of range: there are {num_bags} bags "
                            f"(ids must be in [0, {num_bags}))")
    return ids


def integer_counts(proportions: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Class counts per bag that sum to the bag sizes: ``round(n_i * p_i)`` by largest remainder.

    When ``n_i p_i`` is integral (within 1e-6) this is exactly ``n_i p_i``; otherwise the
    remainders are handed out to the classes with the largest fractional parts (Hamilton's method),
    so that the counts stay non-negative and sum to ``n_i``.
    """
    exact = proportions * sizes[:, None]
    base = np.floor(exact + 1e-6).clip(min=0)
    missing = (sizes - base.sum(axis=1)).astype(np.int64)
    frac = exact - base
    order = np.argsort(-frac, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(order.shape[1])[None, :].repeat(order.shape[0], 0), axis=1)
    base += ranks < missing[:, None]
    return base.astype(np.int64)


@dataclass(frozen=True)
class Bags:
    """Bags of instances with their label proportions.

    Attributes
    ----------
    indices : (M,) int64
        Instance index (into the dataset) of each bag member, bag 0's members first.
    offsets : (m + 1,) int64
        Bag ``b``'s members are ``indices[offsets[b]:offsets[b + 1]]``.
    proportions : (m, K) float64
        Class proportions per bag; rows sum to 1.
    """

    indices: np.ndarray
    offsets: np.ndarray
    proportions: np.ndarray

    def __post_init__(self):
        idx = np.ascontiguousarray(self.indices, dtype=np.int64)    # contiguous: torch takes no negative strides
        off = np.ascontiguousarray(self.offsets, dtype=np.int64)
        if off.ndim != 1 or off.size < 2 or off[0] != 0 or off[-1] != idx.size:
            raise LLPInputError("bag offsets must start at 0 and end at the number of members")
        sizes = np.diff(off)
        if (sizes <= 0).any():
            raise LLPInputError(f"bag {int(np.flatnonzero(sizes <= 0)[0])} has no instances")
        if idx.size and idx.min() < 0:
            raise LLPInputError("instance indices must be non-negative")
        p = validate_proportions(self.proportions, num_bags=sizes.size)
        object.__setattr__(self, "indices", idx)
        object.__setattr__(self, "offsets", off)
        object.__setattr__(self, "proportions", p)

    # -- shape -------------------------------------------------------------------------------
    @property
    def num_bags(self) -> int:
        return self.offsets.size - 1

    @property
    def num_classes(self) -> int:
        return self.proportions.shape[1]

    @property
    def sizes(self) -> np.ndarray:
        """(m,) number of members of each bag."""
        return np.diff(self.offsets)

    @property
    def bag_ids(self) -> np.ndarray:
        """(M,) the bag of each member, aligned with :attr:`indices`."""
        return np.repeat(np.arange(self.num_bags), self.sizes)

    @property
    def counts(self) -> np.ndarray:
        """(m, K) integer class counts, ``n_i p_i`` rounded so that they sum to ``n_i``."""
        return integer_counts(self.proportions, self.sizes)

    def members(self, b: int) -> np.ndarray:
        return self.indices[self.offsets[b]:self.offsets[b + 1]]

    def __len__(self) -> int:
        return self.num_bags

    def __repr__(self) -> str:
        s = self.sizes
        size = f"{s[0]}" if (s == s[0]).all() else f"{s.min()}..{s.max()}"
        return f"Bags(num_bags={self.num_bags}, size={size}, num_classes={self.num_classes})"

    # -- subsets -----------------------------------------------------------------------------
    def subset(self, bags) -> "Bags":
        """The bags listed in ``bags`` (indices into this collection), renumbered from 0."""
        bags = np.asarray(bags)
        if bags.ndim != 1 or bags.size == 0 or bags.dtype.kind not in "iu":
            raise LLPInputError(f"a subset of bags is a non-empty list of bag indices, got {bags.tolist()}")
        bags = bags.astype(np.int64)
        if bags.min() < 0 or bags.max() >= self.num_bags:
            raise LLPInputError(f"bag {int(bags.max() if bags.max() >= self.num_bags else bags.min())} is not one of "
                                f"the {self.num_bags} bags (0..{self.num_bags - 1})")
        if np.unique(bags).size != bags.size:
            raise LLPInputError("a subset of bags lists a bag twice")
        sizes = self.sizes[bags]
        starts = self.offsets[bags]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        pos = np.repeat(starts - offsets[:-1], sizes) + np.arange(offsets[-1])
        return Bags(self.indices[pos], offsets, self.proportions[bags])

    def split(self, val_fraction: float, seed: int = 0) -> tuple["Bags", "Bags"]:
        """Hold out whole bags for validation (SPEC section 2): ``(train, validation)``.

        ``round(val_fraction * m)`` bags (at least one) are drawn with a seeded generator.
        """
        if not 0 < val_fraction < 1:
            raise LLPInputError(f"validation fraction must be in (0, 1), got {val_fraction}")
        if self.num_bags < 2:
            raise LLPInputError("cannot hold out validation bags: there is only one bag")
        n_val = min(max(1, int(round(val_fraction * self.num_bags))), self.num_bags - 1)
        perm = np.random.default_rng(seed).permutation(self.num_bags)
        return self.subset(np.sort(perm[n_val:])), self.subset(np.sort(perm[:n_val]))


# -- constructors ----------------------------------------------------------------------------
def proportions_from_labels(labels, bag_ids, num_bags: int, num_classes: int) -> np.ndarray:
    """(m, K) class proportions of each bag from (hidden) instance labels."""
    labels, bag_ids = np.asarray(labels, dtype=np.int64), np.asarray(bag_ids, dtype=np.int64)
    if labels.shape != bag_ids.shape:
        raise LLPInputError(f"labels ({labels.shape}) and bag_ids ({bag_ids.shape}) must have one entry per instance")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise LLPInputError(f"labels must lie in 0..{num_classes - 1}")
    if bag_ids.size and (bag_ids.min() < 0 or bag_ids.max() >= num_bags):
        raise LLPInputError(f"bag ids must lie in 0..{num_bags - 1}")
    counts = np.zeros((num_bags, num_classes))
    np.add.at(counts, (bag_ids, labels), 1.0)
    return counts / counts.sum(axis=1, keepdims=True)


def _check_size(bag_size, n: int | None = None, what: str = "bag size") -> int:
    """``bag_size`` as a positive int (at most ``n``), else LLPInputError; 2.5 or True are not sizes."""
    if isinstance(bag_size, (bool, np.bool_)) or not isinstance(bag_size, (int, np.integer)) or bag_size < 1:
        raise LLPInputError(f"{what} must be a positive integer, got {bag_size!r}")
    if n is not None and bag_size > n:
        raise LLPInputError(f"{what} {int(bag_size)} is larger than the {n} instances available")
    return int(bag_size)


def _check_labels(labels, num_classes):
    y = np.asarray(_to_numpy(labels))
    if y.ndim != 1 or y.size == 0:
        raise LLPInputError(f"labels must be a non-empty 1-d array, got shape {y.shape}")
    if y.dtype.kind not in "iu" or y.min() < 0:
        raise LLPInputError("labels must be non-negative integers (class indices)")
    y = y.astype(np.int64)
    k = int(y.max()) + 1 if num_classes is None else int(num_classes)
    if y.max() >= k:
        raise LLPInputError(f"label {int(y.max())} is out of range for {k} classes")
    return y, max(k, 2)


def uniform_bags(labels, bag_size: int, *, num_classes: int | None = None, seed: int = 0,
                 drop_last: bool = True) -> Bags:
    """Uniform random bags of ``bag_size`` instances (SPEC section 2).

    The instance indices ``0..N-1`` are permuted with ``numpy.random.default_rng(seed)`` and cut
    into consecutive bags; the last partial bag is dropped (``drop_last=True``) or kept as a
    smaller bag. The proportions come from ``labels``, which are otherwise never used for training.
    """
    y, k = _check_labels(labels, num_classes)
    n = y.size
    bag_size = _check_size(bag_size, n)
    perm = np.random.default_rng(seed).permutation(n)
    m_full = n // bag_size
    sizes = [bag_size] * m_full
    if not drop_last and n % bag_size:
        sizes.append(n % bag_size)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    indices = perm[: offsets[-1]]
    ids = np.repeat(np.arange(len(sizes)), sizes)
    return Bags(indices, offsets, proportions_from_labels(y[indices], ids, len(sizes), k))


def _from_member_lists(groups, y, k) -> Bags:
    """Bags whose members are the index arrays in ``groups`` (in order), proportions from ``y``."""
    groups = [np.asarray(g, dtype=np.int64) for g in groups if len(g)]
    sizes = [len(g) for g in groups]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    indices = np.concatenate(groups) if groups else np.zeros(0, np.int64)
    ids = np.repeat(np.arange(len(sizes)), sizes)
    return Bags(indices, offsets, proportions_from_labels(y[indices], ids, len(sizes), k))


def sized_bags(labels, sizes, *, num_classes: int | None = None, seed: int = 0) -> Bags:
    """Random bags of the given unequal ``sizes`` (a seeded permutation cut into consecutive pieces)."""
    y, k = _check_labels(labels, num_classes)
    given = np.asarray(sizes)
    if given.ndim != 1 or len(given) == 0 or given.dtype.kind not in "iu" or (given < 1).any():
        raise LLPInputError(f"bag sizes must be a non-empty list of positive integers, got {np.asarray(sizes).tolist()}")
    sizes = given.astype(np.int64)
    if sizes.sum() > y.size:
        raise LLPInputError(f"bag sizes add up to {int(sizes.sum())} but there are only {y.size} instances")
    perm = np.random.default_rng(seed).permutation(y.size)
    return _from_member_lists(np.split(perm[: sizes.sum()], np.cumsum(sizes)[:-1]), y, k)


def dirichlet_bags(labels, bag_size: int, *, alpha: float = 1.0, num_classes: int | None = None,
                   seed: int = 0) -> Bags:
    """Label-skewed bags: each bag's target proportions are drawn from Dirichlet(alpha, ..., alpha) and
    its ``bag_size`` members drawn without replacement from each class accordingly (while a class lasts;
    its share goes to the classes left). Small ``alpha`` gives bags dominated by a few classes, large
    ``alpha`` approaches uniform bags. The proportions are those of the members drawn."""
    y, k = _check_labels(labels, num_classes)
    bag_size = _check_size(bag_size, y.size)
    number = np.ndim(alpha) == 0 and not isinstance(alpha, (bool, str, bytes)) and np.asarray(alpha).dtype.kind in "iuf"
    if not number or not (float(alpha) > 0 and np.isfinite(float(alpha))):
        raise LLPInputError(f"Dirichlet alpha must be a positive number, got {alpha!r}")
    alpha = float(alpha)
    rng = np.random.default_rng(seed)
    pools = [list(rng.permutation(np.flatnonzero(y == c))) for c in range(k)]
    groups = []
    for _ in range(y.size // bag_size):
        left = np.array([len(p) for p in pools], dtype=np.float64)
        want = rng.dirichlet(np.full(k, float(alpha)))
        members = []
        for _ in range(bag_size):
            w = want * (left > 0)
            if w.sum() <= 0:
                w = left.copy()
            c = int(rng.choice(k, p=w / w.sum()))
            members.append(pools[c].pop())
            left[c] -= 1
        groups.append(members)
    return _from_member_lists(groups, y, k)


def clustered_bags(features, labels, bag_size: int, *, num_classes: int | None = None, seed: int = 0) -> Bags:
    """Bags of similar instances: k-means (scikit-learn) on ``features`` into ``N // bag_size``
    clusters, each cluster a bag (sizes differ). Such bags are harder: similar inputs share a bag."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    y, k = _check_labels(labels, num_classes)
    bag_size = _check_size(bag_size, y.size)
    x = np.asarray(features, dtype=np.float32)
    if x.shape[0] != y.size:
        raise LLPInputError(f"features have {x.shape[0]} rows, the labels {y.size}")
    x = x.reshape(len(y), -1)
    if not np.isfinite(x).all():
        raise LLPInputError("features contain NaN or infinity")
    m = y.size // bag_size
    algo = KMeans if y.size <= 20000 else MiniBatchKMeans
    assign = algo(n_clusters=m, random_state=seed, n_init=3).fit_predict(x)
    return _from_member_lists([np.flatnonzero(assign == c) for c in range(m)], y, k)


def feature_bags(columns, labels, *, num_classes: int | None = None) -> Bags:
    """Bags given by equal values of one or more columns (``columns``: (N,) or (N, c) array): every
    distinct value (combination) is a bag, as a campaign or a county is in real LLP data."""
    y, k = _check_labels(labels, num_classes)
    cols = np.asarray(_to_numpy(columns))
    if cols.ndim == 0 or cols.shape[0] != y.size:
        raise LLPInputError(f"the bag columns have {cols.shape[0] if cols.ndim else 'no'} rows, the labels {y.size}")
    if cols.dtype.kind == "f" and not np.isfinite(cols).all():
        raise LLPInputError("the bag columns contain NaN or infinity (a missing value names no bag)")
    if cols.dtype.kind in "mM" and np.isnat(cols).any():
        raise LLPInputError(f"the bag columns hold a missing date (NaT) at row {int(np.argwhere(np.isnat(cols))[0][0])} "
                            "(a missing value names no bag)")
    cols = cols.reshape(len(y), -1)
    if cols.dtype.kind == "O":                       # pandas' strings: number each column's values first
        codes = []
        for j in range(cols.shape[1]):
            values = cols[:, j].tolist()
            missing = [i for i, v in enumerate(values) if is_missing(v)]
            if missing:
                raise LLPInputError(f"the bag columns hold a missing value at row {missing[0]} (a missing value "
                                    "names no bag)")
            try:
                codes.append(np.unique(cols[:, j], return_inverse=True)[1].ravel())
            except TypeError:
                raise LLPInputError("a bag column mixes numbers and strings; give each column one type") from None
        cols = np.stack(codes, axis=1)
    _, ids = np.unique(cols, axis=0, return_inverse=True)
    ids = ids.ravel()
    return _from_member_lists([np.flatnonzero(ids == b) for b in range(ids.max() + 1)], y, k)


def sampled_bags(labels, bag_size: int, num_bags: int | None = None, *, num_classes: int | None = None,
                 seed: int = 0) -> Bags:
    """Bags drawn with replacement: each of ``num_bags`` (default ``N // bag_size``) bags takes
    ``bag_size`` instances drawn uniformly with replacement, so an instance may be in several bags
    (or twice in one)."""
    y, k = _check_labels(labels, num_classes)
    bag_size = _check_size(bag_size)
    m = _check_size(num_bags, what="num_bags") if num_bags is not None else max(1, y.size // bag_size)
    rng = np.random.default_rng(seed)
    return _from_member_lists([rng.integers(0, y.size, bag_size) for _ in range(m)], y, k)


def bags_from_ids(bag_ids, *, proportions=None, counts=None, num_classes: int | None = None,
                  bag_names=None) -> Bags:
    """Bags given by a bag id per instance (``bag_ids[j]`` is the bag of instance ``j``).

    Exactly one of ``proportions`` (m, K), rows summing to 1, or ``counts`` (m, K), non-negative
    integers summing to each bag's size, must be given; ``m`` is its number of rows and every id
    must be an integer in ``[0, m)`` (other ids, strings for example: :func:`plotllp.sklearn.bag_table`
    numbers them). Every bag must hold at least one instance. Sizes may differ.
    ``bag_names`` (one per row) name the bags in the errors.
    """
    if (proportions is None) == (counts is None):
        raise LLPInputError("give exactly one of proportions= or counts=")
    table = proportions if proportions is not None else counts
    what = "proportions" if proportions is not None else "counts"
    if isinstance(table, Mapping):
        raise LLPInputError(f"{what} must be an array with one row per bag (bags x classes), not a mapping "
                            "(plotllp.sklearn.bag_table turns {bag id: row} mappings and any bag ids into one)")
    try:
        table = np.asarray(_to_numpy(table), dtype=np.float64)
    except (TypeError, ValueError):
        raise LLPInputError(f"{what} must be a numeric array (bags x classes)") from None
    if table.ndim != 2:
        raise LLPInputError(f"{what} must be a 2-d array (bags x classes), got shape {table.shape}")
    m = table.shape[0]
    ids = validate_bag_ids(bag_ids, m)
    sizes = np.bincount(ids, minlength=m)
    if (sizes == 0).any():
        raise LLPInputError(f"bag {int(np.flatnonzero(sizes == 0)[0])} has no instances")
    if counts is not None:
        if not np.isfinite(table).all():
            b = int(np.flatnonzero(~np.isfinite(table).all(axis=1))[0])
            raise LLPInputError(f"counts of bag {_bag_name(bag_names, b)} contain NaN or infinity (a missing cell, as "
                                "unstack() leaves for a class a bag lacks, is a count of 0: fill it)")
        if (table < 0).any() or (table != np.round(table)).any():
            raise LLPInputError("counts must be non-negative integers")
        off = table.sum(axis=1) != sizes
        if off.any():
            b = int(np.flatnonzero(off)[0])
            raise LLPInputError(f"counts of bag {_bag_name(bag_names, b)} sum to {int(table[b].sum())} but the bag "
                                f"has {sizes[b]} instances")
        table = table / sizes[:, None]
    p = validate_proportions(table, num_classes=num_classes, bag_names=bag_names)
    order = np.argsort(ids, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    return Bags(order, offsets, p)


def is_missing(value) -> bool:
    """None, NaN, or pandas' NA or NaT: a missing value (pandas writes a missing number as NaN)."""
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(np.isnan(value))
    return type(value).__name__ in ("NAType", "NaTType")


def _to_numpy(x):
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return x
