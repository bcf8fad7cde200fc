import contextlib
import os

import numpy as np
import pytest
import torch
from hypothesis import Phase, settings

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate])
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
torch.set_num_threads(1)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def kill_when_printed(cmd, line_start, *, env=None, group=False):
    """Start ``cmd`` and SIGKILL it (its whole process group with ``group``: a launcher and its
    workers) once it has printed a line starting with ``line_start``; the lines it printed."""
    import signal
    import subprocess

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=group)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(line_start):
            if group:                     # the launcher, and its workers (which torchrun starts in sessions of their own)
                workers = children(proc.pid)
                os.killpg(proc.pid, signal.SIGKILL)
                for pid in workers:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                wait_until_gone(workers)
            else:
                os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen[-5:])
    return seen


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux: read from /proc)."""
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(d))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, which a container's PID 1 may never reap, has stopped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until_gone(pids, timeout: float = 120.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        assert time.monotonic() < deadline, f"processes {[p for p in pids if alive(p)]} still run"
        time.sleep(0.05)
