"""plotllp.sklearn.LLPClassifier: scikit-learn's conventions, a Pipeline, GridSearchCV and
cross_validate over bag-grouped folds with the bag-level score, on scikit-learn's own data."""

import pickle
import warnings

import numpy as np
import pytest
import sklearn
from sklearn.base import clone
from sklearn.datasets import load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from plotllp.bags import uniform_bags
from plotllp.errors import LLPInputError
from plotllp.sklearn import LLPClassifier, bag_proportion_error, bag_table


@pytest.fixture(scope="module")
def wine():
    X, y = load_wine(return_X_y=True)
    bags = uniform_bags(y, 8, num_classes=3, seed=0, drop_last=False)
    ids = np.empty(len(y), dtype=int)
    ids[bags.indices] = bags.bag_ids
    return X, y, ids, bags.proportions, bags.proportions[ids]


# wine's raw features (up to 1,680) and these few epochs leave most networks here predicting one class: fit
# says so (test_a_network_that_collapsed_to_one_class_is_flagged), which is not what the other tests check
pytestmark = pytest.mark.filterwarnings("ignore:.*collapsed to one class:sklearn.exceptions.ConvergenceWarning")

FAST = {"epochs1": 60, "epochs2": 20, "width": 32, "batch_bags": 2, "random_state": 0, "device": "cpu"}


def test_estimator_conventions(wine):
    X, y, ids, P, _ = wine
    est = LLPClassifier(**FAST)
    assert clone(est).get_params() == est.get_params()
    assert est.set_params(epochs2=7).epochs2 == 7 and est.get_params()["epochs2"] == 7
    with pytest.raises(NotFittedError):
        est.predict(X)
    pipe = make_pipeline(StandardScaler(), LLPClassifier(**FAST, classes=["a", "b", "c"]))
    pipe.fit(X, llpclassifier__bags=ids, llpclassifier__proportions=P)
    clf = pipe[-1]
    assert clf.n_features_in_ == 13 and list(clf.classes_) == ["a", "b", "c"] and clf.history_
    proba = pipe.predict_proba(X)
    assert proba.shape == (178, 3) and np.allclose(proba.sum(1), 1, atol=1e-5)
    pred = pipe.predict(X)
    assert set(pred) <= {"a", "b", "c"}
    acc = np.mean(np.array(["a", "b", "c"])[y] == pred)
    assert acc > 0.85                                   # wine is easy once scaled; no instance label was used
    again = pickle.loads(pickle.dumps(pipe))
    assert np.array_equal(again.predict_proba(X), proba)
    refit = make_pipeline(StandardScaler(), LLPClassifier(**FAST, classes=["a", "b", "c"]))
    refit.fit(X, llpclassifier__bags=ids, llpclassifier__proportions=P)
    assert np.array_equal(refit.predict_proba(X), proba)               # random_state fixes the run
    with pytest.raises(ValueError, match="features"):
        clf.predict_proba(X[:, :5])


def test_proportion_forms_agree(wine):
    X, _, ids, P, P_rows = wine
    mapping = {b: P[b] for b in range(len(P))}
    counts = np.round(P * np.bincount(ids)[:, None])
    tables = [bag_table(ids, t, len(ids))[1] for t in (P, P_rows, mapping)]
    assert all(np.allclose(t, P) for t in tables)
    a = LLPClassifier(**FAST).fit(StandardScaler().fit_transform(X), bags=ids, counts=counts)
    b = LLPClassifier(**FAST).fit(StandardScaler().fit_transform(X), bags=ids, proportions=mapping)
    assert np.allclose(a.predict_proba(X), b.predict_proba(X), atol=1e-5)


