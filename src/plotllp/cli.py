"""The ``plotllp`` command.

    plotllp train --dataset moons --bag-size 50 --first-stage dllp --second-stage plot --out runs/moons
    plotllp train --config run.yaml --epochs2 50        # YAML settings, flags win
    plotllp demo                                        # two-moons, DLLP then PLOT, and a figure

Errors a user can cause end with one line on stderr and exit code 2; a diverged run exits with 3.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from .config import FIELDS, PRESETS, load_yaml, make_config
from .errors import LLPInputError, PlotLLPError, TrainingDivergedError


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line (no usage dump) and exit code 2."""

    def error(self, message):
        self.exit(2, f"plotllp: error: {message} (see {self.prog} --help)\n")


#: first field of each section of TrainConfig -> the heading in --help
SECTIONS = {"dataset": "data and bags", "first_stage": "method", "model": "model", "epochs1": "optimisation",
            "seed": "run"}


def _add_train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML file of settings (same keys as these flags); "
                                                     "flags given here override it")
    g = None
    for name, f in FIELDS.items():
        if name in SECTIONS:                 # TrainConfig lists its fields section by section
            g = p.add_argument_group(SECTIONS[name])
        flag = "--" + name.replace("_", "-")
        default = f.default
        help_ = f.metadata["help"] + (f" (default: {default})" if default is not None and default is not False else "")
        if str(f.type).startswith("bool"):
            g.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_)
        else:
            kind = str(f.type)
            typ = int if kind.startswith("int") else float if kind.startswith("float") else str
            g.add_argument(flag, dest=name, type=typ, choices=f.metadata.get("choices"), default=argparse.SUPPRESS,
                           metavar=None if f.metadata.get("choices") else name.split("_")[-1].upper(), help=help_)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="plotllp", description="Learning from label proportions: a deep LLP first stage, then "
                     "PLOT (pseudo-labels by per-bag optimal transport, trained with symmetric cross-entropy "
                     "and mixup).", epilog="Run 'plotllp COMMAND --help' for the options of a command.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"plotllp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    tr = sub.add_parser("train", help="train a first stage and PLOT; writes OUT/results.json",
                        description="Train a first-stage LLP learner, then the PLOT second stage, and write "
                        "results.json, model.pt, first_stage.pt and config.yaml into --out.",
                        epilog="Per data set, some defaults are replaced by its preset: "
                        + "; ".join(f"{d}: " + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in p.items())
                                    for d, p in PRESETS.items() if p)
                        + ". A --config file and flags override presets.")
    tr.add_argument("--resume", action="store_true", help="continue the interrupted run in --out from its "
                    "checkpoint (same settings); a finished run is reported as such")
    _add_train_options(tr)
    data = sub.add_parser("data", help="describe a data set as JSON (sizes, classes, shape, channel mean and std)",
                          description="Read a data set from its official files and print, as JSON, the train "
                          "and test sizes, the class names, the input shape and the per-channel mean and std.")
    data.add_argument("dataset", help="moons, digits, mnist, fashion_mnist, cifar10, cifar100 or svhn")
    data.add_argument("--data-dir", default="data", help="folder (or archive) of the data files (default: data)")
    data.add_argument("--download", action="store_true", help="fetch the official files into --data-dir first "
                      "(MD5 checksums verified; files already there are kept)")
    demo = sub.add_parser("demo", help="two-moons in the paper's setting: DLLP then PLOT, with a figure",
                          description="Two-moons, 40 bags of 50 points (the paper's section 5.1): DLLP, then PLOT. "
                          "Prints the first-stage and final test accuracy and draws the decision boundaries "
                          "of both (the paper's Figure 2) into a PNG.")
    demo.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    demo.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    demo.add_argument("--seed", type=int, default=0, help="seed of data, bags and training (default: 0)")
    demo.add_argument("--noise", type=float, default=0.2, help="two-moons noise (default: 0.2)")
    demo.add_argument("--quiet", action="store_true", help="print only the summary")
    return parser


def cmd_train(args) -> int:
    settings = {k: v for k, v in vars(args).items() if k in FIELDS}
    yaml_settings = load_yaml(args.config) if args.config else None
    cfg = make_config(settings, yaml_settings)
    from .pipeline import CHECKPOINT, train

    done = os.path.join(cfg.out, "results.json")
    if args.resume and os.path.exists(done) and not os.path.exists(os.path.join(cfg.out, CHECKPOINT)):
        print(f"plotllp: the run in {cfg.out} has already finished; nothing to resume ({done})")
        return 0
    res = train(cfg, resume=args.resume)
    r = res.results
    print(f"first stage ({cfg.first_stage}): test accuracy {100 * r['first_stage']['test_accuracy']:.2f}%  "
          f"bag MAE {r['first_stage']['bag_mae']:.4f}  ({r['first_stage']['seconds']:.1f}s)")
    if cfg.second_stage != "none":
        print(f"final ({cfg.first_stage} + plot): test accuracy {100 * r['final']['test_accuracy']:.2f}%  "
              f"bag MAE {r['final']['bag_mae']:.4f}  ({r['final']['seconds']:.1f}s)")
    print(f"wrote {os.path.join(cfg.out, 'results.json')}")
    return 0


def cmd_data(args) -> int:
    import json

    import numpy as np

    from .data import load_dataset

    ds = load_dataset(args.dataset, data_dir=args.data_dir, download=args.download)
    if ds.is_image:
        mean, std = ds.normalization
    else:
        mean, std = ds.x_train.mean(0).tolist(), ds.x_train.std(0).tolist()
    info = {"dataset": ds.name, "train_size": int(len(ds.y_train)), "test_size": int(len(ds.y_test)),
            "num_classes": ds.num_classes, "class_names": list(ds.class_names), "shape": list(ds.input_shape),
            "dtype": str(ds.x_train.dtype), "mean": [round(float(v), 4) for v in np.ravel(mean)],
            "std": [round(float(v), 4) for v in np.ravel(std)],
            "train_class_counts": np.bincount(ds.y_train, minlength=ds.num_classes).tolist()}
    print(json.dumps(info, indent=1))
    return 0


def cmd_demo(args) -> int:
    from .pipeline import train
    from .plotting import decision_boundaries

    t0 = time.perf_counter()
    cfg = make_config({"dataset": "moons", "noise": args.noise, "data_seed": args.seed, "bag_seed": args.seed,
                       "seed": args.seed, "device": args.device, "out": args.out, "quiet": args.quiet})
    res = train(cfg)
    r = res.results
    png = decision_boundaries([("DLLP", res.first_stage_model), ("DLLP + PLOT", res.model)],
                              res.dataset.x_test, res.dataset.y_test, os.path.join(args.out, "demo_moons.png"),
                              title=f"two-moons (noise {args.noise}), {r['data']['bags']} bags of {cfg.bag_size}")
    first, final = r["first_stage"]["test_accuracy"], r["final"]["test_accuracy"]
    print(f"\nDLLP test accuracy:        {100 * first:.2f}%")
    print(f"DLLP + PLOT test accuracy: {100 * final:.2f}%  ({100 * (final - first):+.2f} points)")
    print(f"decision boundaries:       {png}")
    print(f"results:                   {os.path.join(args.out, 'results.json')}  ({time.perf_counter() - t0:.1f}s)")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return {"train": cmd_train, "data": cmd_data, "demo": cmd_demo}[args.command](args)
    except TrainingDivergedError as e:
        print(f"plotllp: error: {e}", file=sys.stderr)
        return 3
    except (PlotLLPError, LLPInputError) as e:
        print(f"plotllp: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("plotllp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
