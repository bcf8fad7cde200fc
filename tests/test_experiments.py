"""plotllp sweep / table / figure: the table from hand-made result files (mean (std), missing cells,
best marked), a sweep that skips finished cells and resumes one killed mid-run, and every figure."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from plotllp.errors import LLPInputError
from plotllp.experiments import sweep
from plotllp.experiments.table import render


def write_result(folder, dataset, first, plot, bag, seed, first_acc, final_acc=None, **cfg):
    os.makedirs(folder, exist_ok=True)
    config = {"dataset": dataset, "first_stage": first, "second_stage": "plot" if plot else "none",
              "bag_size": bag, "seed": seed, "bag_seed": seed, "epochs2": 5 if plot else 0, **cfg}
    res = {"config": config, "first_stage": {"test_accuracy": first_acc},
           "final": {"test_accuracy": final_acc if plot else first_acc}, "history": []}
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump(res, f)


@pytest.fixture
def results(tmp_path):
    # DLLP at bag 16 (2 seeds) and 64 (1 seed), with PLOT; LLP-GAN only at bag 16, no PLOT run at all
    write_result(tmp_path / "a", "fashion_mnist", "dllp", True, 16, 0, 0.79, 0.83)
    write_result(tmp_path / "b", "fashion_mnist", "dllp", True, 16, 1, 0.81, 0.85)
    write_result(tmp_path / "c", "fashion_mnist", "dllp", True, 64, 0, 0.70, 0.72)
    write_result(tmp_path / "d", "fashion_mnist", "gan", False, 16, 0, 0.90)
    write_result(tmp_path / "e" / "deep", "fashion_mnist", "dllp", True, 16, 0, 0.10, 0.10)   # same seed again
    write_result(tmp_path / "f", "fashion_mnist", "dllp", True, 64, 0, 0.70, 0.75, labels="soft", mixup=True)
    return tmp_path


def test_markdown_table_mean_std_missing_and_best(results):
    md = render([str(results)], fmt="md")
    lines = {ln.split(" | ")[0].lstrip("| "): ln for ln in md.splitlines() if ln.startswith("| ") and "---" not in ln}
    # mean (std) with the sample std over seeds (one seed: no std); the repeated seed 0 (folder e) is not
    # counted twice; f's first stage is c's (they differ in PLOT's settings only)
    assert lines["DLLP"] == "| DLLP | 80.00 (1.41) | 70.00 |"
    assert lines["DLLP + PLOT"] == "| DLLP + PLOT | 84.00 (1.41) | 72.00 |"
    assert lines["DLLP + PLOT (soft, mixup)"] == "| DLLP + PLOT (soft, mixup) | — | **75.00** |"
    assert lines["LLP-GAN"] == "| LLP-GAN | **90.00** | — |"
    assert "LLP-GAN + PLOT" not in md and "(0.00)" not in md
    order = [k for k in lines if k != "method"]
    assert order == ["DLLP", "DLLP + PLOT", "DLLP + PLOT (soft, mixup)", "LLP-GAN"]


def test_csv_and_latex(results):
    csv_text = render([str(results)], fmt="csv").splitlines()
    assert csv_text[0] == "dataset,method,bag_size,mean,std,seeds,best_in_column"
    assert "fashion_mnist,DLLP,16,80.00,1.41,2,0" in csv_text
    assert "fashion_mnist,LLP-GAN,64,,,0," in csv_text              # missing: empty, never zero
    assert "fashion_mnist,DLLP,64,70.00,0.00,1,0" in csv_text       # one seed: std 0 (the seeds column says 1)
    tex = render([str(results)], fmt="latex")
    assert "LLP-GAN & \\textbf{90.00} & -- \\\\" in tex


def test_table_bad_input(tmp_path):
    with pytest.raises(LLPInputError, match="no results.json"):
        render([str(tmp_path)])
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(LLPInputError, match="not a plotllp results.json"):
        render([str(tmp_path)])


def test_runs_in_progress_are_left_out_and_named(results, capsys):
    """A folder with checkpoint.pt holds a run in progress or interrupted (as sweep and train --resume take
    it): the table leaves it out, even beside a results.json (a run stopped before all its files were
    written), and says so on stderr."""
    from plotllp.cli import main

    (results / "b" / "checkpoint.pt").write_bytes(b"")                         # b: results, not finished
    os.makedirs(results / "g")
    (results / "g" / "checkpoint.pt").write_bytes(b"")                         # g: in its first epochs
    assert main(["table", str(results)]) == 0
    out, err = capsys.readouterr()
    assert "| DLLP | 79.00 | 70.00 |" in out                                 # a's seed 0 alone at bag 16
    assert err.startswith("plotllp: note: the table leaves out 2 runs in progress or interrupted (checkpoint.pt): ")
    assert f"{results / 'b'}, {results / 'g'} (plotllp train --resume" in err
    assert main(["table", str(results / "a")]) == 0 and capsys.readouterr().err == ""
    with pytest.raises(LLPInputError, match=r"no results.json of a finished run under .*\(2 folders with a run in "
                                            r"progress or interrupted, checkpoint.pt\)"):
        render([str(results / "g"), str(results / "b" / "results.json")])


def test_table_of_an_error_marks_the_lowest_and_unknown_metrics_are_named(tmp_path):
    for name, first, mae_first, mae_final in [("a", "dllp", 0.05, 0.02), ("b", "gan", 0.03, 0.04)]:
        write_result(tmp_path / name, "digits", first, True, 16, 0, 0.5, 0.6)
        res = json.loads((tmp_path / name / "results.json").read_text())
        res["first_stage"]["bag_mae"], res["final"]["bag_mae"] = mae_first, mae_final
        res["first_stage"]["seconds"] = res["final"]["seconds"] = 12.5
        (tmp_path / name / "results.json").write_text(json.dumps(res))
    md = render([str(tmp_path)], metric="bag_mae")
    assert "bag mae (%)" in md and "best (lowest)" in md
    assert "| DLLP + PLOT | **2.00** |" in md and "| LLP-GAN | 3.00 |" in md
    csv_rows = render([str(tmp_path)], fmt="csv", metric="bag_mae").splitlines()
    assert "digits,DLLP + PLOT,16,2.00,0.00,1,1" in csv_rows and "digits,DLLP,16,5.00,0.00,1,0" in csv_rows
    md = render([str(tmp_path)], metric="seconds")
    assert "seconds, one seed" in md and "(%)" not in md and "| DLLP | **12.50** |" in md   # not a fraction: as it is
    assert "| DLLP + PLOT | 25.00 |" in md                  # the first stage, then PLOT: both stages' time
    with pytest.raises(LLPInputError, match=r"reports 'foo'; metrics there: bag_mae, seconds, test_accuracy"):
        render([str(tmp_path)], metric="foo")


def test_runs_that_differ_in_a_setting_get_a_row_each_never_merged_or_dropped(tmp_path):
    """A grid over learning rates in one table: each learning rate its own row, named by it (before, one
    of them was dropped without a word). Where a run ran (device, data folder) does not tell runs apart:
    the same settings and seed again on a GPU are not a row of their own, nor counted twice."""
    for lr, seed, acc in [(1e-4, 0, 0.86), (1e-4, 1, 0.88), (1e-2, 0, 0.96), (1e-2, 1, 0.97)]:
        write_result(tmp_path / f"lr{lr}_s{seed}", "moons", "dllp", True, 25, seed, acc, acc + 0.01, lr=lr)
    write_result(tmp_path / "z_gpu", "moons", "dllp", True, 25, 0, 0.5, 0.6, lr=1e-2, device="cuda",
                 data_dir="/else/where")
    lines = [ln for ln in render([str(tmp_path)]).splitlines() if ln.startswith("| ") and "---" not in ln]
    assert lines[1:] == ["| DLLP [lr=0.0001] | 87.00 (1.41) |", "| DLLP [lr=0.01] | 96.50 (0.71) |",
                         "| DLLP + PLOT [lr=0.0001] | 88.00 (1.41) |", "| DLLP + PLOT [lr=0.01] | **97.50 (0.71)** |"]
    write_result(tmp_path / "epochs", "moons", "dllp", True, 25, 0, 0.9, 0.91, lr=1e-2, epochs1=30)
    write_result(tmp_path / "epochs_ce", "moons", "dllp", True, 25, 0, 0.9, 0.8, lr=1e-2, epochs1=30, loss="ce")
    md = render([str(tmp_path)])
    assert "| DLLP [epochs1=30, lr=0.01] | 90.00 |" in md and "| DLLP [epochs1=200, lr=0.01] | 96.50 (0.71) |" in md
    # a row of the other sweep alone says which it comes from, like the rows it could be mistaken for
    assert "| DLLP + PLOT (CE) [epochs1=30, lr=0.01] | 80.00 |" in md, md


def test_runs_that_compute_the_same_share_a_row(tmp_path):
    """Settings written two ways that compute the same (lr2 None or = lr; augment auto or what it resolves
    to; moons' default size; DLLP's exact chunking; a Dirichlet alpha of uniform bags) are one row; a PLOT
    run from another listed run's first stage (--init, --epochs1 0) adds no first-stage row of its own."""
    write_result(tmp_path / "a", "moons", "dllp", True, 25, 0, 0.80, 0.82)
    write_result(tmp_path / "b", "moons", "dllp", True, 25, 1, 0.90, 0.92, lr2=0.001, train_size=2000,
                 chunk_size=0, bag_alpha=0.3)
    write_result(tmp_path / "c", "cifar10", "dllp", True, 64, 0, 0.5, 0.6, augment="auto")
    write_result(tmp_path / "d", "cifar10", "dllp", True, 64, 1, 0.7, 0.8, augment="crop-flip")
    write_result(tmp_path / "e", "cifar10", "dllp", True, 64, 2, 0.7, 0.9, epochs1=0,
                 init=str(tmp_path / "d" / "first_stage.pt"), labels="soft")
    md = render([str(tmp_path)])
    assert "| DLLP | 85.00 (7.07) |" in md and "| DLLP | 60.00 (14.14) |" in md, md
    assert "| DLLP + PLOT | **87.00 (7.07)** |" in md and "| DLLP + PLOT (soft) | **90.00** |" in md and "[" not in md, md
    # the first stage's OT diagnostics depend on the OT's settings: there, hard and soft runs are apart
    for d, labels, v in (("a", "hard", 0.7), ("b", "soft", 0.9)):
        res = json.loads((tmp_path / d / "results.json").read_text())
        res["config"]["labels"] = labels
        res["first_stage"]["train_acc_ot"] = v
        (tmp_path / d / "results.json").write_text(json.dumps(res))
    md = render([str(tmp_path / "a"), str(tmp_path / "b")], metric="train_acc_ot")
    assert "| DLLP [labels=hard] | 70.00 |" in md and "| DLLP [labels=soft] | **90.00** |" in md, md