def test_bad_input(wine):
    X, _, ids, P, P_rows = wine
    with pytest.raises(LLPInputError, match="exactly one"):
        LLPClassifier(**FAST).fit(X, bags=ids)
    with pytest.raises(LLPInputError, match="missing for bag 3"):
        LLPClassifier(**FAST).fit(X, bags=ids, proportions={b: P[b] for b in range(len(P)) if b != 3})
    bad = P_rows.copy()
    bad[0] = [1, 0, 0]
    with pytest.raises(LLPInputError, match="different proportions"):
        LLPClassifier(**FAST).fit(X, bags=ids, proportions=bad)
    with pytest.raises(LLPInputError, match="first_stage"):
        LLPClassifier(first_stage="nope").fit(X, bags=ids, proportions=P)
    with pytest.raises(LLPInputError, match="one bag id per row"):
        LLPClassifier(**FAST).fit(X, bags=ids[:-1], proportions=P)


def test_bag_score_and_grid_search_over_whole_bags(wine):
    X, y, ids, P, P_rows = wine
    perfect = np.eye(3)[y]
    assert bag_proportion_error(perfect, ids, P) == pytest.approx(0.0, abs=1e-12)
    assert bag_proportion_error(np.full((178, 3), 1 / 3), ids, P) > 0.1
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = make_pipeline(StandardScaler(), LLPClassifier(**FAST))
        search = GridSearchCV(pipe, {"llpclassifier__epochs2": [0, 20]}, cv=GroupKFold(n_splits=3))
        search.fit(X, bags=ids, proportions=P_rows, groups=ids)
        scores = search.cv_results_["mean_test_score"]
        assert np.isfinite(scores).all() and (scores <= 0).all()
        assert search.best_params_["llpclassifier__epochs2"] in (0, 20)
        cv = cross_validate(LLPClassifier(**FAST), StandardScaler().fit_transform(X), cv=GroupKFold(n_splits=3),
                            params={"bags": ids, "proportions": P_rows, "groups": ids}, return_estimator=True)
        assert len(cv["test_score"]) == 3 and (cv["test_score"] > -0.2).all()
    for train, test in GroupKFold(n_splits=3).split(X, groups=ids):
        assert not set(ids[train]) & set(ids[test])                     # bags stay whole


def test_bag_proportion_error_checks_the_proportions():
    """The model-selection score never ranks on proportions that are not proportions (nor counts)."""
    probs, bags = np.full((4, 2), 0.5), np.array(["a", "a", "b", "b"])
    assert bag_proportion_error(probs, bags, [[0.5, 0.5], [1.0, 0.0]]) == pytest.approx(0.25)
    assert bag_proportion_error(probs, bags, [[1, 1], [2, 0]]) == pytest.approx(0.25)     # counts of 2 rows
    for bad in ([[0.3, 0.3], [0.5, 0.5]], [[np.nan, 0.5], [0.5, 0.5]], [[1.5, -0.5], [0.5, 0.5]],
                [[0.7, 0.5], [0.5, 0.5]], [[3, 0], [1, 1]]):
        with pytest.raises(LLPInputError, match="proportions of bag 'a' are"):
            bag_proportion_error(probs, bags, bad)
    with pytest.raises(LLPInputError, match="probs must be 2-d"):
        bag_proportion_error(np.full(4, 0.5), bags, [[0.5, 0.5], [0.5, 0.5]])


def test_cross_validation_scores_with_counts(wine):
    """counts= reach score as well as fit, so model selection does not rank on NaN."""
    X, _, ids, P, _ = wine
    counts_rows = np.round(P * np.bincount(ids)[:, None])[ids]
    with sklearn.config_context(enable_metadata_routing=True):
        cv = cross_validate(LLPClassifier(**{**FAST, "epochs1": 10, "epochs2": 2}), StandardScaler().fit_transform(X),
                            cv=GroupKFold(n_splits=3), params={"bags": ids, "counts": counts_rows, "groups": ids})
    assert np.isfinite(cv["test_score"]).all() and (cv["test_score"] <= 0).all()
    clf = LLPClassifier(**{**FAST, "epochs1": 5, "epochs2": 1}).fit(X, bags=ids, proportions=P)
    half = ids < 5
    with pytest.raises(LLPInputError, match="keep bags whole"):               # a bag cut in two
        clf.score(X[half][::2], bags=ids[half][::2], counts=counts_rows[half][::2])


