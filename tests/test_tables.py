"""Tables from the command line: CSV rows with a bag column, proportions from a counts file or from a
label column, `plotllp predict`, and one-line errors for bad tables."""

import csv
import datetime
import gc
import json
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_wine

from plotllp.data.tables import load_table
from plotllp.errors import LLPInputError

NAMES = ["alcohol", "malic", "ash", "alcalinity", "magnesium", "phenols", "flavanoids", "nonflav", "proanth",
         "color", "hue", "od", "proline"]
CLASSES = ["barolo", "grignolino", "barbera"]


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "plotllp", *args], capture_output=True, text=True, timeout=600,
                          cwd=cwd)


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    d = tmp_path_factory.mktemp("tables")
    X, y = load_wine(return_X_y=True)
    bags = [f"clinic{i}" for i in np.random.default_rng(0).integers(0, 20, len(y))]
    write_csv(d / "rows.csv", ["clinic", *NAMES, "label"],
              [[b, *x, CLASSES[t]] for b, x, t in zip(bags, X, y)])
    ids = sorted(set(bags))
    counts = {b: np.bincount([t for bb, t in zip(bags, y) if bb == b], minlength=3) for b in ids}
    write_csv(d / "counts.csv", ["clinic", *CLASSES], [[b, *counts[b]] for b in ids])
    write_csv(d / "props.csv", ["bag", *CLASSES], [[b, *(counts[b] / counts[b].sum())] for b in ids])
    return d, y


def test_train_from_counts_then_predict(tables, tmp_path):
    d, y = tables
    out = tmp_path / "run"
    r = cli("train", "--dataset", f"table:{d / 'rows.csv'}", "--bag-column", "clinic", "--proportions",
            str(d / "counts.csv"), "--features", ",".join(NAMES), "--epochs1", "60", "--epochs2", "20",
            "--device", "cpu", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "training-bag MAE" in r.stdout
    res = json.loads((out / "results.json").read_text())
    assert res["data"]["bags"] == 20 and res["data"]["test_instances"] == 0
    assert res["final"]["train_bag_mae"] < 0.05
    r = cli("predict", "--model", str(out), "--input", str(d / "rows.csv"), "--output", str(tmp_path / "p.csv"))
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert list(rows[0]) == ["row", "clinic", "p_barolo", "p_grignolino", "p_barbera", "predicted"]
    assert len(rows) == 178 and all(abs(sum(float(v[f"p_{c}"]) for c in CLASSES) - 1) < 1e-4 for v in rows)
    acc = np.mean([row["predicted"] == CLASSES[t] for row, t in zip(rows, y)])
    assert acc > 0.85                                  # from 20 bags' counts, no row label used


def test_divergence_without_instance_labels_fails_loudly(tables, tmp_path):
    """Real LLP data (proportions only): a step that leaves the network predicting NaN is caught, even as an
    epoch's last step (after its loss was taken): exit 3, no results, no checkpoint of the broken network;
    and `predict` refuses a model whose predictions are NaN."""
    import torch
    d, _ = tables
    table = ["--dataset", f"table:{d / 'rows.csv'}", "--bag-column", "clinic", "--proportions", str(d / "counts.csv"),
             "--features", ",".join(NAMES), "--device", "cpu"]
    out = tmp_path / "diverged"
    r = cli("train", *table, "--batch-bags", "20", "--epochs1", "3", "--second-stage", "none", "--lr", "1e30",
            "--out", str(out))
    assert r.returncode == 3 and len(r.stderr.strip().splitlines()) == 1 and "NaN" in r.stderr, r.stderr
    assert not (out / "results.json").exists() and not (out / "checkpoint.pt").exists()
    good = tmp_path / "good"
    assert cli("train", *table, "--epochs1", "2", "--second-stage", "none", "--out", str(good)).returncode == 0
    saved = torch.load(good / "model.pt", weights_only=True)
    next(iter(saved["state_dict"].values())).fill_(float("nan"))
    torch.save(saved, good / "model.pt")
    r = cli("predict", "--model", str(good), "--input", str(d / "rows.csv"), "--output", str(tmp_path / "p.csv"))
    assert r.returncode == 2 and "predicts NaN" in r.stderr and not (tmp_path / "p.csv").exists(), r.stderr


def test_train_from_a_label_column_holds_out_whole_bags(tables, tmp_path):
    d, _ = tables
    r = cli("train", "--dataset", f"table:{d / 'rows.csv'}", "--bag-column", "clinic", "--label-column", "label",
            "--epochs1", "30", "--epochs2", "10", "--device", "cpu", "--out", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "b" / "results.json").read_text())
    assert res["data"]["bags"] == 16 and res["data"]["test_instances"] > 0     # 4 of 20 bags held out
    assert 0 <= res["final"]["test_accuracy"] <= 1


def test_feature_bags_from_two_columns(tables, tmp_path):
    d, _ = tables
    rows = list(csv.reader(open(d / "rows.csv")))
    header = rows[0] + ["shift"]
    body = [r + [str(i % 2)] for i, r in enumerate(rows[1:])]
    write_csv(tmp_path / "rows2.csv", header, body)
    r = cli("train", "--dataset", f"table:{tmp_path / 'rows2.csv'}", "--bag-column", "clinic,shift", "--label-column",
            "label", "--test-fraction", "0", "--epochs1", "2", "--epochs2", "1", "--device", "cpu",
            "--out", str(tmp_path / "fb"))
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "fb" / "results.json").read_text())
    assert res["data"]["bags"] == len({(row[0], row[-1]) for row in body})          # one bag per (clinic, shift)


