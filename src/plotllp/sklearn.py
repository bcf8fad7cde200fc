"""A scikit-learn estimator for learning from label proportions.

:class:`LLPClassifier` trains an MLP on bags of rows and their class proportions: a first stage
(DLLP, LLP-VAT or LLP-GAN), then PLOT. No instance label is used::

    clf = LLPClassifier(epochs1=100, epochs2=50, random_state=0)
    clf.fit(X, bags=bag_ids, proportions=P)          # or counts=C
    clf.predict_proba(X_new)

``bags`` gives each row's bag (any hashable ids). ``proportions`` (or ``counts``) gives each bag's
class proportions (counts), in one of three forms: a mapping ``{bag id: vector}``, or a data frame
indexed by bag id (aligned on its index when that is certain: see :func:`bag_table`); an array or data
frame with one row per bag, in the order of the sorted unique bag ids; or one with one row per
*sample* (each row its bag's vector; this form is what cross-validation splits correctly). A data
frame's column names name the classes, in column order (pandas' default ``RangeIndex`` names none; a
CSV header of integers names the integers): with ``classes`` given the columns are put in its order,
else they become ``classes_``. So do per-bag Series in a mapping (``value_counts()``), sorted.

Model selection without instance labels: :meth:`LLPClassifier.score` with ``bags`` and
``proportions`` is the negative mean absolute error between the predicted and the given proportions
of those bags (:func:`bag_proportion_error`), so held-out *bags* score a setting. With scikit-learn's
metadata routing on, ``GridSearchCV`` and ``cross_validate`` pass ``bags`` and ``proportions`` to
``fit`` and ``score`` and ``GroupKFold`` keeps bags whole::

    sklearn.set_config(enable_metadata_routing=True)
    search = GridSearchCV(LLPClassifier(), {"epochs2": [0, 50]}, cv=GroupKFold(3))
    search.fit(X, bags=bag_ids, proportions=P_per_row, groups=bag_ids)
"""

from __future__ import annotations

import numbers
import re
import warnings
from collections.abc import Mapping

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted

from .bags import SUM_TOLERANCE, bags_from_ids, is_missing
from .engine import (LLPData, OptimConfig, class_counts, collapse_message, one_class_collapse, predict_proba,
                     resolve_device)
from .errors import LLPInputError
from .models import MLP
from .stages import FIRST_STAGES, PLOT
from .stages.base import flag_setting

__all__ = ["LLPClassifier", "bag_proportion_error", "bag_table", "class_labels"]


def _is_labelled(table) -> bool:
    """A pandas Series or DataFrame (duck-typed: plotllp does not need pandas)."""
    return hasattr(table, "index") and hasattr(table, "to_numpy") and not isinstance(table, np.ndarray)


def _names_nothing(columns) -> bool:
    """pandas' default column labels (a ``RangeIndex`` 0..K-1): they name no class, so the classes are
    0..K-1 in column order, as for an array; ``classes`` names them in order, unless it holds 0..K-1
    (then the labels are matched)."""
    return type(columns).__name__ == "RangeIndex" and list(columns) == list(range(len(columns)))


def _column_labels(columns) -> list:
    """A data frame's column labels as plain values; a header of integers written as text (``"0", "1"``
    after a round trip through CSV) is read as those integers."""
    labels = columns.tolist() if hasattr(columns, "tolist") else list(columns)
    if any(isinstance(c, tuple) for c in labels):
        raise LLPInputError("the proportions' columns have several levels (a MultiIndex); give one column per "
                            "class, e.g. table.droplevel(0, axis=1)")
    if labels and all(isinstance(c, str) and re.fullmatch(r"-?\d+", c) and c == str(int(c)) for c in labels):
        return [int(c) for c in labels]
    return labels


def class_labels(table):
    """The class labels a proportions (counts) table carries, or None. A data frame's column names, in
    column order (none for pandas' default 0..K-1; a header of integers written as text gives those
    integers); for a mapping whose values are pandas Series (``value_counts()`` or ``iterrows()`` per
    bag), the labels of their indexes, sorted (a class no bag's Series names is not among them: give
    ``classes`` to name it)."""
    if isinstance(table, Mapping):
        labels = list(dict.fromkeys(label for v in table.values() if _is_labelled(v) for label in v.index.tolist()))
        try:
            return sorted(labels) or None
        except TypeError:                             # labels of mixed types: in the table's order
            return labels
    columns = getattr(table, "columns", None) if _is_labelled(table) else None
    if columns is None or _names_nothing(columns):
        return None
    return _column_labels(columns)