def test_failed_refit_keeps_the_earlier_fit(wine):
    X, _, ids, P, _ = wine
    clf = LLPClassifier(**{**FAST, "epochs1": 5, "epochs2": 1}).fit(X, bags=ids, proportions=P)
    before = clf.predict_proba(X)
    with pytest.raises(LLPInputError, match="sum to 2"):
        clf.fit(X[:, :4], bags=ids, proportions=2 * P)
    assert clf.n_features_in_ == 13 and np.array_equal(clf.predict_proba(X), before)


def test_fit_leaves_the_global_torch_rng_alone_and_verbose_prints(wine, capsys):
    import torch
    X, _, ids, P, _ = wine
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    LLPClassifier(**{**FAST, "epochs1": 2, "epochs2": 1, "verbose": True}).fit(X, bags=ids, proportions=P)
    assert torch.equal(torch.rand(3), expected)
    out = capsys.readouterr().out
    assert "dllp  epoch 1/2" in out and "plot  epoch 1/1" in out


def test_other_parameter_forms(wine):
    """numpy numbers and RandomState instances, as scikit-learn's grids and users pass them."""
    X, _, ids, P, _ = wine
    fast = {**FAST, "epochs1": 2, "epochs2": 1}
    a = LLPClassifier(**{**fast, "lr": np.float32(1e-3), "random_state": np.random.RandomState(0)})
    b = LLPClassifier(**{**fast, "random_state": np.random.RandomState(0)})
    assert np.allclose(a.fit(X, bags=ids, proportions=P).predict_proba(X), b.fit(X, bags=ids, proportions=P).predict_proba(X))
    with pytest.raises(LLPInputError, match="random_state"):
        LLPClassifier(**{**fast, "random_state": "zero"}).fit(X, bags=ids, proportions=P)


def test_errors_name_the_users_bags_and_singleton_bags_are_not_misread(wine):
    X, _, ids, P, _ = wine
    names = np.array([f"bag{b:02d}" for b in ids])
    with pytest.raises(LLPInputError, match="bag00"):
        LLPClassifier(**FAST).fit(X, bags=names, proportions={f"bag{b:02d}": 2 * P[b] for b in range(len(P))})
    with pytest.raises(LLPInputError, match="one row per sample or one per bag"):
        bag_table(np.array(["c", "a", "b"]), [[1, 0], [0, 1], [1, 0]], 3)
    _, table, _ = bag_table(np.array(["a", "b", "c"]), [[1, 0], [0, 1], [1, 0]], 3)    # sorted: no ambiguity
    assert table.tolist() == [[1, 0], [0, 1], [1, 0]]
    clf = LLPClassifier(**{**FAST, "epochs1": 2, "epochs2": 0}).fit(X, bags=ids, proportions=P)
    singles = np.array(["c", "a", "b"])                       # one row per bag, ids not sorted: counts as a mapping
    score = clf.score(X[:3], bags=singles, counts={"a": [1, 0, 0], "b": [0, 1, 0], "c": [0, 0, 1]})
    assert np.isfinite(score) and score <= 0


class Frame:
    """The little of a pandas DataFrame that scikit-learn's feature-name rules read (pandas is not a
    dependency): column names and the values."""

    def __init__(self, values, columns):
        self.values, self.columns = np.asarray(values), list(columns)
        self.shape = self.values.shape

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)

    def __len__(self):
        return len(self.values)


