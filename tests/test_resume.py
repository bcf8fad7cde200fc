"""Checkpoints: a run killed with SIGKILL mid-epoch and resumed ends with the same results as an
uninterrupted run (on CPU); bad or foreign checkpoints give one-line errors."""

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import kill_when_printed

ARGS = ["train", "--dataset", "moons", "--epochs1", "30", "--epochs2", "12", "--labels", "soft", "--mixup",
        "--val-fraction", "0.1", "--device", "cpu"]
METRICS = ("loss", "test_accuracy", "bag_mae", "val_bag_mae", "train_acc_model", "train_acc_ot", "train_acc_ot_ensemble")


def cli(*args):
    return subprocess.run([sys.executable, "-m", "plotllp", *args], capture_output=True, text=True, timeout=600)


def fail_writes(monkeypatch, pipeline, error, at_call):
    """Make the ``at_call``-th write to a file that ``pipeline``'s atomic writers open raise ``error``."""
    real_fdopen = pipeline.os.fdopen

    class Failing:
        def __init__(self, fh):
            self.fh, self.calls = fh, 0

        def write(self, data):
            self.calls += 1
            if self.calls == at_call:
                raise error
            return self.fh.write(data)

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.fh.__exit__(*exc)

    monkeypatch.setattr(pipeline.os, "fdopen", lambda fd, mode: Failing(real_fdopen(fd, mode)))


def kill_when(out, line_start):
    """Start the run (resuming if asked) and SIGKILL it once it has printed a line starting so."""
    return kill_when_printed([sys.executable, "-u", "-m", "plotllp", *ARGS, "--out", str(out), *(
        ["--resume"] if os.path.exists(os.path.join(out, "checkpoint.pt")) else [])], line_start)


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    r = cli(*ARGS, "--out", str(full))
    assert r.returncode == 0, r.stderr
    kill_when(cut, "dllp  epoch 12/30")                  # killed in the first stage ...
    assert os.path.exists(cut / "checkpoint.pt") and not os.path.exists(cut / "results.json")
    lines = kill_when(cut, "plot  epoch  5/12")           # ... and again in PLOT, after resuming
    assert any("resuming the first stage" in line for line in lines)
    import torch

    from plotllp.pipeline import atomic_torch_save
    ck = torch.load(cut / "checkpoint.pt", weights_only=True)      # PLOT's seconds before the kill, made long:
    ck["loop"]["elapsed"] += 1000.0                                # the resumed run's PLOT seconds count them
    atomic_torch_save(ck, str(cut / "checkpoint.pt"))
    r = cli(*ARGS, "--out", str(cut), "--resume")
    assert r.returncode == 0, r.stderr
    assert "resuming PLOT" in r.stdout
    a, b = (json.loads((d / "results.json").read_text()) for d in (full, cut))
    assert b["final"]["seconds"] > 1000 > a["final"]["seconds"] and b["first_stage"]["seconds"] < 1000
    for name in ("first_stage.pt", "model.pt"):             # both networks as the uninterrupted run's
        wa, wb = (torch.load(d / name, weights_only=True)["state_dict"] for d in (full, cut))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), name
    assert [(h["stage"], h["epoch"]) for h in a["history"]] == [(h["stage"], h["epoch"]) for h in b["history"]]
    for ha, hb in zip(a["history"], b["history"]):
        assert {k: ha[k] for k in METRICS} == {k: hb[k] for k in METRICS}
    for part in ("first_stage", "final"):
        assert a[part]["test_accuracy"] == b[part]["test_accuracy"] and a[part]["bag_mae"] == b[part]["bag_mae"]
    assert not os.path.exists(cut / "checkpoint.pt")      # removed once the run finished
    r = cli(*ARGS, "--out", str(cut), "--resume")
    assert r.returncode == 0 and "already finished" in r.stdout
    r = cli(*ARGS, "--labels", "hard", "--out", str(cut), "--resume")       # a finished run of other settings
    assert r.returncode == 2 and "finished with other settings (labels: 'soft' -> 'hard')" in r.stderr, r.stderr


def damage_first_tensor(path):
    """Overwrite bytes of the first tensor a torch file stores, leaving the archive intact (as a bad disk
    or copy does): four float32 values become 0.747, finite and plausible."""
    import zipfile
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("/data/0"))
    data = bytearray(path.read_bytes())
    head = info.header_offset
    start = head + 30 + int.from_bytes(data[head + 26:head + 28], "little") + int.from_bytes(data[head + 28:head + 30], "little")
    data[start:start + 16] = b"\x3f" * 16
    path.write_bytes(bytes(data))