@pytest.mark.parametrize("edit, args, msg", [
    (None, ["--bag-column", "site", "--proportions", "counts.csv"], "no bag column 'site'"),
    (None, ["--bag-column", "clinic", "--proportions", "counts.csv", "--features", "alcohol,nope"],
     "no feature column 'nope'"),
    (None, ["--bag-column", "clinic", "--proportions", "counts.csv", "--features", "alcohol,label"],
     "column 'label' is not numeric"),
    ("nan", ["--bag-column", "clinic", "--proportions", "counts.csv", "--features", "alcohol,malic"],
     "column 'malic' has a missing"),
    ("drop_bag", ["--bag-column", "clinic", "--proportions", "counts_missing.csv"], "has rows but no proportions"),
    ("extra_bag", ["--bag-column", "clinic", "--proportions", "counts_extra.csv"], "which has no rows"),
    ("blank_feature", ["--bag-column", "clinic", "--label-column", "label"], "column 'malic' has a missing"),
    ("blank_label", ["--bag-column", "clinic", "--label-column", "label"], "label column 'label' has no value at row 3"),
    ("blank_bag", ["--bag-column", "clinic", "--label-column", "label"], "bag column 'clinic' has no value at row 4"),
    (None, ["--bag-column", "clinic", "--proportions", "counts.csv", "--features", ","], "names no columns"),
    (None, ["--bag-column", "clinic"], "exactly one of --proportions"),
    (None, ["--bag-column", "clinic", "--proportions", "nowhere.csv"], "nowhere.csv does not exist"),
])
def test_bad_tables_give_one_line_errors(tables, tmp_path, edit, args, msg):
    d, _ = tables
    rows = list(csv.reader(open(d / "rows.csv")))
    counts = list(csv.reader(open(d / "counts.csv")))
    if edit in ("nan", "blank_feature"):
        rows[5][2] = "" if edit == "nan" else "NA"          # a missing feature: an error, never a dropped column
    if edit == "blank_label":
        rows[3][-1] = ""
    if edit == "blank_bag":
        rows[4][0] = ""
    write_csv(tmp_path / "rows.csv", rows[0], rows[1:])
    write_csv(tmp_path / "counts.csv", counts[0], counts[1:])
    write_csv(tmp_path / "counts_missing.csv", counts[0], counts[2:])
    write_csv(tmp_path / "counts_extra.csv", counts[0], counts[1:] + [["clinic99", 1, 1, 1]])
    r = cli("train", "--dataset", "table:rows.csv", *args, "--epochs1", "1", "--epochs2", "0", "--device", "cpu",
            "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert msg in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_proportions_file_in_proportions_form(tables, tmp_path):
    d, _ = tables
    r = cli("train", "--dataset", f"table:{d / 'rows.csv'}", "--bag-column", "clinic", "--proportions",
            str(d / "props.csv"), "--features", "alcohol,flavanoids,proline", "--epochs1", "2", "--epochs2", "1",
            "--device", "cpu", "--out", str(tmp_path / "p"))
    assert r.returncode == 0, r.stderr


def test_parquet_table_trains_and_predicts_as_its_csv(tables, tmp_path):
    """A Parquet file of the CSV's rows (float features, the bag ids as text) trains, and `plotllp predict`
    of it writes the same file as `plotllp predict` of the CSV."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    d, _ = tables
    with open(d / "rows.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    table = pa.table({"clinic": [r["clinic"] for r in rows], **{n: [float(r[n]) for r in rows] for n in NAMES}})
    pq.write_table(table, tmp_path / "rows.parquet")
    r = cli("train", "--dataset", f"table:{tmp_path / 'rows.parquet'}", "--bag-column", "clinic", "--proportions",
            str(d / "counts.csv"), "--epochs1", "2", "--epochs2", "1", "--device", "cpu", "--out", str(tmp_path / "q"))
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "q" / "results.json").read_text())
    assert res["data"]["bags"] == 20 and res["data"]["train_instances"] == 178
    for name in ("rows.parquet", str(d / "rows.csv")):
        r = cli("predict", "--model", "q", "--input", name, "--output", f"{os.path.basename(name)}.out.csv", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    assert (tmp_path / "rows.parquet.out.csv").read_text() == (tmp_path / "rows.csv.out.csv").read_text()
    r = cli("predict", "--model", "q", "--input", "rows.parquet", "--output", "out.parquet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    written = pq.read_table(tmp_path / "out.parquet")
    with open(tmp_path / "rows.csv.out.csv", newline="") as f:
        expected = list(csv.DictReader(f))
    assert written.column_names == list(expected[0])
    assert str(written.schema.field("p_barolo").type) == "float" and str(written.schema.field("row").type) == "int64"
    for got, want in zip(written.to_pylist(), expected, strict=True):          # unrounded: within 5e-7
        assert got["row"] == int(want["row"]) and got["clinic"] == want["clinic"]
        assert got["predicted"] == want["predicted"]
        assert all(abs(got[f"p_{c}"] - float(want[f"p_{c}"])) <= 5e-7 for c in CLASSES)


def test_predictions_refuse_a_bag_column_named_like_an_output_column():
    """In either format: a CSV with two `row` columns could not be read back (plotllp refuses repeated names),
    a Parquet table of a dict of columns would lose one."""
    pytest.importorskip("pyarrow")
    from plotllp.cli import predictions_csv, predictions_table

    probs = np.array([[0.25, 0.75]], dtype=np.float32)
    table = predictions_table("p.parquet", probs, ["no", "yes"], {"site": ["s1"]})
    assert table.to_pylist() == [{"row": 1, "site": "s1", "p_no": 0.25, "p_yes": 0.75, "predicted": "yes"}]
    for name in ("row", "p_yes", "predicted"):
        for write in (predictions_table, lambda *a: predictions_csv(*a[1:])):
            with pytest.raises(LLPInputError, match=f"the bag column '{name}' is named like an output column"):
                write("p.parquet", probs, ["no", "yes"], {name: ["s1"]})


def test_predictions_table_writes_bag_ids_pyarrow_cannot_rebuild_as_text():
    pa = pytest.importorskip("pyarrow")
    from plotllp.cli import predictions_table

    probs = np.array([[0.25, 0.75], [0.5, 0.5]], dtype=np.float32)
    ids = pa.array([[("k", 1)], [("k", 2)]], pa.map_(pa.string(), pa.int64())).to_pylist()   # a map column's values
    table = predictions_table("p.parquet", probs, ["no", "yes"], {"bag": ids})
    assert table.column("bag").to_pylist() == [str(ids[0]), str(ids[1])]


PARQUET_TYPES = ["int64", "int8", "uint64", "float64", "float32", "bool", "string"]


@settings(max_examples=80, deadline=None)
@example(case=("int64", [2 ** 53 + 1, None, 3]))              # an integer float64 rounds; a null
@example(case=("float64", [None, float("nan")]))              # nothing present: not a feature
@example(case=("float64", [1.0, float("-inf"), None]))
@example(case=("string", ["1", "2.5"]))                     # numbers as text: parsed by Python
@given(st.sampled_from(PARQUET_TYPES).flatmap(lambda kind: st.tuples(st.just(kind), st.lists(st.one_of(
    st.none(),
    {"int64": st.integers(-2 ** 63, 2 ** 63 - 1), "int8": st.integers(-128, 127), "uint64": st.integers(0, 2 ** 64 - 1),
     "float64": st.floats(width=64), "float32": st.floats(width=32), "bool": st.booleans(),
     "string": st.sampled_from(["1", "-2.5", "x", "", "NA", "inf", "True", " false"])}[kind]), min_size=1, max_size=40))))
def test_parquet_columns_converted_by_pyarrow_are_those_parsed_from_their_python_values(tmp_path_factory, case):
    """read_table(text=...) converts a Parquet number column with pyarrow; load_table then sees what the
    column's Python values give (read_table's text=None): the same kind (_is_numeric), the same numbers
    (integers rounded as Python's float does), or the same error naming the same row."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    from plotllp.data import tables as t

    kind, cells = case
    path = tmp_path_factory.mktemp("pq") / "t.parquet"
    pq.write_table(pa.table({"bag": pa.array([7] * len(cells)), "c": pa.array(cells, type=pa.type_for_alias(kind))}), path)
    whole = t.read_table(str(path))
    parsed = t.read_table(str(path), text=["bag"])
    assert parsed["bag"] == whole["bag"] == [7] * len(cells)             # kept as pyarrow's Python values
    assert t._is_numeric(parsed["c"]) == t._is_numeric(whole["c"])
    if not t._is_numeric(whole["c"]):
        assert [repr(v) for v in parsed["c"]] == [repr(v) for v in whole["c"]]
        return
    try:
        expected = t._numeric(str(path), "c", whole["c"])
    except LLPInputError as e:
        with pytest.raises(LLPInputError, match=f"^{re.escape(str(e))}$"):
            t._numeric(str(path), "c", parsed["c"])
    else:
        got = t._numeric(str(path), "c", parsed["c"])
        assert got.dtype == np.float64 and got.tolist() == expected.tolist()


def test_bad_parquet_files_are_one_line_errors(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    from plotllp.data.tables import read_table
    from plotllp.errors import DataFileError

    pq.write_table(pa.table([pa.array([1, 2]), pa.array([3, 4])], names=["a", "a"]), tmp_path / "twice.parquet")
    pq.write_table(pa.table({"a": pa.array([], type=pa.int64())}), tmp_path / "empty.parquet")
    (tmp_path / "text.parquet").write_text("a,b\n1,2\n")
    pq.write_table(pa.table({}), tmp_path / "nocols.parquet")
    (tmp_path / "folder.parquet").mkdir()
    for name, msg in (("twice", "column 'a' appears twice"), ("empty", "has columns but no rows"),
                      ("nocols", "has no columns"), ("folder", "is a folder; give one CSV or Parquet file"),
                      ("text", "is not a readable Parquet file")):
        with pytest.raises(DataFileError, match=msg):
            read_table(str(tmp_path / f"{name}.parquet"), text=["b"])
        assert gc.isenabled()


def test_the_first_value_too_large_for_float32_is_named_by_row_then_column():
    from plotllp.data.tables import feature_matrix

    cols = {"a": np.array([1.0, 2.0, 3.0, -4e31]), "b": np.array([1.0, 5e30, 7e35, 0.0]), "c": np.arange(4.0)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # one line on stderr: no numpy warning of the cast before it
        with pytest.raises(LLPInputError, match=re.escape("column 'b' has a value beyond +-1e30 at row 2 (5e+30); "
                                                          "rescale it")):
            feature_matrix("t.csv", cols, ["a", "b", "c"])
        with pytest.raises(LLPInputError, match=re.escape("column 'a' has a value beyond +-1e30 at row 4 (-4e+31); "
                                                          "the model was trained on smaller values")):
            feature_matrix("t.csv", {**cols, "b": np.array([1e39, 0, 0, 0])}, ["c", "a"], predicting=True)
    with pytest.raises(LLPInputError, match="no feature columns given"):
        feature_matrix("t.csv", cols, [])
    d = np.array([0.1, -2.5, 1e30, 3.0])                 # 1e30 itself is allowed
    x = feature_matrix("t.csv", {"c": cols["c"], "d": d}, ["d", "c"])
    assert x.dtype == np.float32 and x.flags.c_contiguous
    assert x.tolist() == np.stack([d, np.arange(4.0)], axis=1).astype(np.float32).tolist()


def test_label_column_tables_report_the_error_of_the_held_out_bags(tables):
    """With --label-column, the test bags whose proportion error is reported are the held-out bags
    themselves (SPEC section 1: built the same way as the training bags), not random groups of rows."""
    from plotllp.config import make_config
    from plotllp.data.tables import load_table
    from plotllp.pipeline import make_test_bags

    d, _ = tables
    ds = load_table(str(d / "rows.csv"), bag_column="clinic", label_column="label", seed=0)
    cfg = make_config({"dataset": f"table:{d / 'rows.csv'}", "bag_column": "clinic", "label_column": "label"})
    test_bags = make_test_bags(cfg, ds)
    clinic = np.array([row["clinic"] for row in csv.DictReader(open(d / "rows.csv"))])
    held_out = sorted(set(clinic) - set(ds.bag_names))
    assert test_bags.num_bags == len(held_out) == 4
    test_rows = np.flatnonzero(np.isin(clinic, held_out))        # the test arrays, in file order
    assert len(test_rows) == len(ds.y_test)
    for b in range(test_bags.num_bags):
        members = test_bags.indices[test_bags.bag_ids == b]
        assert len(set(clinic[test_rows[members]])) == 1            # one clinic per test bag
        np.testing.assert_allclose(test_bags.proportions[b], np.bincount(ds.y_test[members], minlength=3) / len(members))


def test_names_like_na_are_bags_and_classes_and_empty_columns_are_left_out(tmp_path):
    """'NA' may name a bag (North America) and 'none' a class: only an empty cell is a missing name. A column
    with no value at all (notes nobody filled in) is not a feature. Values too large to standardise are
    refused, not silently zeroed."""
    from plotllp.data.tables import load_table

    rng = np.random.default_rng(0)
    rows = [[["NA", "EU", "AS"][i % 3], f"{rng.normal():.3f}", f"{rng.normal():.3f}", "", ["none", "mild"][i % 2]]
            for i in range(60)]
    write_csv(tmp_path / "r.csv", ["region", "a", "b", "notes", "severity"], rows)
    ds = load_table(str(tmp_path / "r.csv"), bag_column="region", label_column="severity", test_fraction=0.0)
    assert sorted(ds.bag_names) == ["AS", "EU", "NA"] and ds.class_names == ["mild", "none"]
    assert ds.feature_names == ["a", "b"]
    rows[5][1] = "1e25"
    write_csv(tmp_path / "big.csv", ["region", "a", "b", "notes", "severity"], rows)
    ds = load_table(str(tmp_path / "big.csv"), bag_column="region", label_column="severity", test_fraction=0.0)
    assert np.isfinite(ds.normalization["std"]).all() and ds.normalization["std"][0] > 1e23


def test_numeric_labels_are_classes_by_value_in_numeric_order(tmp_path):
    """A label column whose labels are all numbers: 7 and 7.0 are one class, and 2 comes before 10 (a Parquet
    float column reads as 7.0; concatenated exports mix both spellings)."""
    from plotllp.data.tables import class_names_of, load_table

    names, y = class_names_of(["10", "2", "7.0", "7", "2.0", "0.5"])
    assert names.tolist() == ["0.5", "2", "7", "10"] and y.tolist() == [3, 1, 2, 2, 1, 0]
    names, y = class_names_of(["b", "a10", "a2", "b"])                  # text: sorted as text
    assert names.tolist() == ["a10", "a2", "b"] and y.tolist() == [2, 0, 1, 2]
    names, y = class_names_of(["9007199254740993", "9007199254740992", "007", "1e3"])   # ints compared exactly
    assert names.tolist() == ["007", "1e3", "9007199254740992", "9007199254740993"] and y.tolist() == [3, 2, 0, 1]
    assert class_names_of(["1_000", "2"])[0].tolist() == ["1_000", "2"]       # not a plainly written number: text
    rows = [[str(i % 6), f"{i * 0.1:.1f}", ("%d" if i // 10 % 2 else "%.1f") % (1 + i % 10)] for i in range(60)]
    write_csv(tmp_path / "r.csv", ["bag", "a", "label"], rows)
    ds = load_table(str(tmp_path / "r.csv"), bag_column="bag", label_column="label", test_fraction=0.0)
    assert ds.class_names == [str(c) for c in range(1, 11)]
    assert np.array_equal(ds.y_train, np.array([i % 10 for i in range(60)]))


# -- from a second mutation audit: each test below fails on a small bug that the others let pass --

def test_a_proportions_file_in_any_row_order_is_matched_to_the_bags_by_id(tmp_path):
    """The proportions file is matched by bag id, not by row order: a file listing the bags in another order
    than the sorted ids gives every bag its own counts (here bag bK has K + 1 rows of class A out of 5)."""
    write_csv(tmp_path / "rows.csv", ["bag", "x1", "x2"], [[f"b{i % 4}", i % 4, i * 0.1] for i in range(20)])
    write_csv(tmp_path / "counts.csv", ["bag", "A", "B"], [[f"b{k}", k + 1, 4 - k] for k in (2, 0, 3, 1)])  # not in id order
    ds = load_table(str(tmp_path / "rows.csv"), bag_column="bag", proportions=str(tmp_path / "counts.csv"))
    assert ds.bag_names.tolist() == ["b0", "b1", "b2", "b3"]
    for b in range(4):
        k = int(ds.bag_names[b][1:])
        assert (ds.x_train[ds.bags.members(b), 0] == k).all()          # the bag's own rows ...
        np.testing.assert_allclose(ds.bags.proportions[b], [(k + 1) / 5, (4 - k) / 5])   # ... and its own counts


def _label_table(path, bags=10, rows=6, classes=("no", "yes")):
    rng = np.random.default_rng(0)
    write_csv(path, ["bag", "x1", "x2", "label"], [[f"b{b}", *rng.normal(size=2).round(4), classes[int(rng.integers(0, 2))]]
                                                   for b in range(bags) for _ in range(rows)])
    return path


def test_a_numeric_label_column_is_never_a_feature(tmp_path):
    """Without --features every other numeric column is a feature, but never the label column (a label
    column of numbers would hand the network the answer)."""
    ds = load_table(str(_label_table(tmp_path / "t.csv", classes=(0, 1))), bag_column="bag", label_column="label",
                    seed=0)
    assert ds.feature_names == ["x1", "x2"] and ds.x_train.shape[1] == 2


def test_the_held_out_bags_are_drawn_by_the_seed(tmp_path):
    """The held-out bags are a seeded random draw: other seeds hold out other bags (not always the first
    names), the same seed the same ones."""
    path = str(_label_table(tmp_path / "t.csv"))
    held = [frozenset(set(f"b{b}" for b in range(10)) - set(load_table(path, bag_column="bag", label_column="label",
                                                                       seed=s).bag_names.tolist())) for s in range(4)]
    assert all(len(h) == 2 for h in held) and len(set(held)) > 1
    assert held[0] == frozenset(set(f"b{b}" for b in range(10)) - set(load_table(
        path, bag_column="bag", label_column="label", seed=0).bag_names.tolist()))


def test_the_test_fraction_of_bags_is_rounded_not_floored(tmp_path):
    """--test-fraction 0.29 of 10 bags holds out 3 (round(2.9)), not 2."""
    ds = load_table(str(_label_table(tmp_path / "t.csv")), bag_column="bag", label_column="label",
                    test_fraction=0.29, seed=0)
    assert ds.test_bags.num_bags == 3 and ds.bags.num_bags == 7 and len(ds.y_test) == 18


def test_features_are_standardised_with_the_training_rows_only(tmp_path):
    ds = load_table(str(_label_table(tmp_path / "t.csv")), bag_column="bag", label_column="label", seed=0)
    np.testing.assert_allclose(ds.normalization["mean"], ds.x_train.mean(0, dtype=np.float64))
    np.testing.assert_allclose(ds.normalization["std"], ds.x_train.std(0, dtype=np.float64))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.integers(1, 4), st.sampled_from([1, 7, 64, 65536]), st.integers(0, 2 ** 32 - 1))
def test_feature_statistics_by_blocks_are_numpys(rows, features, block, seed):
    """The features' mean and std taken a block of rows at a time equal numpy's over the whole float32 matrix
    (to 1e-9, relative; columns far from 0 and constant ones included)."""
    from plotllp.data.tables import feature_statistics

    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(rows, features)) * rng.choice([0.0, 1e-3, 1.0, 1e3], features)
         + rng.choice([0.0, 1e4, -3e6], features)).astype(np.float32)
    mean, std = feature_statistics(x, block=block)
    np.testing.assert_allclose(mean, x.mean(0, dtype=np.float64), rtol=1e-9, atol=0)
    np.testing.assert_allclose(std, x.std(0, dtype=np.float64), rtol=1e-9, atol=1e-12 * np.abs(mean).max())


def test_the_proportions_file_may_name_its_bag_column_anywhere(tmp_path):
    """A proportions file with a column named like --bag-column takes its ids from there, even when it is not
    the first column."""
    write_csv(tmp_path / "rows.csv", ["clinic", "x1"], [[f"c{i % 3}", i] for i in range(12)])
    write_csv(tmp_path / "props.csv", ["A", "clinic", "B"], [[0.25 * k, f"c{k}", 1 - 0.25 * k] for k in range(3)])
    ds = load_table(str(tmp_path / "rows.csv"), bag_column="clinic", proportions=str(tmp_path / "props.csv"))
    assert ds.class_names == ["A", "B"]
    np.testing.assert_allclose(ds.bags.proportions, [[0, 1], [0.25, 0.75], [0.5, 0.5]])


def test_a_counts_file_may_hold_a_bag_of_one_row(tmp_path):
    """Counts are told from proportions by any bag's counts adding up to more than 1: a bag of a single row
    (counts 0, 1) among larger ones is still counts."""
    write_csv(tmp_path / "rows.csv", ["bag", "x1"], [[b, i] for i, b in enumerate(["a", "a", "a", "a", "b"])])
    write_csv(tmp_path / "counts.csv", ["bag", "no", "yes"], [["a", 3, 1], ["b", 0, 1]])
    ds = load_table(str(tmp_path / "rows.csv"), bag_column="bag", proportions=str(tmp_path / "counts.csv"))
    np.testing.assert_allclose(ds.bags.proportions, [[0.75, 0.25], [0, 1]])


def _reference_columns(path):
    """A CSV's columns as read_table returned them before it read in blocks: every row kept, split in Python."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    header = [h.strip() for h in rows[0]]
    return {h: [r[j].strip() for r in rows[1:] if r] for j, h in enumerate(header)}


CELL = st.text(alphabet=st.sampled_from(list("ab1.5-e ,\"\n\t")), max_size=6)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4).flatmap(lambda w: st.tuples(st.just(w), st.lists(st.one_of(
    st.lists(CELL, min_size=w, max_size=w), st.just([])), min_size=1, max_size=12))), st.integers(1, 4))
def test_read_table_reads_every_row_in_blocks_as_the_whole_file(tmp_path_factory, table, block):
    """Quoted commas and line breaks, blanks around values and blank lines (skipped): the columns read a
    block of rows at a time are those of the whole file split at once, at any block size."""
    from plotllp.data import tables as t

    width, rows = table
    if not any(rows):
        rows = rows + [["1"] * width]
    path = tmp_path_factory.mktemp("csv") / "t.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f" c{j} " for j in range(width)])
        for r in rows:
            w.writerow(r) if r else f.write("\r\n")
    expected = _reference_columns(path)
    assert t.read_table(str(path)) == expected
    with open(path, newline="", encoding="utf-8-sig") as f:
        assert t._read_csv(str(path), csv.reader(f), block=block) == expected


@pytest.mark.parametrize("text, msg", [
    ("a,b\n1,2\n\n3,4,5\n", "line 4 has 3 fields, the header 2"),
    ("a,b\n\"1\n2\",3\n4\n", "line 4 has 1 fields, the header 2"),     # a quoted line break: the file's line
    ("", "is empty (expected a header row"),
    ("\na,b\n1,2\n", "is empty (expected a header row"),
    ("a,b\n", "has a header but no rows"),
    ("a,b\n\n\n", "has a header but no rows"),
    ("a,a\n1,2\n", "column 'a' appears twice in the header"),
])
def test_malformed_csv_files_are_one_line_errors_that_name_the_line(tmp_path, text, msg):
    from plotllp.data.tables import read_table
    from plotllp.errors import DataFileError

    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(DataFileError, match=re.escape(msg)):
        read_table(str(tmp_path / "t.csv"))


def test_a_csv_file_that_is_not_utf8_is_a_data_file_error(tmp_path):
    from plotllp.data.tables import read_table
    from plotllp.errors import DataFileError

    (tmp_path / "t.csv").write_bytes("a,b\nm\u00fcnchen,2\n".encode("latin-1"))
    with pytest.raises(DataFileError, match="not a readable CSV file .UnicodeDecodeError"):
        read_table(str(tmp_path / "t.csv"))
    assert gc.isenabled()                    # the reader paused the garbage collector and restored it


@pytest.mark.parametrize("values, msg", [
    (["1", "2", "x"], "not numeric (row 3: 'x')"),
    (["1", "NA", "2"], "missing or non-finite value at row 2"),
    (["1", "2", "inf"], "missing or non-finite value at row 3"),
    (["1e500", "2"], "missing or non-finite value at row 1"),
    ([1.0, None], "missing or non-finite value at row 2"),          # Parquet's null
    ([1, 10 ** 400], "not numeric (row 2"),                        # a number float cannot hold
    ([1.0, [2.0]], "not numeric (row 2"),                          # a Parquet list cell
    ([1.0, datetime.date(2020, 1, 31)], "not numeric (row 2: 2020-01-31 (date))"),   # a Parquet date, not its repr
])
def test_a_numeric_column_names_its_first_bad_value(values, msg):
    from plotllp.data.tables import _numeric

    with pytest.raises(LLPInputError, match=re.escape(msg)):
        _numeric("t.csv", "x", values)


def test_a_numeric_column_is_python_floats_of_its_values():
    from plotllp.data.tables import _numeric

    values = ["1.5", "-2", "1e5", ".5", "+3", "1_000", " 7 ", "0.1"]
    out = _numeric("t.csv", "x", values)
    assert out.dtype == np.float64 and out.tolist() == [float(v) for v in values]
    assert _numeric("t.csv", "x", [True, 2, np.int64(3), 4.5]).tolist() == [1.0, 2.0, 3.0, 4.5]


@pytest.mark.parametrize("values, row", [(["a", "", "b"], 2), (["a", "b", "  "], 3), (["a", None], 2),
                                         (["a", float("nan")], 2)])
def test_a_missing_name_is_an_error_that_names_its_row(values, row):
    from plotllp.data.tables import _labels

    with pytest.raises(LLPInputError, match=f"bag column 'b' has no value at row {row}$"):
        _labels("t.csv", "b", values, "bag")
    assert _labels("t.csv", "b", ["NA", "none", "x"], "bag") == ["NA", "none", "x"]
    assert _labels("t.csv", "b", [1, 2.5, "x"], "bag") == ["1", "2.5", "x"]


ODD_CELLS = ["1", "-2.5", "3e2", " 4 ", "", "NA", "nan", "inf", "x", " y ", "007", "1_0"]


@settings(max_examples=100, deadline=None)
@example(case=([(0, "x"), (1, "NA"), (3, "1")], 260, 200), block=7)
@example(case=([(0, " y "), (2, "inf"), (0, " 4 ")], 180, 150), block=64)
@example(case=([(2, "x"), (3, "1"), (0, "1")], 260, 150), block=7)    # text: "x" is among the first 100 present
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(ODD_CELLS)),
                min_size=3, max_size=3).flatmap(
           lambda kinds: st.tuples(st.just(kinds), st.sampled_from([5, 99, 100, 101, 180, 260]),
                                   st.integers(0, 259))),
       st.sampled_from([1, 7, 64, 100, 65536]))
def test_columns_parsed_as_they_are_read_are_those_parsed_afterwards(tmp_path_factory, case, block):
    """read_table(text=...) decides each column's kind and parses it a block at a time; every column then
    gives load_table what the whole column read as text gives: the same kind (_is_numeric), the same numbers,
    or the same error naming the same row. Columns: numbers with one odd cell at a random row, after a run
    of blank rows of random length (the kind is then read from further down)."""
    from plotllp.data import tables as t

    kinds, n, at = case
    cells = ["1.5", "2", "-3e-1", "4"]
    columns = {}
    for j, (blank_rows, odd) in enumerate(kinds):
        col = [cells[i % 4] for i in range(n)]
        lead = min(n, [0, 50, 100, 150][blank_rows])
        col[:lead] = [""] * lead
        col[at % n] = odd
        columns[f"c{j}"] = col
    columns["bag"] = ["007" if i % 2 else "7" for i in range(n)]
    path = tmp_path_factory.mktemp("csv") / "t.csv"
    write_csv(path, list(columns), list(zip(*columns.values())))
    whole = t.read_table(str(path))
    with open(path, newline="", encoding="utf-8-sig") as f:
        parsed = t._read_csv(str(path), csv.reader(f), block=block, text=["bag"])
    assert parsed["bag"] == whole["bag"] == [c.strip() for c in columns["bag"]]
    for name in columns:
        if name == "bag":
            continue
        assert t._is_numeric(parsed[name]) == t._is_numeric(whole[name]), name
        if not t._is_numeric(whole[name]):
            assert parsed[name] == whole[name]
            continue
        try:
            expected = t._numeric(str(path), name, whole[name])
        except LLPInputError as e:
            with pytest.raises(LLPInputError, match=f"^{re.escape(str(e))}$"):
                t._numeric(str(path), name, parsed[name])
        else:
            assert t._numeric(str(path), name, parsed[name]).tolist() == expected.tolist()


def test_numeric_bag_ids_keep_their_spelling_through_train_and_predict(tmp_path):
    """Bag ids and labels that look like numbers stay text while the features are parsed as they are read:
    bags '7' and '007' are two bags, and predict writes each row's id as the table spells it."""
    rng = np.random.default_rng(0)
    ids = [b for b in ("7", "007", "8", "008") for _ in range(30)]
    x = rng.normal(size=(len(ids), 2)).round(4)
    write_csv(tmp_path / "t.csv", ["bag", "x1", "x2", "label"], [[b, *r, "2" if r[0] > 0 else "1"] for b, r in zip(ids, x)])
    ds = load_table(str(tmp_path / "t.csv"), bag_column="bag", label_column="label", test_fraction=0.0)
    assert ds.bags.num_bags == 4 and ds.class_names == ["1", "2"]           # (not '1.0': the labels stay text)
    assert ds.feature_names == ["x1", "x2"] and ds.x_train.dtype == np.float32
    r = cli("train", "--dataset", "table:t.csv", "--bag-column", "bag", "--label-column", "label", "--epochs1", "1",
            "--epochs2", "0", "--device", "cpu", "--out", "run", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = cli("predict", "--model", "run", "--input", "t.csv", "--output", "p.csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "p.csv", newline="") as f:
        assert [row["bag"] for row in csv.DictReader(f)] == ids


def test_a_bag_named_twice_in_the_proportions_file_is_an_error_that_names_it(tmp_path):
    """The first id seen again is named (a search that counted every id's copies took quadratic time)."""
    write_csv(tmp_path / "rows.csv", ["bag", "x1"], [[f"b{i % 4}", i] for i in range(12)])
    write_csv(tmp_path / "counts.csv", ["bag", "no", "yes"], [["b0", 1, 2], ["b3", 1, 2], ["b1", 2, 1], ["b3", 0, 3],
                                                              ["b0", 3, 0], ["b2", 1, 2]])
    with pytest.raises(LLPInputError, match="counts.csv: bag 'b3' appears twice$"):
        load_table(str(tmp_path / "rows.csv"), bag_column="bag", proportions=str(tmp_path / "counts.csv"))


def test_a_large_table_is_announced_before_it_is_read(tables, tmp_path, monkeypatch):
    """A table file of ANNOUNCE_TABLE_BYTES or more gets a line before the seconds of reading it; a smaller
    one does not."""
    from plotllp import pipeline
    from plotllp.config import make_config

    d, _ = tables
    size = (d / "rows.csv").stat().st_size
    for threshold, announced in ((size + 1, False), (size, True)):
        monkeypatch.setattr(pipeline, "ANNOUNCE_TABLE_BYTES", threshold)
        lines = []
        cfg = make_config({"dataset": f"table:{d / 'rows.csv'}", "bag_column": "clinic", "label_column": "label",
                           "epochs1": 1, "epochs2": 0, "device": "cpu", "out": str(tmp_path / str(threshold))})
        pipeline.train(cfg, log=lines.append)
        assert (lines[0] == f"plotllp: reading {d / 'rows.csv'} (0 MB)") == announced, lines[:2]
        assert lines[int(announced)].startswith(f"plotllp: table:{d / 'rows.csv'}: ")


def test_predictions_csv_writes_each_row_its_probabilities_and_most_probable_class():
    """Row numbers from 1, the bag ids as given (CSV-quoted where they hold commas or quotes), 6 decimals,
    the first class of the largest probability on ties; without a bag column, no bag field."""
    from plotllp.cli import predictions_csv

    probs = np.array([[0.1, 0.9], [0.5, 0.5], [0.6666666, 0.3333334]], dtype=np.float32)
    text = predictions_csv(probs, ["no", "yes"], {"site": ["a,b", 'say "hi"', "7"]})
    assert text.splitlines()[0] == "row,site,p_no,p_yes,predicted"
    rows = list(csv.reader(text.splitlines()[1:]))
    assert rows == [["1", "a,b", "0.100000", "0.900000", "yes"], ["2", 'say "hi"', "0.500000", "0.500000", "no"],
                    ["3", "7", "0.666667", "0.333333", "no"]]
    assert predictions_csv(probs[:1], ["no", "yes"]) == "row,p_no,p_yes,predicted\n1,0.100000,0.900000,yes\n"


def _rows(n=60, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)).round(4)
    return [[f"b{i % 6}", *r, "yes" if r[0] > 0 else "no"] for i, r in enumerate(x)]


def test_a_parquet_file_and_its_csv_give_the_same_bags_classes_and_features(tmp_path):
    """Blanks around text values are stripped in both formats (" yes" is the class "yes" in each); a pandas
    index (an unnamed CSV column, Parquet's __index_level_0__) is never a feature."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    rows = _rows()
    frame = pd.DataFrame(rows, columns=["bag", "x1", "x2", "label"])
    frame.loc[::7, "label"] = " " + frame.loc[::7, "label"]
    frame.loc[::5, "bag"] = frame.loc[::5, "bag"] + " "
    frame = frame.sample(frac=1, random_state=0)              # a shuffled index: pandas writes it to Parquet
    frame.to_csv(tmp_path / "t.csv")                          # ... and to a CSV, as a column with no name
    frame.to_parquet(tmp_path / "t.parquet")
    loaded = [load_table(str(tmp_path / f"t.{e}"), bag_column="bag", label_column="label", test_fraction=0.0)
              for e in ("csv", "parquet")]
    for ds in loaded:
        assert ds.feature_names == ["x1", "x2"] and ds.class_names == ["no", "yes"]
        assert ds.bag_names.tolist() == [f"b{i}" for i in range(6)]
    assert np.array_equal(loaded[0].x_train, loaded[1].x_train) and np.array_equal(loaded[0].y_train, loaded[1].y_train)


def test_a_boolean_column_is_a_feature_in_a_csv_as_in_parquet(tmp_path):
    """pandas writes a boolean column to a CSV as True and False: a feature of 1 and 0, as the same column is
    in Parquet (any case of the words; a missing or other value is a one-line error naming its row)."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    rows = _rows(n=300)                                       # over a block of 100 values decided as numeric
    frame = pd.DataFrame(rows, columns=["bag", "x1", "x2", "label"])
    frame["member"] = frame["x2"] > 0
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    loaded = [load_table(str(tmp_path / f"t.{e}"), bag_column="bag", label_column="label", test_fraction=0.0)
              for e in ("csv", "parquet")]
    for ds in loaded:
        assert ds.feature_names == ["x1", "x2", "member"]
    assert np.array_equal(loaded[0].x_train, loaded[1].x_train)
    text = (tmp_path / "t.csv").read_text().splitlines()
    assert text[1].endswith((",True", ",False"))
    mixed = [text[0]] + [line.replace("True", "TRUE") if i % 2 else line.replace("False", "false")
                         for i, line in enumerate(text[1:])]
    (tmp_path / "m.csv").write_text("\n".join(mixed) + "\n")
    ds = load_table(str(tmp_path / "m.csv"), bag_column="bag", label_column="label", test_fraction=0.0)
    assert np.array_equal(ds.x_train, loaded[0].x_train)
    # a column is numbers or words throughout: one of the other kind is an error naming its row, not 1 or 0
    for column, bad, msg in ((-1, "maybe", "column 'member' holds true and false, and 'maybe' at row 250"),
                             (-1, "5", "column 'member' holds true and false, and '5' at row 250"),
                             (-1, "", "column 'member' has a missing or non-finite value at row 250"),
                             (2, "TRUE", "column 'x2' is not numeric (row 250: 'TRUE')")):
        lines = list(text)
        cells = lines[250].split(",")
        cells[column] = bad
        lines[250] = ",".join(cells)
        (tmp_path / "b.csv").write_text("\n".join(lines) + "\n")
        for features in ("x1,x2,member", None):
            with pytest.raises(LLPInputError, match=re.escape(msg)):
                load_table(str(tmp_path / "b.csv"), bag_column="bag", label_column="label", features=features)
    # a column whose first rows mix the kinds is text, not a feature; named as one, the error names the odd one out
    for column, row, bad, msg in ((-1, 4, "5", "column 'member' holds true and false, and '5' at row 4"),
                                  (2, 1, "TRUE", "column 'x2' is not numeric (row 1: 'TRUE')")):
        lines = list(text)
        cells = lines[row].split(",")
        cells[column] = bad
        lines[row] = ",".join(cells)
        (tmp_path / "b.csv").write_text("\n".join(lines) + "\n")
        ds = load_table(str(tmp_path / "b.csv"), bag_column="bag", label_column="label", test_fraction=0.0)
        assert len(ds.feature_names) == 2
        with pytest.raises(LLPInputError, match=re.escape(msg)):
            load_table(str(tmp_path / "b.csv"), bag_column="bag", label_column="label", features="x1,x2,member")
    # proportions are numbers: true and false there stay an error
    write_csv(tmp_path / "p.csv", ["bag", "no", "yes"], [[f"b{i}", "false", "true"] for i in range(6)])
    with pytest.raises(LLPInputError, match=re.escape("column 'no' is not numeric (row 1: 'false')")):
        load_table(str(tmp_path / "t.csv"), bag_column="bag", proportions=str(tmp_path / "p.csv"))


@pytest.mark.parametrize("options, msg", [
    ({"label_column": "label", "features": "x1,label"}, "--features names the label column 'label'"),
    ({"label_column": "label", "features": "bag,x1"}, "--features names the bag column 'bag'"),
    ({"label_column": "bag"}, "--label-column 'bag' is also the bag column"),
    ({"label_column": "label", "bag_column": ","}, "--bag-column ',' names no columns"),
    ({"label_column": "label", "bag_column": "bag,bag"}, "--bag-column names a column twice"),
    ({"label_column": "label", "bag_column": "bag,code"}, "the bag column 'code' has a value with '|' at row 3 ('x|y')"),
])
def test_columns_that_cannot_play_their_part_are_one_line_errors(tmp_path, options, msg):
    rows = [[*r, "x|y" if i == 2 else f"c{i % 2}"] for i, r in enumerate(_rows())]
    write_csv(tmp_path / "t.csv", ["bag", "x1", "x2", "label", "code"], rows)
    with pytest.raises(LLPInputError, match=re.escape(msg)):
        load_table(str(tmp_path / "t.csv"), **{"bag_column": "bag", **options})


def test_a_bag_column_given_with_blanks_works_in_train_proportions_and_predict(tmp_path):
    """`--bag-column " bag,"` is the column bag everywhere: a proportions file's id column found by that name
    (not its first column), and predict's output has the bag column."""
    rows = _rows()
    write_csv(tmp_path / "t.csv", ["bag", "x1", "x2", "label"], rows)
    counts = {b: [sum(r[0] == b and r[3] == c for r in rows) for c in ("no", "yes")] for b in sorted({r[0] for r in rows})}
    write_csv(tmp_path / "counts.csv", ["no", "yes", "bag"], [[*v, b] for b, v in counts.items()])
    r = cli("train", "--dataset", "table:t.csv", "--bag-column", " bag,", "--proportions", "counts.csv", "--epochs1",
            "1", "--epochs2", "0", "--device", "cpu", "--out", "run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "plotllp: features: x1, x2" in r.stdout                   # chosen by plotllp: said, and recorded
    assert json.loads((tmp_path / "run" / "results.json").read_text())["data"]["features"] == ["x1", "x2"]
    r = cli("predict", "--model", "run", "--input", "t.csv", "--output", "p.csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == "row,bag,p_no,p_yes,predicted"


def test_predict_writes_every_bag_column_of_feature_bags(tmp_path):
    rows = [[*r, f"s{i % 2}"] for i, r in enumerate(_rows())]
    write_csv(tmp_path / "t.csv", ["bag", "x1", "x2", "label", "shift"], rows)
    r = cli("train", "--dataset", "table:t.csv", "--bag-column", "bag,shift", "--label-column", "label",
            "--features", "x1,x2", "--epochs1", "1", "--epochs2", "0", "--device", "cpu", "--out", "run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "plotllp: features:" not in r.stdout                       # given with --features: not repeated
    r = cli("predict", "--model", "run", "--input", "t.csv", "--output", "p.csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "p.csv", newline="") as f:
        got = list(csv.DictReader(f))
    assert [(g["bag"], g["shift"]) for g in got] == [(r[0], r[4]) for r in rows]


def test_read_errors_say_what_is_wrong(tmp_path, monkeypatch):
    from plotllp.data import tables
    from plotllp.data.tables import read_table
    from plotllp.errors import DataFileError

    (tmp_path / "long.csv").write_text("bag,note\nb1," + "x" * 200_000 + "\n")
    limit = csv.field_size_limit()
    assert read_table(str(tmp_path / "long.csv"))["note"] == ["x" * 200_000]      # csv's 131,072 limit lifted
    assert csv.field_size_limit() == limit                                        # ... and restored

    def broken(f):
        raise csv.Error("the reader's own words")
    monkeypatch.setattr(tables.csv, "reader", broken)
    with pytest.raises(DataFileError, match=r"long.csv is not a readable CSV file \(Error: the reader's own words\)$"):
        read_table(str(tmp_path / "long.csv"))
    monkeypatch.undo()
    (tmp_path / "latin.csv").write_bytes("a,b\nm\u00fcnchen,2\n".encode("latin-1"))
    with pytest.raises(DataFileError, match="not UTF-8 text; save it as UTF-8"):
        read_table(str(tmp_path / "latin.csv"))
    with pytest.raises(LLPInputError, match=r"^no table file named \(give table:FILE\)$"):
        read_table("")


def test_output_paths_that_name_a_folder_or_cannot_be_written_name_the_output(tmp_path):
    from plotllp.pipeline import atomic_write

    with pytest.raises(LLPInputError, match="it names a folder; give a file name"):
        atomic_write(str(tmp_path / "newdir") + "/", "x")
    assert not (tmp_path / "newdir").exists()
    with pytest.raises(OSError) as e:
        atomic_write("/proc/plotllp-test.csv", "x")              # no file can be made there, even by root
    assert e.value.filename == "/proc/plotllp-test.csv"


def test_a_proportions_file_that_misses_the_tables_bags_shows_some_of_them(tmp_path):
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _rows()
    pq.write_table(pa.table({"bag": [float(r[0][1:]) for r in rows], "x1": [r[1] for r in rows]}), tmp_path / "f.parquet")
    write_csv(tmp_path / "counts.csv", ["bag", "no", "yes"], [[i, 5, 5] for i in range(6)])
    with pytest.raises(LLPInputError, match=re.escape("bag '0', which has no rows in the data table (its bags: '0.0', "
                                                      "'1.0', '2.0', ...; bag ids are compared as text, and '0.0' is "
                                                      "not '0': write them alike in both files)")):
        load_table(str(tmp_path / "f.parquet"), bag_column="bag", proportions=str(tmp_path / "counts.csv"))
    pq.write_table(pa.table({"bag": [r[0].encode() for r in rows], "x1": [r[1] for r in rows]}), tmp_path / "b.parquet")
    write_csv(tmp_path / "names.csv", ["bag", "no", "yes"], [[f"b{i}", 5, 5] for i in range(6)])
    ds = load_table(str(tmp_path / "b.parquet"), bag_column="bag", proportions=str(tmp_path / "names.csv"))
    assert ds.bag_names.tolist() == [f"b{i}" for i in range(6)]                 # binary ids decoded, not b'b0'