def test_feature_names_of_a_data_frame(wine):
    X, _, ids, P, _ = wine
    cols = [f"f{i}" for i in range(X.shape[1])]
    clf = LLPClassifier(**{**FAST, "epochs1": 2, "epochs2": 0}).fit(Frame(X, cols), bags=ids, proportions=P)
    assert clf.feature_names_in_.tolist() == cols
    assert np.allclose(clf.predict_proba(Frame(X, cols)), clf.predict_proba(Frame(X, cols)))
    with pytest.raises(ValueError, match="feature names should match"):
        clf.predict_proba(Frame(X, cols[::-1]))
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        clf.predict_proba(X)
    clf.fit(X, bags=ids, proportions=P)                       # refit on an array: the names are gone
    assert not hasattr(clf, "feature_names_in_")


class Table:
    """The little of a pandas DataFrame that bag_table reads: an index (bag ids or row labels, maybe named),
    columns, ``to_numpy`` and column selection by a list of names."""

    def __init__(self, values, columns, index=None, name=None):
        self.values = np.asarray(values, dtype=float)
        self.columns = list(columns)
        self.index = Labels(range(len(self.values)) if index is None else index)
        self.index.name = name
        self.shape = self.values.shape

    def to_numpy(self):
        return self.values

    def __getitem__(self, names):
        return Table(self.values[:, [self.columns.index(n) for n in names]], names, self.index, self.index.name)


class Labels(list):
    name = None

    def tolist(self):
        return list(self)


class Series:
    """A labelled vector: per-bag class proportions as ``value_counts()`` gives them, or a named column of
    bag ids (``df.county``)."""

    ndim = 1

    def __init__(self, mapping=None, *, values=None, name=None):
        self.index = Labels(mapping if values is None else range(len(values)))
        self._values = np.asarray(list(mapping.values()) if values is None else values)
        self.name = name

    def to_numpy(self):
        return self._values

    def __array__(self, dtype=None, copy=None):
        return self._values if dtype is None else self._values.astype(dtype)

    def __len__(self):
        return len(self._values)


def test_a_table_indexed_by_bag_id_is_aligned_when_that_is_certain():
    ids = np.array([2, 0, 1, 2, 0, 1])
    P = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])             # bags 0, 1, 2
    assert np.array_equal(bag_table(ids, Table(P, [0, 1]), 6)[1], P)              # default index: id order
    assert np.array_equal(bag_table(ids + 5, Table(P, [0, 1], index=[5, 6, 7]), 6)[1], P)   # the ids, sorted
    named = Series(values=ids, name="bag")                                        # df.bag beside groupby("bag")
    shuffled = Table(P[[2, 0, 1]], [0, 1], index=[2, 0, 1], name="bag")
    assert np.array_equal(bag_table(named, shuffled, 6)[1], P)
    more = Table(np.vstack([P, [[0.2, 0.8]]])[[3, 2, 0, 1]], [0, 1], index=[7, 2, 0, 1], name="bag")
    assert np.array_equal(bag_table(named, more, 6)[1], P)                        # a bag not in X: ignored
    # numbers that are neither 0..m-1 nor the sorted ids: bag ids, or rows left by sort_values? An error.
    for index in ([2, 0, 1], [7, 3, 5]):
        with pytest.raises(LLPInputError, match="cannot be matched to bags for certain"):
            bag_table(ids, Table(P, [0, 1], index=index), 6)
    text = np.array(["c", "a", "b", "c", "a", "b"])                               # text ids are no row numbers
    assert np.array_equal(bag_table(text, Table(P[[2, 0, 1]], [0, 1], index=["c", "a", "b"]), 6)[1], P)
    with pytest.raises(LLPInputError, match="missing for bag 'b'"):
        bag_table(text, Table(P[[2, 0]], [0, 1], index=["c", "a"]), 6)
    with pytest.raises(LLPInputError, match="names a bag twice"):
        bag_table(text, Table(P[[2, 0, 0]], [0, 1], index=["c", "a", "a"]), 6)
    rows = Table(P[ids], [0, 1], index=[10, 11, 12, 13, 14, 15])    # one row per sample, with its own labels
    assert np.array_equal(bag_table(ids, rows, 6)[1], P)
    by_bag = Table(P[ids], [0, 1], index=ids.tolist(), name="bag")  # one row per sample, indexed by its bag
    assert np.array_equal(bag_table(named, by_bag, 6)[1], P)
    with pytest.raises(LLPInputError, match="not a Series"):
        bag_table(ids, Series({0: P[0], 1: P[1], 2: P[2]}), 6)


