"""The paper's experiments as configurations: every cell of Tables 1 and 2 and every row of Table 3.

Tables 1 (CIFAR-10) and 2 (CIFAR-100): bag sizes 16, 32, 64, 128; first stages DLLP, LLP-VAT,
LLP-GAN; each alone and followed by PLOT. Table 3: the ablation on CIFAR-10 at bag size 64 (DLLP
first stage; the second stage with CE or SCE, on the model's own averaged predictions or on OT
labels, with or without mixup). The training setting is the paper's (section 5.2; SPEC section 5):
conv-large, Adam (0.5, 0.999), lr 1e-4 halved every 100 epochs, crop + flip.

The paper does not state the number of epochs or the first stage's batch; these configurations use
400 first-stage epochs with 2 bags per step (the LLP-VAT reference code, whose protocol the paper's
baselines follow) and 100 PLOT epochs on batches of 128 instances, with hard (exact OT) labels. The LLP-GAN
cells use LLP-GAN's discriminator (``gan-d``) as the classifier, which PLOT then continues to train.
Every value is an ordinary setting: override it on the command line.

``python -m plotllp.experiments.paper [FOLDER]`` writes the YAML files (default ``configs/paper``).
"""

from __future__ import annotations

import os
import sys

import yaml

PROTOCOL = {"model": "conv-large", "lr": 1e-4, "beta1": 0.5, "beta2": 0.999, "lr_halve_every": 100,
            "epochs1": 400, "epochs2": 100, "batch_bags": 2, "batch_size": 128, "labels": "hard",
            "augment": "crop-flip", "ensemble": 5}

#: SCE weights of the reference code (Wang et al. 2019): CIFAR-10 (0.1, 1.0), CIFAR-100 (6.0, 0.1).
SCE = {"cifar10": {"sce_alpha": 0.1, "sce_beta": 1.0}, "cifar100": {"sce_alpha": 6.0, "sce_beta": 0.1}}

BAG_SIZES = (16, 32, 64, 128)
FIRST_STAGES = {"dllp": "DLLP", "vat": "LLP-VAT", "gan": "LLP-GAN"}

#: The paper's numbers (test accuracy %, mean of 5 runs), keyed (dataset, first stage, PLOT?) -> by bag size.
PAPER = {
    ("cifar10", "dllp", False): (87.69, 82.88, 71.11, 46.68),
    ("cifar10", "dllp", True): (90.01, 86.87, 79.69, 55.21),
    ("cifar10", "vat", False): (88.36, 83.01, 70.53, 51.25),
    ("cifar10", "vat", True): (89.87, 87.89, 79.33, 63.28),
    ("cifar10", "gan", False): (86.97, 83.13, 77.21, 68.37),
    ("cifar10", "gan", True): (89.15, 88.21, 84.14, 79.09),
    ("cifar100", "dllp", False): (61.95, 55.22, 41.21, 15.17),
    ("cifar100", "dllp", True): (65.20, 61.37, 49.55, 23.10),
    ("cifar100", "vat", False): (65.21, 58.65, 45.53, 21.25),
    ("cifar100", "vat", True): (65.39, 62.01, 52.75, 28.23),
    ("cifar100", "gan", False): (61.66, 56.78, 50.29, 33.65),
    ("cifar100", "gan", True): (65.41, 61.68, 55.66, 43.44),
}

#: Table 3 (CIFAR-10, bag 64, DLLP first stage): row name -> (settings, paper's accuracy).
ABLATION = {
    "baseline": ({"second_stage": "none"}, 71.11),
    "ce": ({"loss": "ce", "pseudo_source": "predictions"}, 72.27),
    "sce": ({"loss": "sce", "pseudo_source": "predictions"}, 74.21),
    "ce_ot": ({"loss": "ce", "pseudo_source": "ot"}, 78.57),
    "sce_ot": ({"loss": "sce", "pseudo_source": "ot"}, 79.69),
    "ce_ot_mixup": ({"loss": "ce", "pseudo_source": "ot", "mixup": True}, 84.39),
}
ABLATION_NAMES = {"baseline": "baseline (DLLP)", "ce": "L_CE", "sce": "L_SCE", "ce_ot": "L_CE + OT",
                  "sce_ot": "L_SCE + OT", "ce_ot_mixup": "L_CE + OT + MIXUP"}


def table_cells() -> dict[str, tuple[dict, str]]:
    """``relative path -> (settings, description)`` for every cell of Tables 1 and 2 and Table 3."""
    cells = {}
    for table, dataset in (("table1", "cifar10"), ("table2", "cifar100")):
        for i, bag in enumerate(BAG_SIZES):
            for first, name in FIRST_STAGES.items():
                for plot in (False, True):
                    settings = {"dataset": dataset, "bag_size": bag, "first_stage": first,
                                "second_stage": "plot" if plot else "none", **PROTOCOL, **SCE[dataset]}
                    if first == "gan":          # LLP-GAN's classifier is its discriminator; PLOT continues it
                        settings["model"] = "gan-d"
                    paper = PAPER[(dataset, first, plot)][i]
                    method = name + (" + PLOT" if plot else "")
                    cells[f"{table}/{dataset}_bag{bag}_{first}_{'plot' if plot else 'none'}.yaml"] = (
                        settings, f"Table {table[-1]}: {dataset}, bag size {bag}, {method}; paper: {paper:.2f}")
    for row, (extra, paper) in ABLATION.items():
        settings = {"dataset": "cifar10", "bag_size": 64, "first_stage": "dllp", "second_stage": "plot",
                    **PROTOCOL, **SCE["cifar10"], "mixup": False, **extra}
        cells[f"table3/cifar10_bag64_{row}.yaml"] = (
            settings, f"Table 3 (ablation, CIFAR-10, bag size 64): {ABLATION_NAMES[row]}; paper: {paper:.2f}")
    return cells


def write_configs(folder: str) -> list[str]:
    paths = []
    for rel, (settings, about) in table_cells().items():
        path = os.path.join(folder, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(f"# {about}\n# generated by `python -m plotllp.experiments.paper`; run with\n"
                    f"#   plotllp train --config {os.path.join('configs/paper', rel)} --data-dir DATA --out runs/...\n")
            yaml.safe_dump(settings, f, sort_keys=False)
        paths.append(path)
    return paths


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("configs", "paper")
    print(f"wrote {len(write_configs(out))} files under {out}")
