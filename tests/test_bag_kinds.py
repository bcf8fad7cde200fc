"""The bag constructors for experiments: every kind's proportions are those of its members, and each
kind has the structure it promises (skew, clusters, groups, replacement, sizes)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plotllp.bags import clustered_bags, dirichlet_bags, feature_bags, sampled_bags, sized_bags, uniform_bags
from plotllp.errors import LLPInputError


def assert_consistent(bags, y, k):
    for b in range(bags.num_bags):
        members = bags.members(b)
        assert len(members) > 0
        assert np.allclose(bags.proportions[b], np.bincount(y[members], minlength=k) / len(members))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(20, 300), k=st.integers(2, 6), size=st.integers(1, 20), alpha=st.floats(0.05, 20),
       seed=st.integers(0, 10 ** 6))
def test_dirichlet_bags_members_and_sizes(n, k, size, alpha, seed):
    y = np.random.default_rng(seed).integers(0, k, n)
    size = min(size, n)
    bags = dirichlet_bags(y, size, alpha=alpha, num_classes=k, seed=seed)
    assert bags.num_bags == n // size and (bags.sizes == size).all()
    assert len(np.unique(bags.indices)) == bags.indices.size          # without replacement
    assert_consistent(bags, y, k)


def test_dirichlet_alpha_controls_skew():
    y = np.repeat(np.arange(10), 500)
    skewed = dirichlet_bags(y, 100, alpha=0.1, seed=0)
    flat = dirichlet_bags(y, 100, alpha=100.0, seed=0)
    assert skewed.proportions.max(1).mean() > 0.5 > flat.proportions.max(1).mean()


@settings(max_examples=25, deadline=None)
@given(n=st.integers(10, 200), k=st.integers(2, 5), size=st.integers(1, 15), seed=st.integers(0, 10 ** 6),
       num=st.integers(1, 30))
def test_sampled_bags_with_replacement(n, k, size, seed, num):
    y = np.random.default_rng(seed).integers(0, k, n)
    bags = sampled_bags(y, size, num, num_classes=k, seed=seed)
    assert bags.num_bags == num and (bags.sizes == size).all()
    assert_consistent(bags, y, k)


def test_sampled_bags_share_instances():
    y = np.arange(50) % 2
    bags = sampled_bags(y, 40, 10, seed=1)
    assert len(np.unique(bags.indices)) < bags.indices.size


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(1, 30), min_size=1, max_size=12), seed=st.integers(0, 10 ** 6))
def test_sized_bags(sizes, seed):
    y = np.random.default_rng(seed).integers(0, 3, 400)
    bags = sized_bags(y, sizes, num_classes=3, seed=seed)
    assert bags.sizes.tolist() == sizes
    assert_consistent(bags, y, 3)


def test_feature_bags_group_equal_values():
    rng = np.random.default_rng(0)
    cols = np.c_[rng.integers(0, 3, 200), rng.integers(0, 2, 200)]
    y = rng.integers(0, 4, 200)
    bags = feature_bags(cols, y, num_classes=4)
    assert bags.num_bags == len({tuple(r) for r in cols})
    for b in range(bags.num_bags):
        assert len({tuple(r) for r in cols[bags.members(b)]}) == 1
    assert sorted(bags.indices.tolist()) == list(range(200))
    assert_consistent(bags, y, 4)


def test_feature_bags_of_text_columns_held_as_objects():
    """pandas holds strings as objects: np.unique(axis=0) refuses those, so each column is numbered first."""
    y = np.arange(12) % 3
    county = np.array(["north", "south", "east", "west"], dtype=object)[np.arange(12) % 4]
    bags = feature_bags(county, y, num_classes=3)
    assert bags.num_bags == 4
    for b in range(4):
        assert len(set(county[bags.members(b)])) == 1
    assert_consistent(bags, y, 3)
    mixed = np.c_[county, np.arange(12) % 2].astype(object)           # a text and a number column
    assert feature_bags(mixed, y, num_classes=3).num_bags == 4            # (county, parity) pairs: 4 of them
    for missing in (None, float("nan")):
        holes = county.copy()
        holes[5] = missing
        with pytest.raises(LLPInputError, match="missing value at row 5"):
            feature_bags(holes, y)
    with pytest.raises(LLPInputError, match="mixes numbers and strings"):
        feature_bags(np.array(["a", 1] * 6, dtype=object), y)


def test_clustered_bags_are_compact():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, (8, 2))
    x = np.concatenate([c + rng.normal(0, 0.1, (50, 2)) for c in centres])
    y = rng.integers(0, 2, 400)
    bags = clustered_bags(x, y, 50, seed=0)
    assert bags.num_bags == 8 and sorted(bags.sizes.tolist()) == [50] * 8
    for b in range(8):
        assert x[bags.members(b)].std(0).max() < 1.0
    assert_consistent(bags, y, 2)


def test_bad_bag_kinds():
    y = np.arange(10) % 2
    for alpha in (0, "0.5", [1, 2], True, float("nan")):
        with pytest.raises(LLPInputError, match="alpha must be a positive number"):
            dirichlet_bags(y, 2, alpha=alpha)
    assert dirichlet_bags(y, 2, alpha=np.array(0.5), seed=1).num_bags == 5          # a 0-d array is a number
    with pytest.raises(LLPInputError, match="add up to"):
        sized_bags(y, [6, 6])
    with pytest.raises(LLPInputError, match="rows"):
        feature_bags(np.zeros(9), y)


@pytest.mark.parametrize("kind", ["uniform", "dirichlet", "clustered", "replacement"])
def test_test_bags_are_formed_like_the_training_bags(kind):
    """SPEC section 1: the bag-level error is measured on test bags built the same way as the training
    bags (the same kind, size and seed, on the test set)."""
    from plotllp.config import make_config
    from plotllp.data import load_dataset
    from plotllp.pipeline import make_bags, make_test_bags

    cfg = make_config({"dataset": "digits", "bags": kind, "bag_size": 16, "bag_alpha": 0.1, "bag_seed": 3})
    ds = load_dataset("digits", seed=0)
    train, test = make_bags(cfg, ds), make_test_bags(cfg, ds)
    assert test.indices.max() < len(ds.y_test)
    expected = {"uniform": uniform_bags(ds.y_test, 16, num_classes=10, seed=3),
                "dirichlet": dirichlet_bags(ds.y_test, 16, alpha=0.1, num_classes=10, seed=3),
                "clustered": clustered_bags(ds.x_test, ds.y_test, 16, num_classes=10, seed=3),
                "replacement": sampled_bags(ds.y_test, 16, num_classes=10, seed=3)}[kind]
    np.testing.assert_array_equal(test.indices, expected.indices)
    np.testing.assert_array_equal(test.proportions, expected.proportions)
    if kind == "dirichlet":          # skewed like the training bags: the largest class holds most of a bag
        assert test.proportions.max(1).mean() > 0.5 and train.proportions.max(1).mean() > 0.5


# -- from a second mutation audit: each test below fails on a small bug that the others let pass --

def test_sized_bags_draw_their_members_at_random_by_seed():
    """sized_bags cuts a seeded permutation: not consecutive rows (rows sorted by class would give
    one-class bags), and other seeds give other bags."""

    y = np.repeat([0, 1], 50)                                  # rows sorted by class
    a = sized_bags(y, [20, 30, 10], num_classes=2, seed=0)
    assert not np.array_equal(np.sort(a.indices[:20]), np.arange(20))
    assert (a.proportions.max(1) < 1).all()
    assert not np.array_equal(a.indices, sized_bags(y, [20, 30, 10], num_classes=2, seed=1).indices)


def test_clustered_bags_follow_their_seed():
    """k-means is seeded by ``seed``: other seeds give other bags (on features without clear clusters),
    the same seed the same bags."""

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 2)), rng.integers(0, 2, 300)
    a, b = clustered_bags(x, y, 30, seed=0), clustered_bags(x, y, 30, seed=1)
    assert np.array_equal(a.indices, clustered_bags(x, y, 30, seed=0).indices)
    assert not (np.array_equal(a.indices, b.indices) and np.array_equal(a.offsets, b.offsets))


def test_sampled_bags_default_to_n_over_bag_size_bags():
    y = np.arange(103) % 3
    assert sampled_bags(y, 10, seed=0).num_bags == 10
    assert sampled_bags(y, 200, seed=0).num_bags == 1
