"""plotllp sweep / table / figure: the table from hand-made result files (mean (std), missing cells,
best marked), a sweep that skips finished cells and resumes one killed mid-run, and every figure."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

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
    # mean (std) with the sample std over seeds; the repeated seed 0 (folder e) is not counted twice
    assert lines["DLLP"] == "| DLLP | 80.00 (1.41) | 70.00 (0.00) |"
    assert lines["DLLP + PLOT"] == "| DLLP + PLOT | 84.00 (1.41) | 72.00 (0.00) |"
    assert lines["DLLP + PLOT (soft, mixup)"] == "| DLLP + PLOT (soft, mixup) | — | **75.00 (0.00)** |"
    assert lines["LLP-GAN"] == "| LLP-GAN | **90.00 (0.00)** | — |"
    assert "LLP-GAN + PLOT" not in md and "0.00 (0.00) | —" not in md.replace("70.00 (0.00)", "")
    order = [k for k in lines if k != "method"]
    assert order == ["DLLP", "DLLP + PLOT", "DLLP + PLOT (soft, mixup)", "LLP-GAN"]


def test_csv_and_latex(results):
    csv_text = render([str(results)], fmt="csv").splitlines()
    assert csv_text[0] == "dataset,method,bag_size,mean,std,seeds,best_in_column"
    assert "fashion_mnist,DLLP,16,80.00,1.41,2,0" in csv_text
    assert "fashion_mnist,LLP-GAN,64,,,0," in csv_text              # missing: empty, never zero
    tex = render([str(results)], fmt="latex")
    assert "\\textbf{90.00 (0.00)}" in tex and "LLP-GAN & \\textbf{90.00 (0.00)} & -- \\\\" in tex


def test_table_bad_input(tmp_path):
    from plotllp.errors import LLPInputError
    with pytest.raises(LLPInputError, match="no results.json"):
        render([str(tmp_path)])
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(LLPInputError, match="not a plotllp results.json"):
        render([str(tmp_path)])


def test_table_of_an_error_marks_the_lowest_and_unknown_metrics_are_named(tmp_path):
    from plotllp.errors import LLPInputError
    for name, first, mae_first, mae_final in [("a", "dllp", 0.05, 0.02), ("b", "gan", 0.03, 0.04)]:
        write_result(tmp_path / name, "digits", first, True, 16, 0, 0.5, 0.6)
        res = json.loads((tmp_path / name / "results.json").read_text())
        res["first_stage"]["bag_mae"], res["final"]["bag_mae"] = mae_first, mae_final
        res["first_stage"]["seconds"] = res["final"]["seconds"] = 12.5
        (tmp_path / name / "results.json").write_text(json.dumps(res))
    md = render([str(tmp_path)], metric="bag_mae")
    assert "bag mae (%)" in md and "best (lowest)" in md
    assert "| DLLP + PLOT | **2.00 (0.00)** |" in md and "| LLP-GAN | 3.00 (0.00) |" in md
    csv_rows = render([str(tmp_path)], fmt="csv", metric="bag_mae").splitlines()
    assert "digits,DLLP + PLOT,16,2.00,0.00,1,1" in csv_rows and "digits,DLLP,16,5.00,0.00,1,0" in csv_rows
    md = render([str(tmp_path)], metric="seconds")
    assert "seconds, mean" in md and "(%)" not in md and "12.50 (0.00)" in md      # not a fraction: as it is
    with pytest.raises(LLPInputError, match=r"reports 'foo'; metrics there: bag_mae, seconds, test_accuracy"):
        render([str(tmp_path)], metric="foo")


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
    (tmp_path / "g.yaml").write_text(GRID)
    cells = sweep.expand([str(tmp_path / "g.yaml")], seeds=[3, 4], overrides={"epochs2": 1})
    assert [n for n, _ in cells] == ["first_stage-dllp_labels-hard_seed-0_seed-3", "first_stage-dllp_labels-hard_seed-0_seed-4",
                                     "first_stage-dllp_labels-soft_seed-0_seed-3", "first_stage-dllp_labels-soft_seed-0_seed-4"]
    assert cells[1][1]["seed"] == cells[1][1]["bag_seed"] == cells[1][1]["data_seed"] == 4 and cells[1][1]["epochs2"] == 1
    (tmp_path / "z.yaml").write_text("grid:\n  bag: [{bag_size: 16, batch_bags: 16}, {bag_size: 64, batch_bags: 4}]\n")
    cells = sweep.expand([str(tmp_path / "z.yaml")])
    assert [(n, c["bag_size"], c["batch_bags"]) for n, c in cells] == [("bag-16-16", 16, 16), ("bag-64-4", 64, 4)]
    (tmp_path / "bad.yaml").write_text("grid: {bag_size: [16, -1]}\n")
    from plotllp.errors import LLPInputError
    with pytest.raises(LLPInputError, match="bag-size must be positive"):
        sweep.expand([str(tmp_path / "bad.yaml")])
    (tmp_path / "badbase.yaml").write_text("base: [1, 2]\ngrid: {bag_size: [16]}\n")
    with pytest.raises(LLPInputError, match="base must be a mapping"):
        sweep.expand([str(tmp_path / "badbase.yaml")])
    (tmp_path / "empty.yaml").write_text("grid: {}\n")
    with pytest.raises(LLPInputError, match="non-empty list"):
        sweep.expand([str(tmp_path / "empty.yaml")])
    (tmp_path / "esc.yaml").write_text("name: ../../x\ngrid: {bag_size: [16]}\n")
    names = [n for n, _ in sweep.expand([str(tmp_path / "esc.yaml"), str(tmp_path / "z.yaml")])]
    assert all("/" not in n and ".." not in n for n in names), names


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


def test_every_figure_writes_an_image(tmp_path, capsys):
    from plotllp.cli import main
    runs = []
    for labels in ("hard", "soft"):
        out = tmp_path / labels
        assert main(["train", "--dataset", "moons", "--epochs1", "3", "--epochs2", "2", "--labels", labels,
                     "--device", "cpu", "--quiet", "--out", str(out)]) == 0
        runs.append(str(out))
    for kind, args in (("boundaries", runs), ("curves", runs[:1]), ("labels", runs), ("bag-size", [str(tmp_path)])):
        stem = tmp_path / "figs" / kind
        assert main(["figure", kind, *args, "--out", str(stem)]) == 0, capsys.readouterr().err
        for ext in (".png", ".svg"):
            assert os.path.getsize(str(stem) + ext) > 5000, (kind, ext)
    with open(str(tmp_path / "figs" / "curves.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    r = cli("figure", "curves", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


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