def test_dates_of_nanosecond_precision_match_python_dates():
    import datetime
    days = np.datetime64("2024-01-01", "ns") + np.array([2, 0, 1, 0], dtype="timedelta64[D]")
    table = {datetime.datetime(2024, 1, 1 + d): [d / 2, 1 - d / 2] for d in (1, 2, 0)}
    index, arr, ids = bag_table(days, table, 4)
    assert index.tolist() == [2, 0, 1, 0] and arr.tolist() == [[0, 1], [0.5, 0.5], [1, 0]]
    assert ids.dtype == np.dtype("datetime64[us]")
    finer = np.datetime64("2024-01-01", "ns") + np.array([0, 1], dtype="timedelta64[ns]")   # 1 ns apart: kept
    assert bag_table(finer, np.eye(2), 2)[2].dtype == np.dtype("datetime64[ns]")


def test_missing_bag_ids_are_an_error():
    for missing in (np.nan, None):
        ids = np.array([0, 1, missing, 1], dtype=object if missing is None else float)
        with pytest.raises(LLPInputError, match="missing id .* at row 2"):
            bag_table(ids, {0: [1, 0], 1: [0, 1]}, 4)
    dates = np.array(["2024-01-01", "2024-02-01", "NaT", "2024-01-01"], dtype="datetime64[D]")
    with pytest.raises(LLPInputError, match="missing id .* at row 2"):
        bag_table(dates, np.array([[1, 0], [0, 1]]), 4)


def test_class_labels_of_a_table_align_its_columns(wine):
    X, y, ids, P, _ = wine
    named = Table(P, ["a", "b", "c"])
    _, table, _ = bag_table(ids, Table(P[:, [2, 0, 1]], ["c", "a", "b"]), len(ids), classes=["a", "b", "c"])
    assert np.array_equal(table, P)
    with pytest.raises(LLPInputError, match=r"columns \['a', 'b', 'x'\] are not the classes"):
        bag_table(ids, Table(P, ["a", "b", "x"]), len(ids), classes=["a", "b", "c"])
    # value_counts() per bag: each bag's labels in its own order, a class with no row left out
    series = {b: Series({k: v for k, v in sorted(zip("abc", P[b]), key=lambda kv: -kv[1]) if v > 0})
              for b in range(len(P))}
    assert (P == 0).any()                                           # some bag lacks a class
    _, table, _ = bag_table(ids, series, len(ids), classes=["a", "b", "c"])
    assert np.array_equal(table, P)
    with pytest.raises(LLPInputError, match="name class 'c', which is not among the classes"):
        bag_table(ids, series, len(ids), classes=["a", "b"])
    fast = {**FAST, "epochs1": 3, "epochs2": 0}
    clf = LLPClassifier(**fast).fit(X, bags=ids, proportions=named)               # names become classes_
    assert list(clf.classes_) == ["a", "b", "c"] and set(clf.predict(X)) <= {"a", "b", "c"}
    bca = Table(P[:, [1, 2, 0]], ["b", "c", "a"])
    assert clf.score(X, bags=ids, proportions=bca) == clf.score(X, bags=ids, proportions=P)   # aligned by name
    same = LLPClassifier(**fast, classes=["a", "b", "c"]).fit(X, bags=ids, proportions=bca)
    assert np.array_equal(same.predict_proba(X), clf.predict_proba(X))            # classes= orders the columns
    own = LLPClassifier(**fast).fit(X, bags=ids, proportions=bca)                 # else the table's column order
    assert list(own.classes_) == ["b", "c", "a"]
    assert own.score(X, bags=ids, proportions=bca) == own.score(X, bags=ids, proportions=P[:, [1, 2, 0]])
    numbered = Table(P[:, [2, 0, 1]], [2, 0, 1])                                   # get_dummies' columns: class numbers
    _, table, _ = bag_table(ids, numbered, len(ids), classes=[0, 1, 2])
    assert np.array_equal(table, P)
    assert list(LLPClassifier(**fast).fit(X, bags=ids, proportions=series).classes_) == ["a", "b", "c"]
    mixed = {**series, 0: P[0]}
    with pytest.raises(LLPInputError, match="mix rows labelled by class"):
        bag_table(ids, mixed, len(ids), classes=["a", "b", "c"])


