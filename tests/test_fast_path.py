"""The GPU fast path's pieces, checked on CPU: the exact OT overlapped with prediction gives the same
labels as all bags at once; the epoch's bag batches computed in one pass are the per-batch ones;
``--compile`` trains, and where torch.compile cannot build code it stops with one line."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from plotllp.bags import sized_bags
from plotllp.engine import Evaluator, LLPData, compile_failure, overlapped_exact_labels, predict_proba
from plotllp.errors import TrainingDivergedError
from plotllp.ot import pseudo_labels
from plotllp.stages import DLLP, PLOT


def small_data(seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, size=600)
    x = rng.normal(size=(600, 6)).astype(np.float32) + y[:, None]
    sizes = np.diff(np.concatenate([[0], np.sort(rng.choice(np.arange(1, 600), 19, replace=False)), [600]]))
    bags = sized_bags(y, sizes, num_classes=4, seed=seed)
    return LLPData(x, bags, "cpu", hidden_labels=y)


@pytest.mark.parametrize("chunk_rows, lookahead", [(100, 1), (100, 2), (1, 3), (10_000, 2)])
def test_overlapped_exact_labels_equal_all_bags_at_once(chunk_rows, lookahead):
    data = small_data()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    probs, labels, ot_seconds = overlapped_exact_labels(model, data, chunk_rows=chunk_rows, lookahead=lookahead)
    ref_probs = predict_proba(model, data.x[data.members])
    ref = pseudo_labels(ref_probs, data.member_bag, data.proportions, hard=True)
    torch.testing.assert_close(probs, ref_probs)
    assert torch.equal(labels, ref.float()) and ot_seconds > 0
    counts = torch.zeros(data.num_bags, 4).index_add_(0, data.member_bag, labels)
    torch.testing.assert_close(counts, torch.from_numpy(data.bags.counts).float())   # every bag's counts met


def test_overlapped_exact_labels_stop_at_non_finite_predictions():
    """A later chunk of non-finite predictions stops the relabelling with the one-line divergence error."""
    data = small_data()

    class NaNAfter(torch.nn.Module):        # finite for the first chunk's rows, NaN after
        def forward(self, x):
            out = x[:, :4].clone()
            out[x[:, 5] > 100] = float("nan")
            return out

    data.x[data.members[300:], 5] = 1000.0
    with pytest.raises(TrainingDivergedError, match="training-set predictions contain NaN"):
        overlapped_exact_labels(NaNAfter(), data, chunk_rows=100)


def test_plot_with_and_without_overlap_trains_identically():
    runs = []
    for overlap in (False, True):
        data = small_data(1)
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
        h = PLOT(3, batch_size=32, overlap=overlap).fit(model, data, log=None, seed=0)
        runs.append([p.detach().clone() for p in model.parameters()])
        assert len(h) == 3
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_first_stage_diagnostics_with_and_without_overlap_are_identical(monkeypatch):
    """The evaluator's training-set diagnostics of a first stage solve the exact OT overlapped with the
    prediction pass on CUDA (forced here on the CPU): the same rows as solved after it."""
    import plotllp.engine

    calls = []
    monkeypatch.setattr(plotllp.engine, "overlapped_exact_labels",
                        lambda *a, **k: calls.append(1) or overlapped_exact_labels(*a, **k))
    histories = []
    for overlap in (False, True):
        data = small_data(3)
        rng = np.random.default_rng(3)
        y_test = rng.integers(0, 4, size=200)
        x_test = rng.normal(size=(200, 6)).astype(np.float32) + y_test[:, None]
        evaluator = Evaluator(x_test, y_test, 20, 0, 4, "cpu")
        evaluator.overlap = overlap
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
        h = DLLP(3, batch_bags=4).fit(model, data, evaluator=evaluator, log=None, seed=0)
        histories.append([{k: v for k, v in row.items() if "seconds" not in k} for row in h])
    assert len(calls) == 3                                  # every epoch of the second run overlapped
    assert histories[0] == histories[1]
    assert all("train_acc_ot_ensemble" in row for row in histories[1])


def test_epoch_bag_batches_equal_per_batch_selection():
    data = small_data(2)
    stage = DLLP(1, batch_bags=3)
    batches = list(stage.bag_batches(data, np.random.default_rng(5)))
    order = np.random.default_rng(5).permutation(data.num_bags)
    assert len(batches) == stage.bag_steps(data) == 7
    for i, (x, local, props) in enumerate(batches):
        sel = torch.from_numpy(order[3 * i:3 * i + 3])
        pos, loc = data.bag_members(sel)
        assert torch.equal(x, data.x[data.members[pos]]) and torch.equal(local, loc)
        assert torch.equal(props, data.proportions[sel])


def test_compile_trains(tmp_path):
    out = tmp_path / "c"
    r = subprocess.run([sys.executable, "-m", "plotllp", "train", "--dataset", "moons", "--epochs1", "2", "--epochs2",
                        "1", "--compile", "--device", "cpu", "--out", str(out)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["compile"] is True and res["final"]["test_accuracy"] > 0.5
    state = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    assert not any(k.startswith("_orig_mod") for k in state)           # weights saved under the plain names


def test_compile_failure_is_one_line(tmp_path):
    """A machine where torch.compile cannot build code (here: no C++ compiler for the CPU) gets a one-line
    error naming what is missing, not torch's traceback."""
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache"),
           "TORCHINDUCTOR_FX_GRAPH_CACHE": "0"}
    r = subprocess.run([sys.executable, "-m", "plotllp", "train", "--dataset", "moons", "--epochs1", "1", "--epochs2",
                        "1", "--compile", "--device", "cpu", "--out", str(tmp_path / "c")], capture_output=True,
                       text=True, timeout=600, env=env)
    assert r.returncode == 2
    assert r.stderr.startswith("plotllp: error: --compile: ") and r.stderr.count("\n") == 1, r.stderr[-2000:]
    assert "InvalidCxxCompiler" in r.stderr and "Traceback" not in r.stderr