def _class_vector(value, position, bag, what: str):
    """One bag's row; a labelled (pandas Series) row is put in the order of the classes (``position``: class
    -> column), a class it does not name getting 0, as ``value_counts()`` leaves out classes with no row."""
    if not _is_labelled(value):
        return value
    if position is None:
        return value.to_numpy()
    row = np.zeros(len(position))
    for label, v in zip(value.index.tolist(), value.to_numpy().tolist()):
        if label not in position:
            raise LLPInputError(f"{what} of bag {bag!r} name class {label!r}, which is not among the classes "
                                f"{list(position)}")
        row[position[label]] = v
    return row


def _numeric(rows, what: str) -> np.ndarray:
    try:
        return np.array(rows, dtype=np.float64)           # a copy: contiguous, writable
    except (TypeError, ValueError):
        raise LLPInputError(f"{what} must be numbers, one row of K per bag (or per sample), with the same K in "
                            "every row") from None


def _frame_rows(index, values, ids, bags, bags_name, what: str):
    """A data frame's rows (``index``, ``values``) as ``{bag id: row}`` when its index holds the bag ids,
    else its values (one row per bag in id order, or one per sample).

    The index is read as bag ids only when that is certain: it is named like ``bags`` (``groupby("county")``
    or ``read_csv(index_col="county")`` beside ``df.county``), or it holds text naming every bag (row
    labels are numbers). A table with one row per sample may carry any row labels (cross-validation's
    folds keep the original ones) or be indexed by each row's bag. Any other index of numbers that is
    neither 0..m-1 nor the sorted ids could be bag ids or rows left over from ``sort_values`` or a
    filter, and is an error, as is an index of numbers beside bag ids that are text (``"10"`` sorts
    before ``"2"``).
    """
    if getattr(index, "nlevels", 1) > 1:
        raise LLPInputError(f"the {what} table's index has {index.nlevels} levels; index it by bag id alone")
    rows, n, id_list = index.tolist(), len(bags), ids.tolist()
    if len(rows) == n and rows == bags.tolist():       # per sample, indexed by each row's bag
        return values
    unique = len(set(rows)) == len(rows)
    text = bool(rows) and all(isinstance(r, str) for r in rows)
    named = bags_name is not None and getattr(index, "name", None) == bags_name
    if not (named or (text and (len(rows) != n or (unique and set(rows) >= set(id_list))))):
        if any(isinstance(b, str) for b in id_list) and not text and {str(r) for r in rows} >= set(id_list):
            raise LLPInputError(f"the bag ids are text ({str(id_list[:3])[1:-1]}, ...) but the {what} table's index "
                                "holds numbers: give both the same type (text ids sort as text: '10' before '2')")
        if len(rows) == n and not (len(id_list) == n and set(rows) == set(id_list)):
            return values                              # per sample, with its own row labels
        if rows == list(range(len(rows))) or rows == id_list:
            return values                              # per bag, in id order
        raise LLPInputError(f"the {what} table's index ({str(rows[:4])[1:-1]}, ...) is neither 0..{len(rows) - 1} "
                            "nor the sorted bag ids, so its rows cannot be matched to bags for certain: if it holds "
                            "the bag ids, name it like the bags Series (or pass dict(table.iterrows())); if its rows "
                            "are in bag-id order, reset_index(drop=True)")
    if not unique:
        raise LLPInputError(f"the {what} table's index names a bag twice; index it by bag id, one row each")
    present = set(rows)
    missing = [b for b in id_list if b not in present]
    if missing and {str(r) for r in rows} >= {str(b) for b in id_list}:
        raise LLPInputError(f"the bag ids and the {what} table's index are of different types ({type(id_list[0]).__name__} "
                            f"and {type(rows[0]).__name__}); give both the same type")
    return dict(zip(rows, values))