def test_table_rows_follow_the_papers_table_3(tmp_path):
    rows = [("baseline", {"second_stage": "none"}), ("ce", {"loss": "ce", "pseudo_source": "predictions"}),
            ("sce", {"pseudo_source": "predictions"}), ("ce_ot", {"loss": "ce"}), ("sce_ot", {}),
            ("ce_ot_mixup", {"loss": "ce", "mixup": True})]
    for name, cfg in reversed(rows):
        write_result(tmp_path / name, "cifar10", "dllp", cfg.pop("second_stage", "plot") == "plot", 64, 0, 0.7,
                     0.8, **cfg)
    order = [ln.split(" | ")[0][2:] for ln in render([str(tmp_path)]).splitlines()[4:]]
    assert order == ["DLLP", "DLLP + PLOT (no OT, CE)", "DLLP + PLOT (no OT)", "DLLP + PLOT (CE)", "DLLP + PLOT",
                     "DLLP + PLOT (CE, mixup)"]


def test_table_runs_on_their_own_bags_form_one_column(tmp_path):
    write_result(tmp_path / "a", "table:rows.csv", "dllp", True, 50, 0, 0.5, 0.6)
    write_result(tmp_path / "b", "table:rows.csv", "dllp", True, 16, 1, 0.7, 0.8)    # --bag-size does not apply
    md = render([str(tmp_path)])
    assert "| method | given bags |" in md and "| DLLP + PLOT | **70.00 (14.14)** |" in md
    r = cli("figure", "bag-size", str(tmp_path), "--out", str(tmp_path / "fig"))
    assert r.returncode == 2 and "nothing to plot against bag size" in r.stderr and "Traceback" not in r.stderr


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "plotllp", *args], capture_output=True, text=True, timeout=600, **kw)


