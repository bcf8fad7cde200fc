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
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen[-5:])
    return seen
