"""End-to-end runs of the ``plotllp`` command and its one-line errors (SPEC section 7)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from plotllp.cli import main
from plotllp.errors import LLPInputError

FAST = ["--epochs1", "4", "--epochs2", "2", "--device", "cpu"]


def run_cli(args, cwd=None):
    return subprocess.run([sys.executable, "-m", "plotllp", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


@pytest.mark.parametrize("labels, mixup", [("hard", "--no-mixup"), ("soft", "--mixup")])
def test_train_writes_results_json(tmp_path, labels, mixup):
    out = tmp_path / "run"
    r = run_cli(["train", "--dataset", "moons", "--bag-size", "50", "--bag-seed", "0", "--seed", "0",
                 "--first-stage", "dllp", "--second-stage", "plot", "--labels", labels, "--loss", "sce", mixup,
                 "--val-fraction", "0.1", "--out", str(out), *FAST])
    assert r.returncode == 0, r.stderr
    assert "test" in r.stdout and "results.json" in r.stdout
    res = json.loads((out / "results.json").read_text())
    cfg = res["config"]
    assert cfg["labels"] == labels and cfg["mixup"] == (mixup == "--mixup") and cfg["epochs1"] == 4
    assert {"ensemble", "reg", "sce_alpha", "lr", "batch_size"} <= set(cfg)      # defaults are recorded too
    for part in ("first_stage", "final"):
        assert 0 <= res[part]["test_accuracy"] <= 1 and res[part]["bag_mae"] >= 0 and res[part]["seconds"] > 0
    hist = res["history"]
    assert [h["stage"] for h in hist] == ["dllp"] * 4 + ["plot"] * 2
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4, 1, 2]
    for h in hist:
        for key in ("test_accuracy", "train_acc_model", "train_acc_ot", "train_acc_ot_ensemble", "val_bag_mae"):
            assert 0 <= h[key] <= 1
    assert res["final"]["test_accuracy"] == hist[-1]["test_accuracy"]
    assert res["first_stage"]["test_accuracy"] == hist[3]["test_accuracy"]
    assert res["data"]["bags"] == 36 and res["data"]["validation_bags"] == 4
    assert (out / "model.pt").exists() and (out / "config.yaml").exists()
    # one progress line per epoch
    assert sum(line.startswith(("dllp ", "plot ")) for line in r.stdout.splitlines()) == 6


def test_without_train_diagnostics_the_first_stage_trains_the_same(tmp_path):
    """--no-train-diagnostics leaves the training-set accuracies out of the first stage's epochs (no prediction
    pass over the training set nor OT solve there) and keeps PLOT's; the networks and every other number are the
    same."""
    outs = {}
    for flag in ("--train-diagnostics", "--no-train-diagnostics"):
        outs[flag] = tmp_path / flag.strip("-")
        assert main(["train", "--dataset", "moons", "--val-fraction", "0.1", "--quiet", "--out", str(outs[flag]), flag,
                     *FAST]) == 0
    on, off = (json.loads((outs[f] / "results.json").read_text()) for f in outs)
    diagnostics = ("train_acc_model", "train_acc_ot", "train_acc_ot_ensemble")
    assert off["config"]["train_diagnostics"] is False and on["config"]["train_diagnostics"] is True
    for a, b in zip(on["history"], off["history"]):
        assert all(k in a for k in diagnostics) and all((k in b) == (b["stage"] == "plot") for k in diagnostics)
        for key in ("loss", "test_accuracy", "bag_mae", "val_bag_mae", *(diagnostics if b["stage"] == "plot" else ())):
            assert a[key] == b[key], (a["stage"], a["epoch"], key)
    for name in ("first_stage.pt", "model.pt"):
        a, b = (torch.load(outs[f] / name, weights_only=True)["state_dict"] for f in outs)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_second_stage_none_and_yaml_config(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dataset: digits\nbag-size: 16\nsecond_stage: none\nepochs1: 3\nwidth: 32\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--epochs1", "2", "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["epochs1"] == 2          # the flag wins over the file
    assert res["config"]["width"] == 32 and res["config"]["dataset"] == "digits"
    assert res["final"] == res["first_stage"]
    assert res["data"]["num_classes"] == 10


def test_config_yaml_reproduces_run(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", "--quiet", "--out", str(a), *FAST]) == 0
    assert main(["train", "--quiet", "--config", str(a / "config.yaml"), "--out", str(b)]) == 0
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    assert ra["final"]["test_accuracy"] == rb["final"]["test_accuracy"]
    assert [h["loss"] for h in ra["history"]] == [h["loss"] for h in rb["history"]]


@pytest.mark.parametrize("args, code, msg", [
    (["train", "--dataset", "no-such-dataset"], 2, "unknown dataset 'no-such-dataset'"),
    (["train", "--no-such-option"], 2, "unrecognized arguments: --no-such-option (see plotllp train --help)"),
    (["train", "--labels", "medium"], 2, "invalid choice: 'medium'"),
    (["train", "--bag-size", "0"], 2, "bag-size must be positive"),
    (["train", "--bag-size", "5000"], 2, "bag size 5000 is larger than the 2000 instances"),
    (["train", "--device", "tpu"], 2, "device"),
    (["train", "--config", "missing.yaml"], 2, "config file missing.yaml does not exist"),
    (["train", "--config", "corrupt.yaml"], 2, "is not valid YAML"),
    (["train", "--config", "unknown.yaml"], 2, "unknown setting 'learning_rate'"),
    (["train", "--config", "badtype.yaml"], 2, "setting epochs1 must be int"),
    (["train", "--epochs1", "2", "--epochs2", "1", "--lr", "1e12"], 3, "diverged"),
    (["train", "--first-stage", "gan", "--gan-generator", "conv"], 2, "--gan-generator conv needs raw images"),
    (["train", "--augment", "crop"], 2, "--augment crop applies to image data sets"),
    (["train", "--noise", "nan"], 2, "noise must be a finite number"),
    (["train", "--beta1", "1.5"], 2, "beta1 must be in [0, 1)"),
    (["train", "--bag-column", "x"], 2, "--bag-column applies to table:FILE data only"),
    (["train", "--dataset", "digits", "--noise", "0.3"], 2, "--noise applies to --dataset moons only"),
    (["nonsense"], 2, "invalid choice: 'nonsense'"),
])
def test_bad_input_gives_one_line_error(tmp_path, args, code, msg):
    (tmp_path / "corrupt.yaml").write_text("epochs1: [1, 2\n")
    (tmp_path / "unknown.yaml").write_text("learning_rate: 0.1\n")
    (tmp_path / "badtype.yaml").write_text("epochs1: many\n")
    r = run_cli([*args, "--out", str(tmp_path / "o")] if args[0] == "train" else args, cwd=tmp_path)
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("plotllp: error:") and msg in lines[0], r.stderr


@pytest.mark.parametrize("argv", [["train", "--dataset", "no-such-dataset"], ["train", "--no-such-option"]])
def test_under_torchrun_only_rank_0_reports_bad_input(argv, monkeypatch, capsys):
    from plotllp.cli import main
    monkeypatch.setenv("WORLD_SIZE", "4")
    # every rank meets the error; rank 0 says it once (a bad data set also the first rank of another machine)
    seen = 1 if argv[1] == "--dataset" else 0
    for rank, local, lines in (("0", "0", 1), ("1", "1", 0), ("2", "0", seen), ("3", "1", 0)):
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("LOCAL_RANK", local)
        try:
            code = main(argv)
        except SystemExit as e:                  # argparse exits by itself
            code = e.code
        err = capsys.readouterr().err
        assert code == 2 and len([ln for ln in err.splitlines() if "error" in ln]) == lines, (rank, err)


def test_under_torchrun_a_rank_names_itself_in_errors_only_it_may_meet(capsys, monkeypatch):
    from plotllp.cli import _error_printer
    monkeypatch.setenv("LOCAL_RANK", "1")
    _error_printer(None)("plotllp: error: x")
    _error_printer(0)("plotllp: error: x")
    _error_printer(1)("plotllp: internal error: y")
    _error_printer(1)("plotllp: error: z", every_rank=False)
    assert capsys.readouterr().err.splitlines() == ["plotllp: error: x", "plotllp: error: x",
                                                    "plotllp (rank 1): internal error: y"]


def test_noise_in_a_saved_config_of_another_data_set_is_not_an_error(tmp_path):
    """Only --noise given on the command line is checked: config.yaml files hold every setting."""
    (tmp_path / "c.yaml").write_text("dataset: digits\nnoise: 0.3\nepochs1: 1\nepochs2: 0\n")
    r = run_cli(["train", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "o"), "--quiet"])
    assert r.returncode == 0, r.stderr


def test_a_finished_run_is_not_overwritten_unless_asked(tmp_path):
    out = str(tmp_path / "o")
    fast = ["train", "--epochs1", "1", "--epochs2", "1", "--quiet", "--out", out]
    assert run_cli(fast).returncode == 0
    before = (tmp_path / "o" / "results.json").read_text()
    r = run_cli([*fast, "--seed", "1"])
    assert r.returncode == 2 and "holds a finished run" in r.stderr and "--overwrite" in r.stderr
    assert (tmp_path / "o" / "results.json").read_text() == before
    r = run_cli([*fast, "--seed", "1", "--overwrite"])
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "o" / "results.json").read_text())["config"]["seed"] == 1
    from plotllp.config import make_config
    from plotllp.pipeline import train

    cfg = make_config({"epochs1": 1, "epochs2": 0, "quiet": True, "out": out, "seed": 2})   # from Python: the same
    with pytest.raises(LLPInputError, match=r"holds a finished run .*overwrite=True"):
        train(cfg)
    assert json.loads((tmp_path / "o" / "results.json").read_text())["config"]["seed"] == 1
    assert train(cfg, overwrite=True).results["config"]["seed"] == 2


def test_results_are_readable_by_others_and_never_overwritten_by_a_table(tmp_path, capsys):
    """Run files get the umask's mode (not mkstemp's private 0600); `table --output` refuses a run's own
    file (it would lose the run), as predict does."""
    import stat

    out = tmp_path / "o"
    umask = os.umask(0o022)
    try:
        assert main(["train", "--epochs1", "1", "--epochs2", "1", "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    finally:
        os.umask(umask)
    for name in ("results.json", "config.yaml", "model.pt", "first_stage.pt"):
        assert stat.S_IMODE(os.stat(out / name).st_mode) == 0o644, name
    before = (out / "results.json").read_bytes()
    capsys.readouterr()
    assert main(["table", str(out), "--output", str(out / "results.json")]) == 2
    assert "a file named results.json is read as a run's results" in capsys.readouterr().err
    assert (out / "results.json").read_bytes() == before
    assert main(["table", str(out), "--output", str(tmp_path / "results.json")]) == 2     # any results.json
    assert main(["table", str(out), "--output", str(out / "log.txt")]) == 2
    assert f"would overwrite the log.txt of the run in {out}" in capsys.readouterr().err
    assert main(["table", str(out), "--output", str(tmp_path / "t.md")]) == 0
    assert "| DLLP + PLOT |" in (tmp_path / "t.md").read_text()


def test_a_closed_pipe_ends_quietly(monkeypatch, capsys):
    """`plotllp data digits | head -1`: the reader goes away; no error line, the exit status of SIGPIPE."""
    import io

    class Closed(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Closed())
    assert main(["data", "digits"]) == 141
    assert capsys.readouterr().err == ""


def test_help_everywhere():
    for args in (["--help"], ["train", "--help"], ["demo", "--help"]):
        r = run_cli(args)
        assert r.returncode == 0 and "usage: plotllp" in r.stdout
    text = " ".join(run_cli(["train", "--help"]).stdout.split())
    assert "--first-stage" in text and "or table:FILE (your own CSV or Parquet file)" in text
    assert "pseudo-labels (default: off)" in text                                   # a flag's default


def test_demo_writes_figure(tmp_path, monkeypatch, capsys):
    import plotllp.cli as cli

    real = cli.make_config
    monkeypatch.setattr(cli, "make_config", lambda o, y=None: real({**o, "epochs1": 3, "epochs2": 2}, y))
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    png = out / "demo_moons.png"
    assert png.exists() and png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.path.exists(out / "results.json")
    capsys.readouterr()
    assert main(["demo", "--out", str(out), "--device", "cpu"]) == 0          # again: it says it replaces the first
    assert f"replacing the earlier demo in {out}" in capsys.readouterr().out
    assert main(["demo", "--out", str(out / "results.json" / "x"), "--device", "cpu"]) == 2   # before any training


def test_plot_only_from_an_earlier_first_stage(tmp_path):
    """A first stage trained elsewhere (here: an earlier run's first_stage.pt), then PLOT alone."""
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", "--quiet", "--second-stage", "none", "--out", str(a), *FAST]) == 0
    assert main(["train", "--quiet", "--init", str(a / "first_stage.pt"), "--epochs1", "0", "--epochs2", "2",
                 "--device", "cpu", "--out", str(b)]) == 0
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    # the PLOT-only run starts exactly where the first run's first stage ended
    assert rb["first_stage"]["test_accuracy"] == ra["first_stage"]["test_accuracy"]
    assert [h["stage"] for h in rb["history"]] == ["dllp", "plot", "plot"]


@pytest.mark.parametrize("content, msg", [(None, "does not exist"), (b"not a checkpoint", "is not a model file"),
                                          ("wrong-width", "do not fit the network")])
def test_bad_init_file(tmp_path, content, msg):
    path = tmp_path / "w.pt"
    if content == "wrong-width":
        import torch
        from plotllp.models import MLP
        torch.save(MLP(2, 2, width=8).state_dict(), path)
    elif content is not None:
        path.write_bytes(content)
    r = run_cli(["train", "--init", str(path), "--out", str(tmp_path / "o"), *FAST])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and msg in r.stderr, r.stderr


def test_device_names_are_checked(monkeypatch):
    from plotllp.engine import resolve_device

    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(LLPInputError, match="unknown device"):
        resolve_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(LLPInputError, match="CUDA is not available"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)     # a machine with two GPUs
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(LLPInputError, match=r"has 2 CUDA device\(s\), cuda:0 to cuda:1"):
        resolve_device("cuda:2")
    for bad, msg in ((None, "device must be auto, cpu"), ("mps", "not supported"), (torch.device("cuda:5"), "has 2")):
        with pytest.raises(LLPInputError, match=msg):
            resolve_device(bad)
    from plotllp.bags import uniform_bags
    from plotllp.engine import LLPData

    with pytest.raises(LLPInputError, match="unknown device 'gpu'"):                  # the data go through it too
        LLPData(np.zeros((4, 2)), uniform_bags(np.array([0, 1, 0, 1]), 2), "gpu")


def test_a_peer_that_stopped_is_named_as_such():
    """Under torchrun, a rank whose collective fails because another rank stopped says so, not "a bug"."""
    from plotllp.cli import _peer_gone

    assert _peer_gone(RuntimeError("[../gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:1234"))
    assert _peer_gone(RuntimeError("Connection reset by peer"))
    assert not _peer_gone(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


def test_a_network_collapsed_to_one_class_is_flagged(tmp_path, capsys):
    """--lr 1e3 leaves no NaN (Adam's steps are bounded, the proportion loss clamped) but a network that
    predicts one class: the run says so on stderr and records it; a sound run records no warning."""
    bad, good = tmp_path / "bad", tmp_path / "good"
    assert main(["train", "--dataset", "moons", "--lr", "1e3", "--quiet", "--out", str(bad), *FAST]) == 0
    err = capsys.readouterr().err
    assert err.startswith("plotllp: warning: the trained network predicts class") and "collapsed to one class" in err
    assert "class 'red'" in err or "class 'green'" in err          # moons' classes, by name
    warnings = json.loads((bad / "results.json").read_text())["warnings"]
    assert len(warnings) == 1 and "100.0% of the training rows" in warnings[0] and "50.0%" in warnings[0]
    assert main(["train", "--dataset", "moons", "--quiet", "--out", str(good), *FAST]) == 0
    assert capsys.readouterr().err == ""
    assert json.loads((good / "results.json").read_text())["warnings"] == []


def test_the_program_ignores_a_ctrl_c_once_its_command_has_ended(monkeypatch):
    """After the command (its files written), a Ctrl-C during the interpreter's teardown would only end in an
    atexit traceback or a status of -2: the ``plotllp`` program ignores it then, and exits with the status."""
    import signal

    import plotllp.cli as cli
    handler = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(cli, "main", lambda: 3)
    try:
        with pytest.raises(SystemExit) as stop:
            cli.entry()
        assert stop.value.code == 3 and signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, handler)
