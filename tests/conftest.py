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