def test_odd_table_inputs(wine):
    X, _, ids, P, _ = wine
    import torch

    fast = {**FAST, "epochs1": 2, "epochs2": 1}
    base = LLPClassifier(**fast).fit(X, bags=ids, proportions=P).predict_proba(X)
    for same in (torch.tensor(P), P[::-1][::-1], np.asfortranarray(P)):
        assert np.array_equal(LLPClassifier(**fast).fit(X, bags=ids, proportions=same).predict_proba(X), base)
    flipped = len(P) - 1 - ids                                              # a reversed view of the table
    assert np.array_equal(bag_table(flipped, P[::-1], len(ids))[1], P[::-1])
    assert LLPClassifier(**fast).fit(X, bags=flipped, proportions=P[::-1]).history_      # trains (was torch's error)
    ragged = {b: (P[b] if b else P[b][:2]) for b in range(len(P))}
    text = np.array(P, dtype=object)
    text[3, 1] = "a"
    for bad in (ragged, text):
        with pytest.raises(LLPInputError, match="must be numbers"):
            LLPClassifier(**fast).fit(X, bags=ids, proportions=bad)
    from plotllp.stages import PLOT

    assert PLOT(1, mixup=1).mixup is True and PLOT(1, mixup=np.bool_(False)).mixup is False
    for params, match in (({"mixup": "no"}, "mixup must be True or False"), ({"device": None}, "device must be"),
                          ({"classes": "abc"}, "classes must be a list")):
        with pytest.raises(LLPInputError, match=match):
            LLPClassifier(**{**fast, **params}).fit(X, bags=ids, proportions=P)