def _python_dates(ids: np.ndarray) -> np.ndarray:
    """Dates and durations of nanosecond precision (numpy's and older pandas' default) at microseconds
    when that loses nothing: numpy turns those into Python datetimes (which equal pandas' Timestamps
    as keys and index labels), but nanosecond ones into bare integers that match no table."""
    if ids.dtype.kind not in "mM" or np.datetime_data(ids.dtype)[0] not in ("ns", "ps", "fs", "as"):
        return ids
    coarse = ids.astype(f"{'datetime64' if ids.dtype.kind == 'M' else 'timedelta64'}[us]")
    return coarse if np.array_equal(coarse.astype(ids.dtype), ids) else ids


def bag_table(bags, table, n_samples: int, what: str = "proportions", classes=None):
    """``(bag index per row, (m, K) table, bag ids)`` from the forms :class:`LLPClassifier` accepts.

    ``bags``: one id per row (numbers, strings, dates; a missing id is an error). ``table``: a mapping
    ``{bag id: row}`` (rows may be pandas Series labelled by class); an array, tensor or data frame with
    one row per bag, in the order of the sorted unique ids, or one per sample; or a data frame indexed
    by bag id, aligned on its index when that is certain: the index is named like ``bags`` (a Series:
    ``groupby("county")`` or ``read_csv(index_col="county")`` beside ``df.county``), or holds text;
    an index of other numbers than 0..m-1 or the sorted ids is an error (rows left over from
    ``sort_values`` or a filter look the same as unnamed ids). ``classes``: the labels
    of the K columns; a data frame whose columns name classes is put in that order (names that are not
    the classes are an error), as are labelled rows.
    """
    bags_name = getattr(bags, "name", None) if hasattr(bags, "to_numpy") else None      # a Series or an Index
    bags = np.asarray(bags)
    if bags.ndim != 1 or bags.shape[0] != n_samples:
        raise LLPInputError(f"bags must give one bag id per row: {n_samples} rows, got shape {bags.shape}")
    if bags.dtype.kind in "fO":
        missing = [i for i, b in enumerate(bags.tolist()) if is_missing(b)]
    else:
        missing = np.flatnonzero(np.isnat(bags)).tolist() if bags.dtype.kind in "mM" else []
    if missing:
        raise LLPInputError(f"bags hold a missing id ({bags[missing[0]]}) at row {missing[0]}; every row needs "
                            "its bag's id")
    try:
        ids, index = np.unique(bags, return_inverse=True)
    except TypeError:
        raise LLPInputError("bag ids must be all numbers or all strings, not a mix") from None
    index = index.ravel()
    ids = _python_dates(ids)
    if classes is not None:
        classes = np.asarray(classes).tolist()
    if isinstance(table, torch.Tensor):
        table = table.detach().cpu().numpy()
    if _is_labelled(table) and getattr(table, "ndim", 2) == 1:
        raise LLPInputError(f"{what} must be a table (bags or rows x classes), not a Series; give a data frame with "
                            "a column per class (a value_counts() Series: .unstack(fill_value=0)), an array, or a "
                            "mapping {bag id: row}")
    if _is_labelled(table):                                        # a data frame
        values = table.to_numpy()
        if classes is not None:
            columns = _column_labels(table.columns)
            if len(columns) == len(classes) and set(columns) == set(classes):     # the columns name the classes
                values = values[:, [columns.index(c) for c in classes]]
            elif not _names_nothing(table.columns):
                raise LLPInputError(f"the {what} columns {columns} are not the classes {classes}: name the columns "
                                    "by class, or give the values as an array with its columns in the classes' order")
        table = _frame_rows(table.index, values, ids, bags, bags_name, what)
    if isinstance(table, Mapping):
        absent = [b for b in ids.tolist() if b not in table]
        if absent:
            raise LLPInputError(f"{what} are missing for bag {absent[0]!r}")
        rows = [table[b] for b in ids.tolist()]
        labelled = sum(_is_labelled(r) for r in rows)
        if 0 < labelled < len(rows):
            raise LLPInputError(f"{what} mix rows labelled by class (Series) with plain rows; give one kind")
        position = {c: i for i, c in enumerate(classes)} if classes is not None and labelled else None
        arr = _numeric([_class_vector(r, position, b, what) for b, r in zip(ids.tolist(), rows)], what)
        if arr.ndim != 2:
            raise LLPInputError(f"{what} must be one row of K numbers per bag, got shape {arr.shape}")
    else:
        arr = _numeric(table, what)
        if arr.ndim != 2:
            raise LLPInputError(f"{what} must be 2-d (bags or rows x classes), got shape {arr.shape}")
        if arr.shape[0] == n_samples == len(ids) and not np.array_equal(index, np.arange(n_samples)):
            raise LLPInputError(f"every bag has one row, so a {what} array could be one row per sample or one per "
                                "bag (in the order of the sorted bag ids); give a mapping {bag id: row} instead")
        if arr.shape[0] == n_samples:                    # one row per sample
            per_bag = np.zeros((len(ids), arr.shape[1]))
            per_bag[index] = arr
            if not np.allclose(per_bag[index], arr):
                b = int(index[np.flatnonzero(~np.isclose(per_bag[index], arr).all(1))[0]])
                raise LLPInputError(f"rows of bag {ids.tolist()[b]!r} give different {what}")
            arr = per_bag
        elif arr.shape[0] != len(ids):
            raise LLPInputError(f"{what} has {arr.shape[0]} rows; expected one per bag ({len(ids)}) or one per "
                                f"sample ({n_samples})")
    return index, arr, ids