GRID = """base: {dataset: moons, epochs1: 3, epochs2: 2, device: cpu}
grid:
  first_stage: [dllp]
  labels: [hard, soft]
  seeds: [0]
"""


def test_grid_expansion_names_and_validation(tmp_path):
    (tmp_path / "g.yaml").write_text(GRID.replace("  seeds: [0]\n", ""))
    cells = sweep.expand([str(tmp_path / "g.yaml")], seeds=[3, 4], overrides={"epochs2": 1})
    assert [n for n, _ in cells] == ["first_stage-dllp_labels-hard_seed-3", "first_stage-dllp_labels-hard_seed-4",
                                     "first_stage-dllp_labels-soft_seed-3", "first_stage-dllp_labels-soft_seed-4"]
    assert cells[1][1]["seed"] == cells[1][1]["bag_seed"] == cells[1][1]["data_seed"] == 4 and cells[1][1]["epochs2"] == 1
    # a folder named seed-0 that runs seed 3, or bag_size-25 that runs bag 64, never: an error instead
    (tmp_path / "s.yaml").write_text(GRID)
    with pytest.raises(LLPInputError, match="--seeds: the grid of .*s.yaml already varies the seeds"):
        sweep.expand([str(tmp_path / "s.yaml")], seeds=[3])
    with pytest.raises(LLPInputError, match="--set labels: the grid of .*s.yaml already varies labels"):
        sweep.expand([str(tmp_path / "s.yaml")], overrides={"labels": "soft"})
    with pytest.raises(LLPInputError, match="--set seed and --seeds both set the seeds"):
        sweep.expand([str(tmp_path / "g.yaml")], seeds=[0, 1], overrides={"seed": 5})
    (tmp_path / "dash.yaml").write_text("grid: {bag-size: [16, 64]}\n")
    with pytest.raises(LLPInputError, match="--set bag_size: the grid of .*dash.yaml already varies bag_size"):
        sweep.expand([str(tmp_path / "dash.yaml")], overrides={"bag_size": 32})
    bad_files = {"blank.yaml": ("# nothing yet\n", "blank.yaml holds no settings"),
                 "rep.yaml": ("grid: {lr: [0.1, 0.10]}\n", "the grid's values of lr repeat"),
                 "bad.yaml": ("grid: {bag_size: [16, -1]}\n", "bag-size must be positive"),
                 "badbase.yaml": ("base: [1, 2]\ngrid: {bag_size: [16]}\n", "base must be a mapping"),
                 "empty.yaml": ("grid: {}\n", "non-empty list")}
    for name, (text, match) in bad_files.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(LLPInputError, match=match):
            sweep.expand([str(tmp_path / name)])
    (tmp_path / "z.yaml").write_text("grid:\n  bag: [{bag_size: 16, batch_bags: 16}, {bag_size: 64, batch_bags: 4}]\n")
    cells = sweep.expand([str(tmp_path / "z.yaml")])
    assert [(n, c["bag_size"], c["batch_bags"]) for n, c in cells] == [("bag-16-16", 16, 16), ("bag-64-4", 64, 4)]
    (tmp_path / "esc.yaml").write_text("name: ../../x\ngrid: {bag_size: [16]}\n")
    names = [n for n, _ in sweep.expand([str(tmp_path / "esc.yaml"), str(tmp_path / "z.yaml")])]
    assert all("/" not in n and ".." not in n for n in names), names


