"""Every setting of a training run, in one place (the command line and YAML files share it).

Precedence, lowest first: the defaults below; the data set's preset (:data:`PRESETS`); a YAML file
(``--config``); flags given on the command line. ``results.json`` records the resolved values.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields

import yaml

from .errors import LLPInputError


def _opt(default, help, choices=None):
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class TrainConfig:
    # data and bags
    dataset: str = _opt("moons", "data set: moons, digits, mnist, fashion_mnist, cifar10, cifar100, svhn, or "
                                 "table:FILE (your own CSV or Parquet file)")
    data_dir: str = _opt("data", "folder of the data files (data sets read from disk)")
    download: bool = _opt(False, "fetch the data set's official files into --data-dir first (checksums verified)")
    data_seed: int = _opt(0, "seed of synthetic data and of train/test splits")
    noise: float = _opt(0.1, "two-moons noise (std of the Gaussian added to the points)")
    train_size: int | None = _opt(None, "use a fixed, seeded subset of this many training instances "
                                        "(two-moons: the number drawn, default 2000 = 40 bags of 50)")
    bag_column: str | None = _opt(None, "table:FILE data: the column naming each row's bag (a,b: the rows with "
                                        "equal values of several columns form a bag; its id joins them with |)")
    features: str | None = _opt(None, "table:FILE data: comma-separated feature columns (default: every other "
                                      "numeric column)")
    proportions: str | None = _opt(None, "table:FILE data: CSV of bag id + one column per class (proportions or counts)")
    label_column: str | None = _opt(None, "table:FILE data: instance labels to aggregate into the bags' proportions "
                                          "(experiments; a --test-fraction of the bags becomes the test set)")
    test_fraction: float = _opt(0.2, "table:FILE data with --label-column: fraction of the bags held out for testing")
    bag_size: int = _opt(50, "instances per bag (the bags --bags forms, and the test bags)")
    bags: str = _opt("uniform", "how bags are formed from the labelled data set (experiments): uniform random bags; "
                                "dirichlet (label-skewed, proportions ~ Dirichlet(--bag-alpha)); clustered (k-means "
                                "on the inputs); replacement (drawn with replacement)",
                     ["uniform", "dirichlet", "clustered", "replacement"])
    bag_alpha: float = _opt(1.0, "Dirichlet alpha of --bags dirichlet (small: few classes per bag)")
    bag_seed: int = _opt(0, "seed of the bag assignment (shared by every method compared)")
    val_fraction: float = _opt(0.0, "fraction of whole bags held out for validation (0: none)")
    augment: str = _opt("auto", "augmentation of image batches on the device: random crop with 4-pixel padding "
                                "(and horizontal flip); auto = crop-flip on CIFAR, none elsewhere",
                        ["auto", "none", "crop", "crop-flip"])
    # method
    first_stage: str = _opt("dllp", "first-stage LLP learner: DLLP, LLP-VAT or LLP-GAN", ["dllp", "vat", "gan"])
    second_stage: str = _opt("plot", "second stage: PLOT, or none", ["plot", "none"])
    labels: str = _opt("hard", "PLOT pseudo-labels: exact OT (hard) or entropic OT (soft)", ["hard", "soft"])
    loss: str = _opt("sce", "PLOT loss: symmetric cross-entropy or cross-entropy", ["sce", "ce"])
    mixup: bool = _opt(False, "mixup on the PLOT stage's inputs and pseudo-labels")
    pseudo_source: str = _opt("ot", "PLOT targets from OT, or the mean of the model's own recent predictions "
                                    "(the L_CE / L_SCE rows of the paper's Table 3)", ["ot", "predictions"])
    ensemble: int = _opt(5, "PLOT target = mean of the last k pseudo-labels (paper Fig. 3, TD_OT_5)")
    reg: float = _opt(1.0 / 25.0, "entropic regularisation 1/lambda of the soft labels")
    sce_alpha: float = _opt(0.1, "SCE weight of cross-entropy")
    sce_beta: float = _opt(1.0, "SCE weight of reverse cross-entropy")
    mixup_alpha: float = _opt(1.0, "mixup lambda ~ Beta(alpha, alpha)")
    vat_xi: float = _opt(1e-6, "LLP-VAT: size of the probe step of the power iteration (the reference's 1e-6; for "
                               "a network without dropout 1e-3 finds the adversarial direction: docs/method.md)")
    vat_eps: float | None = _opt(None, "LLP-VAT: size of the adversarial perturbation (default: the reference 6.0 "
                                       "for 32x32x3 normalised pixels, scaled by sqrt(input size / 3072))")
    vat_weight: float = _opt(0.05, "LLP-VAT: weight of the VAT loss after the ramp")
    vat_ramp: float = _opt(0.4, "LLP-VAT: fraction of the first stage over which the weight ramps up")
    vat_normalize: str = _opt("unit", "LLP-VAT: the perturbation's norm: unit (eps, as VAT defines it) or reference "
                                      "(LLP-VAT's code: eps ||g|| / (||g|| + 1e-8), far smaller; docs/method.md)",
                              ["unit", "reference"])
    gan_z_dim: int = _opt(100, "LLP-GAN: size of the generator's noise z ~ U[-1, 1]")
    gan_generator: str = _opt("auto", "LLP-GAN's generator: conv (the paper's, for images), mlp, or auto (mlp beside "
                                      "an MLP classifier, conv for images otherwise)", ["auto", "conv", "mlp"])
    # model
    model: str = _opt("mlp", "network (gan-d: LLP-GAN's discriminator for images)",
                      ["mlp", "small-cnn", "conv-large", "wrn-28-2", "gan-d"])
    width: int = _opt(64, "MLP hidden width")
    depth: int = _opt(3, "MLP hidden layers")
    init: str | None = _opt(None, "start from the weights in this file (model.pt or first_stage.pt of an earlier "
                                  "run, or a saved state_dict); with --epochs1 0, PLOT continues that model")
    # optimisation
    epochs1: int = _opt(200, "first-stage epochs")
    epochs2: int = _opt(100, "second-stage (PLOT) epochs")
    lr: float = _opt(1e-3, "Adam learning rate of the first stage")
    lr2: float | None = _opt(None, "Adam learning rate of the second stage (default: lr)")
    beta1: float = _opt(0.9, "Adam beta1 (the paper's image setting: 0.5)")
    beta2: float = _opt(0.999, "Adam beta2")
    weight_decay: float = _opt(0.0, "Adam weight decay")
    lr_halve_every: int = _opt(100, "halve the learning rate every this many epochs of a stage (0: never)")
    batch_bags: int = _opt(4, "first stage: whole bags per step (under torchrun: of all ranks together, a multiple "
                              "of their number)")
    batch_size: int = _opt(128, "second stage: instances per step (under torchrun: of all ranks together, a "
                                "multiple of their number)")
    chunk_size: int = _opt(16384, "DLLP: a step over more rows than this (huge bags) runs in exact chunks of this "
                                  "many rows, bounding memory (0: never)")
    # run
    seed: int = _opt(0, "seed of initialisation, minibatch order and mixup")
    device: str = _opt("auto", "auto, cpu, cuda or cuda:N")
    compile: bool = _opt(False, "train a torch.compile'd network (faster epochs on a GPU after a one-off "
                                "compilation; needs a C++ compiler for CPU code, Triton for CUDA)")
    out: str = _opt("runs/latest", "output folder (results.json, config.yaml, model.pt, first_stage.pt; checkpoint.pt "
                                   "while the run is unfinished)")
    quiet: bool = _opt(False, "print only the summary")
    train_diagnostics: bool = _opt(True, "where the training set's labels are known (experiments), record after "
                                         "every first-stage epoch the training-set accuracy of the model, of its OT "
                                         "labels and of their ensemble (Figures 3-4): a prediction pass and an OT "
                                         "solve per epoch, about a quarter of a Fashion-MNIST MLP epoch on a CPU; the "
                                         "trained network is the same without them. PLOT's epochs record them at no "
                                         "cost")

    def validate(self) -> "TrainConfig":
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise LLPInputError(f"{f.name.replace('_', '-')} must be one of {', '.join(choices)}, "
                                    f"got {getattr(self, f.name)!r}")
        positive = ("bag_size", "bag_alpha", "batch_bags", "batch_size", "ensemble", "width", "depth", "lr", "reg", "mixup_alpha",
                    "vat_xi", "gan_z_dim")
        for name in positive:
            if not getattr(self, name) > 0:
                raise LLPInputError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("epochs1", "epochs2", "lr_halve_every", "chunk_size"):
            if getattr(self, name) < 0:
                raise LLPInputError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.epochs1 == 0 and self.epochs2 == 0:
            raise LLPInputError("epochs1 and epochs2 are both 0: nothing to train")
        if not 0 <= self.test_fraction < 1:
            raise LLPInputError(f"test-fraction must be in [0, 1), got {self.test_fraction}")
        if not 0 <= self.val_fraction < 1:
            raise LLPInputError(f"val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.vat_eps is not None and not self.vat_eps > 0:
            raise LLPInputError(f"vat-eps must be positive, got {self.vat_eps}")
        if self.vat_weight < 0 or not 0 <= self.vat_ramp <= 1:
            raise LLPInputError(f"vat-weight must be >= 0 and vat-ramp in [0, 1], got {self.vat_weight}, {self.vat_ramp}")
        if self.lr2 is not None and not self.lr2 > 0:
            raise LLPInputError(f"lr2 must be positive, got {self.lr2}")
        for f in fields(self):                     # inf or nan: never a setting (and training would diverge)
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise LLPInputError(f"{f.name.replace('_', '-')} must be a finite number, got {value}")
        for name in ("noise", "sce_alpha", "sce_beta", "weight_decay"):
            if getattr(self, name) < 0:
                raise LLPInputError(f"{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.loss == "sce" and self.sce_alpha == 0 and self.sce_beta == 0:
            raise LLPInputError("sce-alpha and sce-beta are both 0: the SCE loss would be 0")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise LLPInputError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("seed", "data_seed", "bag_seed"):
            if getattr(self, name) < 0:
                raise LLPInputError(f"{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.train_size is not None and self.train_size < 1:
            raise LLPInputError(f"train-size must be positive, got {self.train_size}")
        if not self.out:
            raise LLPInputError("out must name a folder for the run's results")
        if self.augment in ("crop", "crop-flip") and self.dataset.split(":", 1)[0] in ("moons", "digits", "table"):
            raise LLPInputError(f"--augment {self.augment} applies to image data sets (mnist, fashion_mnist, cifar10, "
                                f"cifar100, svhn), not to --dataset {self.dataset}")
        table = self.dataset.startswith("table:")
        for name in ("bag_column", "features", "proportions", "label_column"):
            if getattr(self, name) is not None and not table:
                raise LLPInputError(f"--{name.replace('_', '-')} applies to table:FILE data only, not to "
                                    f"--dataset {self.dataset}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_IMAGE_PROTOCOL = {"model": "conv-large", "bag_size": 64, "lr": 1e-4, "beta1": 0.5, "lr_halve_every": 100,
                   "epochs1": 400, "batch_bags": 2}

#: Settings per data set that replace the defaults above (chosen on held-out bags: benchmarks/moons.py).
PRESETS: dict[str, dict] = {
    "moons": {"epochs2": 50},      # PLOT epochs chosen on held-out bags (benchmarks/results/moons.md, noise 0.2)
    "digits": {"bag_size": 16, "epochs1": 100, "epochs2": 50, "width": 128},
    # the paper's image setting (section 5.2; SPEC section 5): conv-large, Adam (0.5, 0.999), lr 1e-4 halved
    # every 100 epochs; SCE weights of the reference code for CIFAR-10 (0.1, 1.0) and CIFAR-100 (6.0, 0.1);
    # and what configs/paper adds where the paper is silent: 400 first-stage epochs of 2 bags per step
    # (the LLP-VAT reference code; plotllp.experiments.paper.PROTOCOL)
    "cifar10": {**_IMAGE_PROTOCOL},
    "cifar100": {**_IMAGE_PROTOCOL, "sce_alpha": 6.0, "sce_beta": 0.1},
    "svhn": {**_IMAGE_PROTOCOL},
}

FIELDS = {f.name: f for f in fields(TrainConfig)}

#: A run folder's files: what a finished run leaves (results.json first: a folder without it holds no finished
#: run), and the whole state of a run in progress or interrupted, after its last finished epoch.
RUN_OUTPUTS = ("results.json", "config.yaml", "model.pt", "first_stage.pt")
CHECKPOINT = "checkpoint.pt"

#: set for a sweep's cells: the sweep's process id (a run whose sweep has gone stops after its epoch)
SWEEP_PID_VARIABLE = "PLOTLLP_SWEEP_PID"

#: Settings that say where and how a run executes, not what it computes: a resumed run may change them,
#: and tables and figures group runs without them.
RUN_SETTINGS = frozenset({"out", "device", "quiet", "compile", "data_dir", "download", "train_diagnostics"})

#: Settings that only the second stage (PLOT) reads: runs that differ in these alone share their first stage.
SECOND_STAGE_SETTINGS = frozenset({"second_stage", "labels", "loss", "mixup", "pseudo_source", "ensemble", "reg",
                                   "sce_alpha", "sce_beta", "mixup_alpha", "epochs2", "lr2", "batch_size"})


def augment_name(name: str, dataset: str) -> str:
    """What ``--augment NAME`` does on ``dataset``: ``auto`` is crop-flip on CIFAR, none elsewhere."""
    if name == "auto":
        return "crop-flip" if dataset in ("cifar10", "cifar100") else "none"
    return name


def saved_setting(saved: dict, name: str):
    """Setting ``name`` of a saved configuration (a checkpoint's, a finished run's); one saved before the
    setting existed ran with its default."""
    return saved[name] if name in saved else FIELDS[name].default


def _coerce(name: str, value):
    f = FIELDS[name]
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if value is None:
        if "None" in kind:
            return None
        raise LLPInputError(f"setting {name} cannot be empty")
    try:
        if kind.startswith("bool"):
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "yes", "1", "on"):
                return True
            if str(value).lower() in ("false", "no", "0", "off"):
                return False
            raise ValueError
        if kind.startswith("int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind.startswith("float"):
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise LLPInputError(f"setting {name} must be {kind.split(' ')[0]}, got {value!r}") from None


def load_yaml(path: str) -> dict:
    """Settings from a YAML mapping (keys as on the command line, with - or _)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise LLPInputError(f"config file {path} does not exist") from None
    except UnicodeDecodeError:
        raise LLPInputError(f"config file {path} is not UTF-8 text") from None
    except IsADirectoryError:
        raise LLPInputError(f"config file {path} is a folder, not a YAML file") from None
    except yaml.YAMLError as e:
        raise LLPInputError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LLPInputError(f"config file {path} must hold a mapping of settings, not {type(data).__name__}")
    return data


def make_config(overrides: dict | None = None, yaml_settings: dict | None = None) -> TrainConfig:
    """Resolve defaults < preset of the data set < YAML settings < explicit overrides."""
    given: dict = {}
    for source in (yaml_settings or {}, overrides or {}):
        for key, value in source.items():
            name = str(key).replace("-", "_")
            if name not in FIELDS:
                raise LLPInputError(f"unknown setting {key!r}")
            given[name] = _coerce(name, value)
    dataset = given.get("dataset", TrainConfig.dataset)
    settings = {**PRESETS.get(dataset.split(":", 1)[0], {}), **given}
    return TrainConfig(**settings).validate()