def _feature_names(X):
    """The column names of a data frame ``X`` when they are all strings (scikit-learn's rule), else None."""
    columns = getattr(X, "columns", None)
    if columns is None:
        return None
    names = np.asarray(columns, dtype=object)
    return names if names.size and all(isinstance(n, str) for n in names) else None


def bag_proportion_error(probs, bags, proportions, classes=None) -> float:
    """Mean absolute error between each bag's mean predicted probability and its given proportions,
    averaged over bags and classes (the bag-level MAE of the paper's evaluation). ``classes``: the
    labels of the columns of ``probs``, to align a table that names its classes (:func:`bag_table`)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise LLPInputError(f"probs must be 2-d (rows x classes), got shape {probs.shape}")
    index, table, ids = bag_table(bags, proportions, probs.shape[0], classes=classes)
    if table.shape[1] != probs.shape[1]:
        raise LLPInputError(f"proportions have {table.shape[1]} classes, the model predicts {probs.shape[1]}")
    sizes = np.bincount(index, minlength=len(table))
    sums = table.sum(1)
    counts = np.isfinite(table).all() and np.allclose(table, np.round(table)) and np.allclose(sums, sizes)
    if counts and not np.allclose(sums, 1):              # class counts of each bag's rows: compare proportions
        table = table / sizes[:, None]
    bad = ~np.isfinite(table).all(1) | (table < 0).any(1) | (np.abs(table.sum(1) - 1) > SUM_TOLERANCE)
    if bad.any():
        b = int(np.flatnonzero(bad)[0])
        raise LLPInputError(f"proportions of bag {ids.tolist()[b]!r} are {np.round(table[b], 6).tolist()}: give proportions "
                            f"(non-negative, summing to 1) or the class counts of the bag's {sizes[b]} rows")
    means = np.zeros_like(table)
    np.add.at(means, index, probs)
    means /= sizes[:, None]
    return float(np.abs(means - table).mean())


class LLPClassifier(ClassifierMixin, BaseEstimator):
    """An MLP trained from bag proportions: ``first_stage`` then (``second_stage="plot"``) PLOT.

    Parameters mirror ``plotllp train``: ``first_stage`` (dllp, vat, gan), ``second_stage`` (plot,
    none), ``labels`` (hard, soft), ``loss`` (sce, ce), ``mixup``, ``width`` and ``depth`` of the MLP,
    ``epochs1``/``epochs2``, ``lr`` (both stages), ``batch_bags`` (first stage), ``batch_size`` (PLOT),
    ``classes`` (the labels of the K columns of the proportions; default the labels the proportions
    carry, a data frame's column names for example, else 0..K-1), ``device`` (auto, cpu,
    cuda; auto takes a GPU where there is one and trains there under bf16 autocast, so a fixed
    ``random_state`` gives other numbers than on a CPU), ``random_state`` (None, an int or a numpy
    RandomState) and ``verbose`` (a line per epoch).

    Attributes after ``fit``: ``classes_``, ``n_features_in_``, ``feature_names_in_`` (for a data frame
    with string column names), ``model_`` (the trained
    ``torch.nn.Module``, on the CPU), ``history_`` (per-epoch losses).
    """

    __metadata_request__fit = {"bags": True, "proportions": True, "counts": True}
    __metadata_request__score = {"bags": True, "proportions": True, "counts": True, "sample_weight": True}

    def __init__(self, first_stage="dllp", second_stage="plot", labels="hard", loss="sce", mixup=False, width=64,
                 depth=3, epochs1=100, epochs2=50, lr=1e-3, batch_bags=4, batch_size=128, classes=None,
                 device="auto", random_state=None, verbose=False):
        self.first_stage = first_stage
        self.second_stage = second_stage
        self.labels = labels
        self.loss = loss
        self.mixup = mixup
        self.width = width
        self.depth = depth
        self.epochs1 = epochs1
        self.epochs2 = epochs2
        self.lr = lr
        self.batch_bags = batch_bags
        self.batch_size = batch_size
        self.classes = classes
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _check_params(self):
        if self.first_stage not in FIRST_STAGES:
            raise LLPInputError(f"first_stage must be one of {', '.join(FIRST_STAGES)}, got {self.first_stage!r}")
        if self.second_stage not in ("plot", "none"):
            raise LLPInputError(f"second_stage must be plot or none, got {self.second_stage!r}")
        for name in ("width", "depth", "batch_bags", "batch_size", "epochs1", "epochs2"):
            value = getattr(self, name)
            low = 0 if name.startswith("epochs") else 1
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise LLPInputError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.epochs1 + self.epochs2 == 0:
            raise LLPInputError("epochs1 and epochs2 are both 0: nothing to train")
        flag_setting("mixup", self.mixup)
        if not isinstance(self.verbose, (bool, int, np.integer)):
            raise LLPInputError(f"verbose must be True, False or an integer, got {self.verbose!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, numbers.Real) or not 0 < self.lr < float("inf"):
            raise LLPInputError(f"lr must be a positive number, got {self.lr!r}")

    def fit(self, X, y=None, *, bags=None, proportions=None, counts=None):
        """Train on rows ``X`` grouped by ``bags`` with each bag's ``proportions`` or ``counts``
        (module docstring for their forms). ``y`` is ignored: there are no instance labels."""
        self._check_params()
        if bags is None:
            raise LLPInputError("fit needs bags= (the bag id of each row) and proportions= or counts=")
        if (proportions is None) == (counts is None):
            raise LLPInputError("give exactly one of proportions= or counts=")
        names = _feature_names(X)
        X = check_array(X, dtype=np.float32)
        given, what = (proportions, "proportions") if proportions is not None else (counts, "counts")
        labels = self.classes if self.classes is not None else class_labels(given)
        if labels is not None:
            kinds = {type(v) for v in labels} if isinstance(labels, (list, tuple)) else set()
            labels = np.asarray(labels, dtype=object if len(kinds) > 1 else None)   # ["a", 1] stay str and int
            if labels.ndim != 1:
                raise LLPInputError(f"classes must be a list of class labels, got {self.classes!r}")
            if len(set(labels.tolist())) != len(labels):
                raise LLPInputError(f"classes name a class twice: {labels.tolist()}")
        index, table, ids = bag_table(bags, given, X.shape[0], what, classes=labels)
        k = table.shape[1]
        if k < 2:
            raise LLPInputError(f"{what} need at least 2 classes, got {k}")
        classes = np.arange(k) if labels is None else labels
        if len(classes) != k:
            raise LLPInputError(f"classes has {len(classes)} labels but the {what} have {k} columns")
        bags_obj = bags_from_ids(index, proportions=table if proportions is not None else None,
                                 counts=table if counts is not None else None, bag_names=ids.tolist())
        try:
            seed = int(check_random_state(self.random_state).randint(2 ** 31))    # None: numpy's global RandomState
        except ValueError as e:
            raise LLPInputError(f"random_state must be None, an int or a numpy RandomState: {e}") from None
        device = resolve_device(self.device)
        data = LLPData(X, bags_obj, device)
        log = print if self.verbose else None
        optim = OptimConfig(lr=float(self.lr))
        first = FIRST_STAGES[self.first_stage](int(self.epochs1), optim, batch_bags=int(self.batch_bags))
        second = (PLOT(int(self.epochs2), optim, labels=self.labels, loss=self.loss, mixup=bool(self.mixup),
                       batch_size=int(self.batch_size)) if self.second_stage == "plot" and self.epochs2 > 0 else None)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):   # the caller's RNG untouched
            torch.manual_seed(seed)
            model = MLP(X.shape[1], k, width=int(self.width), depth=int(self.depth)).to(device)
        history = first.fit(model, data, log=log, seed=seed) if self.epochs1 > 0 else []
        if second is not None:
            history = history + second.fit(model, data, log=log, seed=seed + 1)
        collapse = one_class_collapse(*class_counts(model, data))
        if collapse is not None:
            warnings.warn(collapse_message(collapse, [str(c) for c in classes]), ConvergenceWarning, stacklevel=2)
        # attributes only now: a fit that failed leaves an earlier fit as it was
        self.n_features_in_ = X.shape[1]
        if names is not None:
            self.feature_names_in_ = names
        else:
            self.__dict__.pop("feature_names_in_", None)
        self.classes_ = classes
        self.model_ = model.cpu().eval()
        self.history_ = [{k_: v for k_, v in r.items() if isinstance(v, (int, float, str))} for r in history]
        return self

    def predict_proba(self, X) -> np.ndarray:
        """(n, K) class probabilities, columns in the order of ``classes_``."""
        check_is_fitted(self, "model_")
        names, fitted = _feature_names(X), getattr(self, "feature_names_in_", None)
        if fitted is not None and names is not None and not np.array_equal(names, fitted):
            raise ValueError(f"the feature names should match those passed during fit: got {str(names.tolist())[:150]}, "
                             f"fitted with {str(fitted.tolist())[:150]}")
        if (fitted is None) != (names is None):
            warnings.warn(f"X {'has' if names is not None else 'does not have valid'} feature names, but "
                          f"LLPClassifier was fitted {'without' if fitted is None else 'with'} feature names",
                          UserWarning, stacklevel=2)
        X = check_array(X, dtype=np.float32)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but LLPClassifier is expecting {self.n_features_in_} "
                             f"features as input")
        return predict_proba(self.model_, torch.from_numpy(X)).numpy()

    def predict(self, X) -> np.ndarray:
        """The most probable class of each row (a label of ``classes_``)."""
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(1)]

    def score(self, X, y=None, sample_weight=None, *, bags=None, proportions=None, counts=None) -> float:
        """With ``bags`` and ``proportions`` (or ``counts``, the class counts of each bag's rows given):
        the negative bag-level proportion error on those bags (greater is better; no instance labels
        needed). Otherwise the accuracy against ``y`` (``sample_weight`` is accepted for scikit-learn's
        Pipeline and must be None)."""
        if sample_weight is not None:
            raise LLPInputError("LLPClassifier.score does not take sample weights")
        if bags is not None:
            if (proportions is None) == (counts is None):
                raise LLPInputError("score with bags= needs exactly one of proportions= or counts= as well")
            if counts is not None:
                check_is_fitted(self, "model_")
                index, table, ids = bag_table(bags, counts, np.shape(X)[0], "counts", classes=self.classes_)
                sizes = np.bincount(index, minlength=len(table))
                off = np.flatnonzero(table.sum(1) != sizes)
                if off.size:
                    raise LLPInputError(f"counts of bag {ids.tolist()[off[0]]!r} sum to {table[off[0]].sum():g} but "
                                        f"{sizes[off[0]]} of its rows are given (a bag split across folds? "
                                        "keep bags whole, e.g. with GroupKFold)")
                proportions = dict(zip(ids.tolist(), table / sizes[:, None]))
            return -bag_proportion_error(self.predict_proba(X), bags, proportions, classes=self.classes_)
        if y is None:
            raise LLPInputError("score needs bags= and proportions= (or instance labels y)")
        return float(np.mean(self.predict(X) == np.asarray(y)))

    def _more_tags(self):                      # scikit-learn < 1.6
        return {"requires_y": False}

    def __sklearn_tags__(self):                # scikit-learn >= 1.6
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        return tags
