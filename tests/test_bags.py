import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from plotllp.bags import (Bags, bags_from_ids, clustered_bags, feature_bags, integer_counts, proportions_from_labels,
                          sampled_bags, sized_bags, uniform_bags, validate_proportions)
from plotllp.errors import LLPInputError
from plotllp.ot import pseudo_labels


@given(n=st.integers(1, 300), k=st.integers(2, 12), size=st.integers(1, 60), seed=st.integers(0, 10_000),
       drop=st.booleans())
def test_uniform_bags_partition_and_proportions(n, k, size, seed, drop):
    y = np.random.default_rng(seed).integers(0, k, n)
    if size > n:
        with pytest.raises(LLPInputError, match="larger than"):
            uniform_bags(y, size, num_classes=k, seed=seed, drop_last=drop)
        return
    b = uniform_bags(y, size, num_classes=k, seed=seed, drop_last=drop)
    # disjoint, consecutive cuts of the seeded permutation
    perm = np.random.default_rng(seed).permutation(n)
    assert np.array_equal(b.indices, perm[: b.indices.size])
    assert len(set(b.indices.tolist())) == b.indices.size
    full = n // size
    assert b.num_bags == full + (0 if drop or n % size == 0 else 1)
    assert (b.sizes[:full] == size).all()
    # proportions are exactly the members' label frequencies; counts are integral and sum to sizes
    for i in range(b.num_bags):
        freq = np.bincount(y[b.members(i)], minlength=k) / b.sizes[i]
        assert np.allclose(b.proportions[i], freq)
    assert np.array_equal(b.counts.sum(1), b.sizes)
    assert np.allclose(b.counts, b.proportions * b.sizes[:, None])


def test_uniform_bags_fixed_by_seed():
    y = np.arange(100) % 3
    assert np.array_equal(uniform_bags(y, 10, seed=4).indices, uniform_bags(y, 10, seed=4).indices)
    assert not np.array_equal(uniform_bags(y, 10, seed=4).indices, uniform_bags(y, 10, seed=5).indices)


@given(sizes=st.lists(st.integers(1, 30), min_size=1, max_size=12), k=st.integers(2, 6), seed=st.integers(0, 999))
def test_bags_from_ids_unequal_sizes(sizes, k, seed):
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))
    y = rng.integers(0, k, ids.size)
    counts = np.zeros((len(sizes), k))
    np.add.at(counts, (ids, y), 1)
    b = bags_from_ids(ids, counts=counts)
    assert np.array_equal(b.sizes, sizes)
    for i in range(b.num_bags):
        assert (ids[b.members(i)] == i).all()
    assert np.allclose(b.proportions, counts / np.array(sizes)[:, None])
    b2 = bags_from_ids(ids, proportions=counts / np.array(sizes)[:, None])
    assert np.array_equal(b2.counts, counts)


@given(m=st.integers(2, 60), frac=st.floats(0.05, 0.9), seed=st.integers(0, 99))
def test_split_holds_out_whole_bags(m, frac, seed):
    y = np.random.default_rng(seed).integers(0, 3, m * 5)
    b = uniform_bags(y, 5, num_classes=3, seed=seed)
    tr, va = b.split(frac, seed=seed)
    assert tr.num_bags + va.num_bags == m and va.num_bags >= 1 and tr.num_bags >= 1
    assert not set(tr.indices.tolist()) & set(va.indices.tolist())
    assert set(tr.indices.tolist()) | set(va.indices.tolist()) == set(b.indices.tolist())
    # each held-out bag keeps its members and its proportions
    for i in range(va.num_bags):
        members = set(va.members(i).tolist())
        j = [j for j in range(m) if set(b.members(j).tolist()) == members]
        assert len(j) == 1 and np.allclose(b.proportions[j[0]], va.proportions[i])


@given(st.lists(st.integers(0, 50), min_size=2, max_size=8), st.integers(1, 500))
def test_integer_counts_rounds_and_sums(weights, n):
    w = np.array(weights, dtype=float) + 1e-3
    p = (w / w.sum())[None, :]
    c = integer_counts(p, np.array([n]))
    assert c.sum() == n and (c >= 0).all()
    assert np.abs(c - n * p).max() < 1 + 1e-9


