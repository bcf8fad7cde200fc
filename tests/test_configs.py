"""configs/paper: one YAML per cell of the paper's Tables 1 and 2 and per row of Table 3, kept in step
with their generator, each a valid configuration of the paper's setting; one runs end to end."""

import os
import pickle

import numpy as np
import pytest
import yaml

from plotllp.config import load_yaml, make_config
from plotllp.experiments.paper import ABLATION, BAG_SIZES, FIRST_STAGES, table_cells, write_configs
from plotllp.pipeline import train

ROOT = os.path.join(os.path.dirname(__file__), "..")
PAPER = os.path.join(ROOT, "configs", "paper")


def committed():
    return sorted(os.path.relpath(os.path.join(d, f), PAPER) for d, _, fs in os.walk(PAPER)
                  for f in fs if f.endswith(".yaml"))


def test_every_cell_has_a_file_equal_to_the_generated_one(tmp_path):
    cells = table_cells()
    assert len(cells) == 2 * len(BAG_SIZES) * len(FIRST_STAGES) * 2 + len(ABLATION) == 54
    assert committed() == sorted(cells)
    write_configs(str(tmp_path))
    for rel in cells:
        with open(os.path.join(PAPER, rel)) as a, open(tmp_path / rel) as b:
            assert a.read() == b.read(), f"configs/paper/{rel} is stale: run python -m plotllp.experiments.paper"


@pytest.mark.parametrize("rel", sorted(table_cells()))
def test_each_config_is_the_papers_setting(rel):
    cfg = make_config(yaml_settings=load_yaml(os.path.join(PAPER, rel)))
    model = "gan-d" if cfg.first_stage == "gan" else "conv-large"
    assert (cfg.model, cfg.lr, cfg.beta1, cfg.beta2, cfg.lr_halve_every) == (model, 1e-4, 0.5, 0.999, 100)
    assert cfg.augment == "crop-flip" and cfg.dataset in ("cifar10", "cifar100")
    assert (cfg.sce_alpha, cfg.sce_beta) == ((0.1, 1.0) if cfg.dataset == "cifar10" else (6.0, 0.1))


def write_cifar10(folder, n_per_batch=16, n_test=32, seed=0):
    """A small CIFAR-10 "python version" folder (random pixels and labels)."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else n_per_batch
        with open(os.path.join(folder, name), "wb") as fh:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"labels": rng.integers(0, 10, n).tolist()}, fh)
    with open(os.path.join(folder, "batches.meta"), "wb") as fh:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, fh)


def test_a_table3_config_trains_end_to_end_with_overrides(tmp_path):
    write_cifar10(tmp_path / "cifar-10-batches-py")
    settings = yaml.safe_load(open(os.path.join(PAPER, "table3", "cifar10_bag64_sce_ot.yaml")))
    cfg = make_config({"data_dir": str(tmp_path), "bag_size": 8, "epochs1": 1, "epochs2": 1, "model": "small-cnn",
                       "out": str(tmp_path / "run"), "quiet": True, "device": "cpu"}, settings)
    res = train(cfg, write=False).results
    assert [r["stage"] for r in res["history"]] == ["dllp", "plot"]
    assert res["config"]["pseudo_source"] == "ot" and res["config"]["lr"] == 1e-4
    assert 0 <= res["final"]["test_accuracy"] <= 1