def test_compile_failure_reads_torch_backend_errors():
    from torch._dynamo.exc import BackendCompilerFailed

    err = BackendCompilerFailed(lambda *a: None, RuntimeError("no Triton here\nmore detail"), None)
    assert compile_failure(err) == "RuntimeError: no Triton here"
    assert compile_failure(ValueError("not a compile error")) is None


def test_gpu_benchmark_script_runs_on_cpu(tmp_path):
    """benchmarks/gpu.py, which runs on a lent GPU with little time to spare, works end to end (its CPU
    check: tiny synthetic data) and writes a row with all three stages and the OT columns."""
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "gpu.py"), "--device", "cpu", "--synthetic",
                          "--train-size", "256", "--test-size", "64", "--models", "small-cnn", "--compile", "off",
                          "--epochs", "1", "--adam", "foreach", "fused", "--out-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads((tmp_path / "gpu_cpu_check.json").read_text())
    assert [r["adam"] for r in rows] == ["foreach", "fused"] and not any("error" in r for r in rows)
    for row in rows:
        for kind in ("supervised", "dllp", "plot"):
            assert row[kind]["images_per_second"] > 0
        assert row["plot"]["relabel_seconds"] >= row["plot"]["ot_seconds"] >= 0
    report = (tmp_path / "gpu_cpu_check.md").read_text()
    assert "| small-cnn | off |" in report and "| small-cnn | off, fused Adam |" in report


def test_relabel_overlap_probe_runs_on_cpu(tmp_path):
    """benchmarks/relabel_overlap.py, prepared for a lent GPU, works end to end on a CPU (tiny synthetic data):
    its side pass predicts what the pass alone does, and it writes its table."""
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "relabel_overlap.py"), "--device", "cpu",
                          "--synthetic", "--train-size", "256", "--model", "small-cnn", "--rounds", "1",
                          "--out-dir", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    report = (tmp_path / "relabel_overlap_cpu.md").read_text()
    assert report.count("| 100.00% |") == 2         # both side-pass rows: the classes of the pass alone


@pytest.mark.parametrize("bad", [{"chunk_rows": 0}, {"lookahead": 0}, {"chunk_rows": 1.5}, {"lookahead": "2"},
                                 {"lookahead": None}, {"chunk_rows": True}])
def test_overlapped_exact_labels_refuse_empty_chunks_or_no_lookahead(bad):
    from plotllp.errors import LLPInputError

    model = torch.nn.Linear(6, 4)
    with pytest.raises(LLPInputError, match="must be a whole number of at least 1"):
        overlapped_exact_labels(model, small_data(), **bad)