def test_a_sweep_is_not_a_torchrun_job_and_its_cells_are_no_ranks(tmp_path):
    """Under torchrun every rank would run the whole sweep: an error. In a shell where torchrun's variables
    are set (a job script), the cells do not inherit them, or each would wait for peers."""
    (tmp_path / "g.yaml").write_text(GRID)
    ranked = {**os.environ, "WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
    for command in (["sweep", str(tmp_path / "g.yaml"), "--out", str(tmp_path / "a")], ["demo", "--out", str(tmp_path / "d")]):
        r = cli(*command, env=ranked)
        assert r.returncode == 2 and "start it without torchrun" in r.stderr, r.stderr
    leftover = {**ranked, "RANK": ""}                     # WORLD_SIZE and MASTER_* left in the environment
    r = cli("sweep", str(tmp_path / "g.yaml"), "--out", str(tmp_path / "runs"), "--jobs", "2", env=leftover)
    assert r.returncode == 0 and "all 2 cells finished" in r.stdout, r.stdout + r.stderr


def test_sweep_skips_finished_and_resumes_a_killed_cell(tmp_path):
    (tmp_path / "g.yaml").write_text(GRID)
    r = cli("sweep", str(tmp_path / "g.yaml"), "--out", str(tmp_path / "runs"), "--jobs", "2")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "2 to start" in r.stdout and "all 2 cells finished" in r.stdout
    r = cli("sweep", str(tmp_path / "g.yaml"), "--out", str(tmp_path / "runs"))
    assert "2 finished (skipped)" in r.stdout and "start " not in r.stdout
    # changed settings: the finished cells would be stale, so the sweep refuses (and runs nothing)
    r = cli("sweep", str(tmp_path / "g.yaml"), "--out", str(tmp_path / "runs"), "--set", "lr=0.5")
    assert r.returncode == 2 and "finished with other settings (lr: 0.001 -> 0.5)" in r.stderr, r.stderr
    # a file where a folder belongs: a one-line error, never "all cells finished"
    (tmp_path / "afile").write_text("x")
    r = cli("sweep", str(tmp_path / "g.yaml"), "--out", str(tmp_path / "afile"))
    assert r.returncode == 2 and "is a file" in r.stderr and "finished" not in r.stdout, r.stdout + r.stderr
    r = cli("sweep", str(tmp_path / "g.yaml"), "--out", str(tmp_path / "afile" / "sw"))     # under a file: one line
    assert r.returncode == 2 and r.stderr.strip().endswith("a part of its path is a file") and "FAILED" not in r.stdout

    # a longer cell, the sweep killed (SIGKILL, its whole process group) once the cell has a checkpoint
    (tmp_path / "long.yaml").write_text("dataset: moons\nepochs1: 400\nepochs2: 3\ndevice: cpu\n")
    cell = tmp_path / "runs2" / "long"
    proc = subprocess.Popen([sys.executable, "-m", "plotllp", "sweep", str(tmp_path / "long.yaml"), "--out",
                             str(tmp_path / "runs2")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.time() + 300
    while not (cell / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (cell / "checkpoint.pt").exists() and not (cell / "results.json").exists()
    r = cli("sweep", str(tmp_path / "long.yaml"), "--out", str(tmp_path / "runs2"))
    assert r.returncode == 0, r.stdout
    assert "1 to resume" in r.stdout and "resume long" in r.stdout
    assert "resuming the first stage after epoch" in (cell / "log.txt").read_text()
    res = json.loads((cell / "results.json").read_text())
    assert len(res["history"]) == 403 and not (cell / "checkpoint.pt").exists()


def test_every_figure_writes_an_image(tmp_path, capsys, monkeypatch):
    import numpy as np

    from plotllp import plotting
    from plotllp.cli import main
    from plotllp.data import moons
    runs = []
    for labels, noise in (("hard", "0.1"), ("soft", "0.3")):
        out = tmp_path / labels
        assert main(["train", "--dataset", "moons", "--noise", noise, "--epochs1", "3", "--epochs2", "2", "--labels",
                     labels, "--device", "cpu", "--quiet", "--out", str(out)]) == 0
        runs.append(str(out))
    drawn = []
    boundaries = plotting.decision_boundaries
    monkeypatch.setattr(plotting, "decision_boundaries", lambda panels, *a, **k: drawn.extend(panels) or boundaries(
        panels, *a, **k))
    for kind, args in (("boundaries", runs), ("curves", runs[:1]), ("labels", runs), ("bag-size", [str(tmp_path)])):
        stem = tmp_path / "figs" / kind
        assert main(["figure", kind, *args, "--out", str(stem) + (".svg" if kind == "boundaries" else "")]) == 0, \
            capsys.readouterr().err
        for ext in (".png", ".svg"):
            assert os.path.getsize(str(stem) + ext) > 5000, (kind, ext)
    with open(str(tmp_path / "figs" / "curves.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # runs on different data: each drawn on its own test set, its panels named by what differs
    # (before, every panel showed the last run's points and accuracies that no results.json held)
    assert [name for name, *_ in drawn] == ["DLLP [noise=0.1]", "DLLP + PLOT [noise=0.1]", "DLLP [noise=0.3]",
                                            "DLLP + PLOT (soft) [noise=0.3]"]
    for (*_, x, y), noise in zip(drawn, (0.1, 0.1, 0.3, 0.3)):
        assert np.array_equal(x, moons(noise=noise).x_test) and np.array_equal(y, moons(noise=noise).y_test)
    r = cli("figure", "curves", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    for out in ("", str(tmp_path) + os.sep, "."):
        r = cli("figure", "curves", runs[0], "--out", out)
        assert r.returncode == 2 and "names no file" in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_a_setting_added_later_at_its_default_is_not_a_change(tmp_path):
    """A finished cell saved before a setting existed (here vat_normalize) ran with its default: the sweep
    skips it rather than calling its settings changed; a different value is still a change."""
    from plotllp.config import make_config, saved_setting

    settings = {"dataset": "moons", "epochs1": 1, "epochs2": 1}
    old = make_config({**settings, "out": str(tmp_path)}).to_dict()
    del old["vat_normalize"]
    (tmp_path / "results.json").write_text(json.dumps({"config": old}))
    assert sweep.changed_settings(str(tmp_path), settings) == []
    assert sweep.changed_settings(str(tmp_path), {**settings, "vat_normalize": "reference"}) == [
        "vat_normalize: 'unit' -> 'reference'"]
    assert saved_setting(old, "vat_normalize") == "unit" and saved_setting(old, "epochs1") == 1
    # where the data lie (a trailing slash, another machine) and --download change nothing the cell computes
    assert sweep.changed_settings(str(tmp_path), {**settings, "data_dir": "data/", "download": True}) == []
    (tmp_path / "results.json").write_text("")
    with pytest.raises(LLPInputError, match="results.json in .* is unreadable .empty or corrupt.; remove"):
        sweep.changed_settings(str(tmp_path), settings)


def test_a_running_sweep_says_where_its_cells_are(tmp_path):
    (tmp_path / "c.yaml").write_text("dataset: moons\nepochs1: 60\nepochs2: 1\ndevice: cpu\n")
    lines = []
    assert sweep.run([str(tmp_path / "c.yaml")], str(tmp_path / "runs"), log=lines.append, progress_every=0.5) == 0
    progress = [ln for ln in lines if "running: c (" in ln]
    assert any("dllp epoch" in ln and "/60)" in ln for ln in progress), lines
    assert sweep._progress(str(tmp_path / "none.txt")) == "starting"


def test_a_closed_stdout_stops_a_sweep_as_ctrl_c_does(tmp_path):
    """`plotllp sweep ... | head -1`: once a line cannot be written, no further cell starts and the running
    one is interrupted (it resumes later), instead of every cell starting at once."""
    (tmp_path / "g.yaml").write_text("base: {dataset: moons, epochs1: 400, epochs2: 1, device: cpu}\n"
                                     "grid: {lr: [0.001, 0.002, 0.003]}\n")
    said = []

    def log(line):
        if said:
            raise BrokenPipeError(32, "Broken pipe")
        said.append(line)

    with pytest.raises(BrokenPipeError):
        sweep.run([str(tmp_path / "g.yaml")], str(tmp_path / "runs"), log=log)
    time.sleep(3)
    started = sorted(os.listdir(tmp_path / "runs"))
    assert started == ["lr-0.001"], started
    assert not (tmp_path / "runs" / "lr-0.001" / "results.json").exists()


def test_a_sweep_checks_its_data_before_any_cell_starts(tmp_path):
    """A wrong data_dir is one error before the sweep starts (and in --dry-run), not a failure of every cell."""

    (tmp_path / "g.yaml").write_text("base: {dataset: fashion_mnist}\ngrid: {bag_size: [16, 64]}\n")
    with pytest.raises(LLPInputError, match="cell bag_size-16: data folder .*nowhere does not exist"):
        sweep.run([str(tmp_path / "g.yaml")], str(tmp_path / "runs"), overrides={"data_dir": str(tmp_path / "nowhere")},
                  dry_run=True, log=lambda *a: None)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(LLPInputError, match="--data-dir .*afile is a file"):
        sweep.run([str(tmp_path / "g.yaml")], str(tmp_path / "runs"), overrides={"data_dir": str(tmp_path / "afile")},
                  log=lambda *a: None)
    assert not (tmp_path / "runs").exists()
    # a finished cell on a table (no test accuracy) reports what it has
    os.makedirs(tmp_path / "t")
    (tmp_path / "t" / "results.json").write_text(json.dumps(
        {"config": {"second_stage": "plot"}, "first_stage": {"val_bag_mae": 0.0312}, "final": {"val_bag_mae": 0.025}}))
    assert sweep._summary(str(tmp_path / "t")) == "first stage val bag MAE 0.0312, + PLOT 0.0250"


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_sweep_stopped_by_a_signal_stops_its_cells(tmp_path, how):
    """SIGTERM to the sweep alone (kill, a scheduler) stops its cells as Ctrl-C does; after SIGKILL, which
    the sweep cannot see, each cell stops by itself after its epoch. Either way the rerun resumes them."""
    from conftest import children, wait_until_gone

    (tmp_path / "g.yaml").write_text("name: g\nbase: {dataset: moons, epochs1: 100, epochs2: 2, device: cpu}\n"
                                     "grid:\n  seed: [0, 1]\n")
    cmd = [sys.executable, "-u", "-m", "plotllp", "sweep", str(tmp_path / "g.yaml"), "--out", str(tmp_path / "o"),
           "--jobs", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    logs = [tmp_path / "o" / f"seed-{i}" / "log.txt" for i in (0, 1)]
    deadline = time.time() + 120
    while not all(p.exists() and "dllp  epoch   3/" in p.read_text() for p in logs):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.1)
    cells = children(proc.pid)
    assert len(cells) == 2
    proc.send_signal(getattr(signal, how))
    proc.wait(timeout=60)
    wait_until_gone(cells, timeout=60)
    for p in logs:
        assert "plotllp: interrupted" in p.read_text() and "wrote" not in p.read_text()
    r = cli("sweep", str(tmp_path / "g.yaml"), "--out", str(tmp_path / "o"))
    assert r.returncode == 0 and "2 to resume" in r.stdout and "all 2 cells finished" in r.stdout, r.stdout + r.stderr


def test_figure_labels_name_only_the_settings_that_tell_runs_apart():
    """A setting of one first stage only (LLP-VAT's vat_xi) does not tell a DLLP run from an LLP-VAT run: the
    figure's panels and legends are named by their method alone, and by vat_xi where two LLP-VAT runs differ."""
    from plotllp.cli import _differences
    from plotllp.config import make_config

    cfgs = [make_config({"dataset": "moons", "first_stage": s}).to_dict() for s in ("dllp", "vat", "gan")]
    assert _differences(cfgs) == ["", "", ""]
    assert _differences(cfgs + [{**cfgs[1], "vat_xi": 1e-3}]) == ["", " [vat_xi=1e-06]", "", " [vat_xi=0.001]"]


# -- from a second mutation audit: each test below fails on a small bug that the others let pass --

def _rows(md):
    return [ln for ln in md.splitlines() if ln.startswith("| ") and "---" not in ln][1:]


def test_runs_of_another_noise_are_a_row_of_their_own_never_dropped(tmp_path):
    """moons' noise changes the data: two runs of one seed that differ in it are two rows, and neither is
    dropped as a repeat of the other."""
    write_result(tmp_path / "a", "moons", "dllp", False, 25, 0, 0.90, noise=0.1)
    write_result(tmp_path / "b", "moons", "dllp", False, 25, 0, 0.80, noise=0.3)
    assert _rows(render([str(tmp_path)])) == ["| DLLP [noise=0.1] | **90.00** |", "| DLLP [noise=0.3] | 80.00 |"]


def test_runs_of_one_seed_but_other_bags_are_two_seeds_of_a_cell(tmp_path):
    """A seed is the triple (seed, bag_seed, data_seed): runs that differ in bag_seed only are not repeats."""
    write_result(tmp_path / "a", "moons", "dllp", False, 25, 0, 0.90, bag_seed=0)
    write_result(tmp_path / "b", "moons", "dllp", False, 25, 0, 0.80, bag_seed=1)
    assert _rows(render([str(tmp_path)])) == ["| DLLP | **85.00 (7.07)** |"]


def test_a_plot_run_from_an_unlisted_model_keeps_its_first_stage_row(tmp_path):
    """--init of a run that is not in the table (--epochs1 0): no listed run gives its first stage, so the
    run's own first_stage metrics make the first-stage row."""
    write_result(tmp_path / "e", "cifar10", "dllp", True, 64, 0, 0.7, 0.9, epochs1=0,
                 init=str(tmp_path / "elsewhere" / "first_stage.pt"))
    assert _rows(render([str(tmp_path / "e")])) == ["| DLLP | 70.00 |", "| DLLP + PLOT | **90.00** |"]


def test_a_run_whose_plot_trained_no_epoch_has_no_plot_row(tmp_path):
    """--second-stage plot with --epochs2 0: PLOT never ran, so there is no "+ PLOT" row (its "final" is
    the first stage's model)."""
    write_result(tmp_path / "a", "cifar10", "dllp", True, 64, 0, 0.8, 0.8, epochs2=0)
    assert _rows(render([str(tmp_path)])) == ["| DLLP | **80.00** |"]


def test_settings_that_differ_only_between_bag_sizes_do_not_split_rows(tmp_path):
    """A learning rate tuned per bag size: each column has one setting, so the method keeps one row
    (rows are split by settings that differ among runs of one method *and bag size*)."""
    write_result(tmp_path / "a", "cifar10", "dllp", False, 16, 0, 0.8, lr=0.01)
    write_result(tmp_path / "b", "cifar10", "dllp", False, 64, 0, 0.7, lr=0.001)
    assert _rows(render([str(tmp_path)])) == ["| DLLP | **80.00** | **70.00** |"]


def test_bag_size_columns_are_in_numeric_order(tmp_path):
    for bag in (128, 16, 64):
        write_result(tmp_path / f"b{bag}", "cifar10", "dllp", False, bag, 0, 0.5)
    assert "| method | bag 16 | bag 64 | bag 128 |" in render([str(tmp_path)])


def test_a_flag_is_not_a_metric_a_table_can_show(tmp_path):
    """A metric whose value is a bool (a flag such as warm_start) is not averaged as 0/1."""

    write_result(tmp_path / "a", "cifar10", "dllp", False, 64, 0, 0.8)
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    res["first_stage"]["warm_start"] = True
    (tmp_path / "a" / "results.json").write_text(json.dumps(res))
    with pytest.raises(LLPInputError, match="reports 'warm_start'"):
        render([str(tmp_path)], metric="warm_start")


# -- from a third mutation audit (pipeline and sweep): each test below fails on a small bug that the others let pass --

def _finished_cell(folder, settings):
    """A folder holding a finished run's results.json with these settings (its config)."""
    from plotllp.config import make_config
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps({"config": make_config({**settings, "out": str(folder)}).to_dict()}))


def test_changed_settings_names_what_a_run_computes_and_not_how_it_ran(tmp_path):
    base = {"dataset": "moons", "epochs1": 3, "epochs2": 2}
    _finished_cell(tmp_path / "c", base)
    changes = {"seed": 1, "bag_seed": 1, "data_seed": 1, "epochs1": 4, "epochs2": 3, "lr": 0.01, "labels": "soft",
               "mixup": True, "first_stage": "vat", "bag_size": 25, "width": 32, "ensemble": 3, "sce_beta": 0.5}
    for key, value in changes.items():
        assert [c.split(":")[0] for c in sweep.changed_settings(str(tmp_path / "c"), {**base, key: value})] == [key]
    for key, value in {"device": "cpu", "quiet": True, "compile": True, "train_diagnostics": False}.items():
        assert sweep.changed_settings(str(tmp_path / "c"), {**base, key: value}) == []


def test_grid_seeds_set_all_three_seeds_and_files_prefix_their_cells(tmp_path):
    (tmp_path / "a.yaml").write_text("base: {dataset: moons}\ngrid: {seeds: [1, 2]}\n")
    cells = sweep.expand([str(tmp_path / "a.yaml")])
    assert [n for n, _ in cells] == ["seed-1", "seed-2"]
    assert [(c["seed"], c["bag_seed"], c["data_seed"]) for _, c in cells] == [(1, 1, 1), (2, 2, 2)]
    (tmp_path / "b.yaml").write_text("name: named\nbase: {dataset: moons}\ngrid: {seeds: [1, 2]}\n")
    names = [n for n, _ in sweep.expand([str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")])]
    assert names == ["a_seed-1", "a_seed-2", "named_seed-1", "named_seed-2"]
    for d in ("d1", "d2"):                         # two files of one name: their cells would share folders
        (tmp_path / d).mkdir()
        (tmp_path / d / "c.yaml").write_text("dataset: moons\n")
    with pytest.raises(LLPInputError, match="two cells would share the folder c"):
        sweep.expand([str(tmp_path / "d1" / "c.yaml"), str(tmp_path / "d2" / "c.yaml")])


def test_a_cell_with_a_checkpoint_is_interrupted_even_beside_results(tmp_path):
    """A cell killed after it wrote results.json but before it removed checkpoint.pt is resumed, not skipped."""
    _finished_cell(tmp_path / "c", {"dataset": "moons"})
    assert sweep.status(str(tmp_path / "c")) == "done"
    (tmp_path / "c" / "checkpoint.pt").write_bytes(b"")
    assert sweep.status(str(tmp_path / "c")) == "interrupted"
    assert sweep.status(str(tmp_path / "none")) == "new"


def test_with_several_gpus_each_job_sees_one_and_a_failed_cell_is_counted(tmp_path, monkeypatch, capsys):
    """Cells run as processes (faked here): with 2 GPUs, 2 jobs see CUDA devices 0 and 1; a cell whose process
    exits non-zero is named as failed and counted in the return value."""
    seen = []

    class FakeProcess:
        def __init__(self, cmd, stdout=None, stderr=None, env=None):
            self.cell = os.path.basename(os.path.dirname(cmd[cmd.index("--config") + 1]))
            seen.append((self.cell, env.get("CUDA_VISIBLE_DEVICES")))

        def wait(self):
            if self.cell.endswith("lr-0.5"):
                return 3
            _finished_cell(tmp_path / "out" / self.cell, {"dataset": "moons", "lr": 0.001})
            return 0

    monkeypatch.setattr(sweep, "_gpu_count", lambda: 2)
    monkeypatch.setattr(sweep.subprocess, "Popen", FakeProcess)
    (tmp_path / "g.yaml").write_text("base: {dataset: moons}\ngrid: {lr: [0.001, 0.5]}\n")
    failed = sweep.run([str(tmp_path / "g.yaml")], str(tmp_path / "out"), jobs=2)
    out = capsys.readouterr().out
    assert failed == 1 and "FAILED lr-0.5 (exit 3)" in out and "1 cell(s) failed: lr-0.5" in out
    assert sorted(seen) == [("lr-0.001", "0"), ("lr-0.5", "1")] or sorted(seen) == [("lr-0.001", "1"), ("lr-0.5", "0")]