def test_damaged_model_files_are_refused(tmp_path):
    from plotllp.errors import DataFileError
    from plotllp.pipeline import load_run
    out = tmp_path / "o"
    assert cli("train", "--epochs1", "2", "--epochs2", "1", "--device", "cpu", "--out", str(out)).returncode == 0
    load_run(str(out))
    damage_first_tensor(out / "first_stage.pt")
    with pytest.raises(DataFileError, match="first_stage.pt is damaged .*fails its checksum"):
        load_run(str(out))
    for name in ("model.pt", "first_stage.pt"):
        os.unlink(out / name)
    (out / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(DataFileError, match=r"holds no model.pt: its run is in progress or was interrupted "
                                            r"\(checkpoint.pt\); plotllp train --resume finishes it"):
        load_run(str(out))


@pytest.mark.parametrize("case, msg", [
    ("missing", "nothing to resume"),
    ("corrupt", "corrupt or unreadable"),
    ("foreign", "not a plotllp checkpoint"),
    ("changed", "was made with labels='hard', not 'soft'"),
    ("fresh-over-interrupted", "holds an interrupted run"),
    ("damaged", "is incomplete or damaged"),
    ("bit-flip", "fails its checksum"),
    ("table-changed", "has changed since the checkpoint"),
    ("table-missing", "is missing; the run in"),
])
def test_bad_checkpoints(tmp_path, case, msg):
    import torch

    out = tmp_path / "o"
    out.mkdir()
    args = ["train", "--epochs1", "3", "--epochs2", "1", "--device", "cpu", "--out", str(out), "--labels", "soft"]
    if case == "corrupt":
        (out / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    elif case == "foreign":
        torch.save({"state_dict": {}}, out / "checkpoint.pt")
    elif case == "bit-flip":
        torch.save({"format": "plotllp-checkpoint-1", "weights": torch.zeros(64)}, out / "checkpoint.pt")
        damage_first_tensor(out / "checkpoint.pt")
    elif case == "damaged":                     # a plotllp checkpoint without its training state
        torch.save({"format": "plotllp-checkpoint-1", "config": {}, "phase": "first"}, out / "checkpoint.pt")
    elif case in ("changed", "fresh-over-interrupted", "table-changed", "table-missing"):
        kill_args = ["train", "--epochs1", "200", "--device", "cpu", "--out", str(out), "--labels", "hard"]
        if case.startswith("table"):            # a table run; its file is then edited (or moved) before the resume
            from sklearn.datasets import make_moons
            x, y = make_moons(400, noise=0.2, random_state=0)
            rows = "\n".join(f"b{i // 20},{a:.4f},{b:.4f},{t}" for i, ((a, b), t) in enumerate(zip(x, y)))
            (tmp_path / "rows.csv").write_text("bag,x1,x2,label\n" + rows + "\n")
            table = ["--dataset", f"table:{tmp_path / 'rows.csv'}", "--bag-column", "bag", "--label-column", "label"]
            kill_args += table
            args = ["train", "--epochs1", "200", "--device", "cpu", "--out", str(out), "--labels", "hard", *table]
        proc = subprocess.Popen([sys.executable, "-u", "-m", "plotllp", *kill_args], stdout=subprocess.PIPE, text=True)
        for line in proc.stdout:
            if line.startswith("dllp  epoch   3/"):
                os.kill(proc.pid, signal.SIGKILL)
                break
        proc.wait(timeout=60)
        if case == "table-changed":
            text = (tmp_path / "rows.csv").read_text()
            (tmp_path / "rows.csv").write_text(text.replace(",0\n", ",1\n", 1))        # one label changed
        if case == "table-missing":
            (tmp_path / "rows.csv").rename(tmp_path / "moved.csv")
    r = cli(*args, *([] if case == "fresh-over-interrupted" else ["--resume"]))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and msg in r.stderr, r.stderr


@pytest.mark.parametrize("error", [KeyboardInterrupt(), OSError(28, "No space left on device")])
def test_an_interrupted_checkpoint_write_says_why(tmp_path, monkeypatch, error):
    """torch.save turns an exception of the file's write (Ctrl-C, a full disk) into a RuntimeError; the
    atomic writer raises the original instead (so the command says "interrupted", or names the full disk
    and the file), and leaves no temporary file and the previous checkpoint in place."""
    import torch

    from plotllp import pipeline
    path = tmp_path / "checkpoint.pt"
    pipeline.atomic_torch_save({"epoch": 1}, str(path))
    fail_writes(monkeypatch, pipeline, error, at_call=3)
    with pytest.raises(type(error)) as caught:
        pipeline.atomic_torch_save({"epoch": 2, "weights": torch.zeros(1000)}, str(path))
    if isinstance(error, OSError):
        assert caught.value.filename == str(path)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
    assert torch.load(path, weights_only=True) == {"epoch": 1}


def test_one_process_at_a_time_trains_into_a_folder(tmp_path):
    """A second `plotllp train` into a folder a run is writing is a one-line error (it would have trained
    beside it, both writing the same checkpoint); a killed run's temporary files are removed when the
    folder is next trained into; --overwrite removes the run it replaces once the new one has an epoch."""
    import time

    out = tmp_path / "o"
    base = ["train", "--dataset", "moons", "--device", "cpu", "--out", str(out)]
    assert cli(*base, "--epochs1", "2", "--epochs2", "1").returncode == 0
    (out / ".tmp-abcdcheckpoint.pt").write_bytes(b"left by a kill")
    first = subprocess.Popen([sys.executable, "-u", "-m", "plotllp", *base, "--epochs1", "400", "--overwrite"],
                             stdout=subprocess.PIPE, text=True)
    try:
        for line in first.stdout:
            if line.startswith("dllp  epoch   2/"):
                break
        while (out / "results.json").exists():         # the replaced run is gone once this one has an epoch
            time.sleep(0.05)
        assert not (out / "model.pt").exists() and (out / "checkpoint.pt").exists()
        assert not list(out.glob(".tmp-abcd*"))
        r = cli(*base, "--epochs1", "400", "--resume")
        assert r.returncode == 2 and r.stderr.strip() == (f"plotllp: error: another plotllp process is training into "
                                                          f"{out}; wait for it to end (or stop it), or choose another --out")
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)
    assert first.returncode == 128 + signal.SIGTERM and (out / "checkpoint.pt").exists()


def test_a_resume_under_other_threads_says_so_and_results_record_them(tmp_path):
    out = tmp_path / "o"
    cmd = [sys.executable, "-u", "-m", "plotllp", "train", "--dataset", "moons", "--epochs1", "200", "--epochs2", "2",
           "--device", "cpu", "--out", str(out)]
    kill_when_printed(cmd, "dllp  epoch   3/", env={**os.environ, "OMP_NUM_THREADS": "1"})
    r = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert r.returncode == 0, r.stderr
    assert "plotllp: note: the run resumes with other CPU arithmetic (threads 1 -> 2)" in r.stdout
    res = json.loads((out / "results.json").read_text())
    assert res["threads"] == 2 and res["cpu_capability"]


def test_a_folder_whose_file_system_has_no_locks_still_trains(tmp_path, monkeypatch):
    import errno

    from plotllp import pipeline
    from plotllp.config import make_config
    if pipeline.fcntl is None:
        pytest.skip("no advisory locks on this system")

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(pipeline.fcntl, "flock", no_locks)
    cfg = make_config({"dataset": "moons", "epochs1": 1, "epochs2": 1, "device": "cpu", "out": str(tmp_path / "o"),
                       "quiet": True})
    pipeline.train(cfg, log=lambda *a, **k: None)
    assert (tmp_path / "o" / "results.json").exists()


# -- from a third mutation audit (pipeline and sweep): each test below fails on a small bug that the others let pass --

def test_a_resume_may_change_how_a_run_executes_only(tmp_path):
    """Every setting outside RUN_SETTINGS is refused when it differs from the checkpoint's; RUN_SETTINGS are not."""
    import torch

    from plotllp import pipeline
    from plotllp.config import RUN_SETTINGS, make_config

    assert pipeline.RESUMABLE_CHANGES == RUN_SETTINGS
    base = {"dataset": "moons", "epochs1": 3, "epochs2": 2, "out": str(tmp_path)}
    path = str(tmp_path / "checkpoint.pt")
    torch.save({"format": pipeline.CHECKPOINT_FORMAT, "phase": "first", "config": make_config(base).to_dict(),
                "model": {}, "loop": {k: None for k in pipeline.LOOP_KEYS}}, path)
    assert pipeline.load_checkpoint(path, make_config(base))["phase"] == "first"
    for key, value in {"seed": 1, "bag_seed": 2, "epochs2": 5, "lr": 0.01, "width": 32, "mixup": True}.items():
        with pytest.raises(pipeline.LLPInputError, match=f"made with {key.replace('_', '-')}="):
            pipeline.load_checkpoint(path, make_config({**base, key: value}))
    for key, value in {"device": "cpu", "quiet": True, "train_diagnostics": False}.items():
        pipeline.load_checkpoint(path, make_config({**base, key: value}))


def test_a_tables_proportions_file_is_fingerprinted_for_resume(tmp_path):
    from plotllp.config import make_config
    from plotllp.pipeline import data_fingerprint

    (tmp_path / "rows.csv").write_text("bag,x\nb0,1\nb0,2\nb1,3\nb1,4\n")
    (tmp_path / "props.csv").write_text("bag,a,b\nb0,0.5,0.5\nb1,1,0\n")
    cfg = make_config({"dataset": f"table:{tmp_path / 'rows.csv'}", "bag_column": "bag",
                       "proportions": str(tmp_path / "props.csv")})
    before = data_fingerprint(cfg)
    assert set(before) == {str(tmp_path / "rows.csv"), str(tmp_path / "props.csv")}
    (tmp_path / "props.csv").write_text("bag,a,b\nb0,0.5,0.5\nb1,0,1\n")
    after = data_fingerprint(cfg)
    assert after[str(tmp_path / "props.csv")] != before[str(tmp_path / "props.csv")]
    assert after[str(tmp_path / "rows.csv")] == before[str(tmp_path / "rows.csv")]


def test_results_files_are_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """atomic_write (results.json, config.yaml): a write that fails leaves the old file as it was, no temporary."""
    from plotllp import pipeline

    path = tmp_path / "results.json"
    pipeline.atomic_write(str(path), '{"old": true}')
    fail_writes(monkeypatch, pipeline, OSError(28, "No space left on device"), at_call=1)
    with pytest.raises(OSError):
        pipeline.atomic_write(str(path), '{"new": true}')
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"] and path.read_text() == '{"old": true}'