@pytest.mark.parametrize("props, msg", [
    ([[0.5, 0.6]], "sum to 1.1"),
    ([[1.2, -0.2]], "negative"),
    ([[np.nan, 1.0]], "NaN"),
    ([[1.0]], "at least 2 classes"),
    ([0.5, 0.5], "2-d"),
])
def test_bad_proportions(props, msg):
    with pytest.raises(LLPInputError, match=msg):
        validate_proportions(np.array(props, dtype=float))


def test_bad_bag_ids_and_empty_bags():
    p = np.array([[0.5, 0.5], [1.0, 0.0]])
    with pytest.raises(LLPInputError, match="out of range"):
        bags_from_ids([0, 1, 2], proportions=p)
    with pytest.raises(LLPInputError, match="negative"):
        bags_from_ids([0, -1], proportions=p)
    with pytest.raises(LLPInputError, match="integers"):
        bags_from_ids([0.5, 1], proportions=p)
    with pytest.raises(LLPInputError, match="counts of bag 1 contain NaN .* fill it"):        # unstack()'s holes
        bags_from_ids([0, 0, 1], counts=[[1, 1], [1, np.nan]])
    with pytest.raises(LLPInputError, match="bag 1 has no instances"):
        bags_from_ids([0, 0], proportions=p)
    with pytest.raises(LLPInputError, match="sum to 3 but the bag has 2"):
        bags_from_ids([0, 0, 1], counts=[[2, 1], [1, 0]])
    with pytest.raises(LLPInputError, match="exactly one"):
        bags_from_ids([0, 1], proportions=p, counts=p)
    with pytest.raises(LLPInputError, match="no instances"):
        Bags(np.array([0, 1]), np.array([0, 2, 2]), p)


@pytest.mark.parametrize("make, msg", [
    (lambda y: uniform_bags(y, 2.5), "bag size must be a positive integer, got 2.5"),
    (lambda y: uniform_bags(y, True), "bag size must be a positive integer, got True"),
    (lambda y: sized_bags(y, [3.5, 4, 4.5]), "bag sizes must be a non-empty list of positive integers"),
    (lambda y: clustered_bags(np.zeros((12, 2)), y, 0), "bag size must be a positive integer"),
    (lambda y: clustered_bags(np.zeros((12, 2)), y, 100), "bag size 100 is larger than the 12 instances"),
    (lambda y: feature_bags(np.array([1.0, np.nan] * 6), y), "contain NaN"),
    (lambda y: sampled_bags(y, 4, num_bags=0), "num_bags must be a positive integer"),
    (lambda y: uniform_bags(y, 4).subset([5]), "bag 5 is not one of the 3 bags"),
    (lambda y: uniform_bags(y, 4).subset([0, 0]), "lists a bag twice"),
    (lambda y: proportions_from_labels(y, np.full(12, 7), 2, 3), "bag ids must lie in 0..1"),
])
def test_bag_constructors_reject_what_is_not_a_bag(make, msg):
    y = np.arange(12) % 3
    with pytest.raises(LLPInputError, match=msg):
        make(y)


# -- from a mutation audit: each test below fails on a small bug (named by its tag) that the others let pass --

# B01: largest remainder (Hamilton) -- the seat goes to the largest fractional part
def test_integer_counts_give_the_remainder_to_the_largest_fractions():
    # 7 * (0.45, 0.35, 0.20) = (3.15, 2.45, 1.40): floors (3, 2, 1), one seat left -> class 1 (0.45)
    assert integer_counts(np.array([[0.45, 0.35, 0.20]]), np.array([7])).tolist() == [[3, 3, 1]]
    q = pseudo_labels(np.full((7, 3), 1 / 3), np.zeros(7, int), [[0.45, 0.35, 0.20]], hard=True)
    assert q.sum(0).tolist() == [3.0, 3.0, 1.0]


# B06 / B07: split holds out round(f * m) bags, and returns (train, validation) in that order
def test_split_sizes_and_order():
    y = np.arange(50) % 3
    tr, va = uniform_bags(y, 5, seed=0).split(0.29, seed=0)          # 10 bags: round(2.9) = 3 held out
    assert (tr.num_bags, va.num_bags) == (7, 3)


# B04 / B05: proportions off by 1e-5 in the sum, or slightly negative, are refused
def test_validate_proportions_tolerances():
    with pytest.raises(LLPInputError, match="sum to"):
        validate_proportions(np.array([[0.5, 0.50001]]))
    with pytest.raises(LLPInputError, match="negative"):
        validate_proportions(np.array([[1.0001, -0.0001]]))