def test_real_pandas_tables_are_aligned(wine):
    pd = pytest.importorskip("pandas")
    X, y, ids, P, _ = wine
    fast = {**FAST, "epochs1": 3, "epochs2": 1}
    base = LLPClassifier(**fast).fit(X, bags=ids, proportions=P)
    rows = pd.DataFrame({"bag": ids, "a": y == 0, "b": y == 1, "c": y == 2}).sample(frac=1, random_state=1)
    means = rows.groupby("bag")[["a", "b", "c"]].mean().sample(frac=1, random_state=2)   # indexed by bag, shuffled
    bags = pd.Series(ids, name="bag")
    again = LLPClassifier(**fast).fit(X, bags=bags, proportions=means)
    assert np.array_equal(again.predict_proba(X), base.predict_proba(X)) and list(again.classes_) == ["a", "b", "c"]
    assert again.score(X, bags=bags, proportions=means) == base.score(X, bags=ids, proportions=P)
    with pytest.raises(LLPInputError, match="cannot be matched"):                 # the bags unnamed: not certain
        LLPClassifier(**fast).fit(X, bags=ids, proportions=means)
    leftover = pd.DataFrame(P).sample(frac=1, random_state=1).sort_index().reset_index(drop=True)
    assert np.array_equal(bag_table(ids, leftover, len(ids))[1], P)
    csv_header = pd.DataFrame(P, columns=["0", "1", "2"])                         # read_csv's column names
    assert list(LLPClassifier(**fast).fit(X, bags=ids, proportions=csv_header).classes_) == [0, 1, 2]
    for columns in (["0", "1", "2"], [0, 1, 2], None):                            # None: pandas' RangeIndex
        frame = pd.DataFrame(P, columns=columns)                                   # columns that are class numbers
        assert np.array_equal(bag_table(ids, frame, len(ids), classes=[2, 0, 1])[1], P[:, [2, 0, 1]])
    unnamed = bag_table(ids, pd.DataFrame(P), len(ids), classes=["x", "y", "z"])[1]   # default labels: in order
    assert np.array_equal(unnamed, P)
    by_text = rows.assign(bag=rows.bag.astype(str))                               # text ids, a table keyed by numbers
    with pytest.raises(LLPInputError, match="bag ids are text .* but the proportions table's index holds numbers"):
        bag_table(by_text.bag.to_numpy(), pd.DataFrame(P), len(ids))
    with pytest.raises(LLPInputError, match="several levels"):
        bag_table(ids, pd.concat({"share": pd.DataFrame(P, columns=["a", "b", "c"])}, axis=1), len(ids), classes=[0, 1, 2])
    with pytest.raises(LLPInputError, match="not a Series.*unstack"):
        bag_table(ids, rows.groupby("bag").a.mean(), len(ids))
    index = pd.Index(ids, name="bag")                                             # set_index("bag").index: named too
    assert np.array_equal(bag_table(index, means, len(ids))[1], P)
    # cross-validation slices a per-row data frame and keeps its row labels: read by position, as an array
    Xs, per_row = StandardScaler().fit_transform(X), P[ids]
    scores = []
    for table in (per_row, pd.DataFrame(per_row, columns=["a", "b", "c"])):
        with sklearn.config_context(enable_metadata_routing=True):
            scores.append(cross_validate(LLPClassifier(**fast), Xs, cv=GroupKFold(n_splits=3),
                                         params={"bags": ids, "proportions": table, "groups": ids})["test_score"])
    assert np.array_equal(scores[0], scores[1]) and np.isfinite(scores[0]).all()
    labels = pd.DataFrame({"bag": ids, "y": np.array(["a", "b", "c"])[wine[1]]})
    counts = {b: g.value_counts(normalize=True) for b, g in labels.groupby("bag").y}
    clf = LLPClassifier(**fast).fit(X, bags=labels.bag, proportions=counts)
    assert list(clf.classes_) == ["a", "b", "c"]
    assert np.allclose(bag_table(ids, counts, len(ids), classes=["a", "b", "c"])[1], P)
    with pytest.raises(LLPInputError, match="missing id"):
        LLPClassifier(**fast).fit(X, bags=pd.Series(ids).where(ids != 3), proportions=P)
    # days as bag ids, at numpy's (and older pandas') nanoseconds: a crosstab by day and {Timestamp: row} align
    day = pd.Series(pd.Timestamp("2020-01-01") + pd.to_timedelta(ids, "D"), name="day").astype("datetime64[ns]")
    shuffled = pd.DataFrame(P, index=pd.Index(np.unique(day), name="day")).sample(frac=1, random_state=3)
    assert np.array_equal(bag_table(day, shuffled, len(ids))[1], P)
    assert np.array_equal(bag_table(day, dict(zip(shuffled.index, shuffled.to_numpy())), len(ids))[1], P)


def test_a_network_that_collapsed_to_one_class_is_flagged(wine):
    X, _, ids, P, _ = wine
    with pytest.warns(ConvergenceWarning, match="collapsed to one class"):
        LLPClassifier(**{**FAST, "epochs1": 10, "epochs2": 2}, lr=1e3).fit(X, bags=ids, proportions=P)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        LLPClassifier(**{**FAST, "epochs1": 10, "epochs2": 2}).fit(StandardScaler().fit_transform(X), bags=ids,
                                                                    proportions=P)
