"""The ``plotllp`` command.

    plotllp train --dataset moons --bag-size 50 --first-stage dllp --second-stage plot --out runs/moons
    plotllp train --config run.yaml --epochs2 50        # YAML settings, flags win
    plotllp demo                                        # two-moons, DLLP then PLOT, and a figure
    plotllp sweep grid.yaml --jobs 2 --out runs/sweep   # many runs, resumable
    plotllp table runs/sweep --format md                # the paper's table layout
    plotllp figure curves runs/sweep/some_cell --out fig3   # the paper's figures (PNG and SVG)
    plotllp train --dataset table:rows.csv --bag-column county --proportions counts.csv --out runs/t
    plotllp predict --model runs/t --input new_rows.csv --output predictions.csv

Errors a user can cause end with one line on stderr and exit code 2; a diverged run exits with 3.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import sys
import time

import yaml

from .config import CHECKPOINT, FIELDS, PRESETS, RUN_OUTPUTS, RUN_SETTINGS, load_yaml, make_config
from .errors import LLPInputError, PlotLLPError, TrainingDivergedError


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line (no usage dump) and exit code 2."""

    commands: dict = {}           # the root parser's subcommand parsers, by name

    def error(self, message):
        self.exit(2, f"plotllp: error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):
        args, extra = self.parse_known_args(args, namespace)
        if extra:                 # name the subcommand whose options were mistyped: its --help lists them
            self.commands.get(getattr(args, "command", None), self).error(f"unrecognized arguments: {' '.join(extra)}")
        return args


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
        if str(f.type).startswith("bool"):
            help_ = f.metadata["help"] + f" (default: {'on' if default else 'off'})"
            g.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_)
        else:
            help_ = f.metadata["help"] + (f" (default: {default})" if default is not None else "")
            kind = str(f.type)
            typ = int if kind.startswith("int") else float if kind.startswith("float") else str
            g.add_argument(flag, dest=name, type=typ, choices=f.metadata.get("choices"), default=argparse.SUPPRESS,
                           metavar=None if f.metadata.get("choices") else name.split("_")[-1].upper(), help=help_)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="plotllp", description="Learning from label proportions: a deep LLP first stage, then "
                     "PLOT (pseudo-labels by per-bag optimal transport, trained with symmetric cross-entropy "
                     "and, optionally, mixup).", epilog="Run 'plotllp COMMAND --help' for the options of a command.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"plotllp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    parser.commands = sub.choices
    tr = sub.add_parser("train", help="train a first stage and PLOT; writes OUT/results.json",
                        description="Train a first-stage LLP learner, then the PLOT second stage, and write "
                        "results.json, model.pt, first_stage.pt and config.yaml into --out.",
                        epilog="Per data set, some defaults are replaced by its preset: "
                        + "; ".join(f"{d}: " + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in p.items())
                                    for d, p in PRESETS.items() if p)
                        + ". A --config file and flags override presets.")
    resumable = ", ".join("--" + s.replace("_", "-") for s in sorted(RUN_SETTINGS - {"out", "download"}))
    tr.add_argument("--resume", action="store_true", help="continue the interrupted run in --out from its "
                    f"checkpoint (same settings; how it runs may change: {resumable}); a finished run is reported "
                    "as such")
    tr.add_argument("--overwrite", action="store_true", help="replace the finished run in --out (without it, a "
                    "folder that holds one is refused)")
    _add_train_options(tr)
    data = sub.add_parser("data", help="describe a data set as JSON (sizes, classes, shape, channel mean and std)",
                          description="Read a data set from its official files and print, as JSON, the train "
                          "and test sizes, the class names, the input shape and the per-channel mean and std.")
    data.add_argument("dataset", help="moons, digits, mnist, fashion_mnist, cifar10, cifar100 or svhn (IDX files "
                      "do not name their data set: MNIST's files named fashion_mnist would be read as such)")
    data.add_argument("--data-dir", default="data", help="folder (or archive) of the data files (default: data)")
    data.add_argument("--download", action="store_true", help="fetch the official files into --data-dir first "
                      "(MD5 checksums verified; a file already there is kept if its checksum matches, fetched again if not)")
    demo = sub.add_parser("demo", help="two-moons in the paper's bags (40 of 50 points, noise 0.2): DLLP then PLOT, "
                          "with a figure",
                          description="Two-moons, 40 bags of 50 points (the paper's section 5.1): DLLP, then PLOT. "
                          "Prints the first-stage and final test accuracy and draws the decision boundaries "
                          "of both (the paper's Figure 2) into OUT/demo_moons.png and .svg.")
    demo.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    demo.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    demo.add_argument("--seed", type=int, default=0, help="seed of data, bags and training (default: 0)")
    demo.add_argument("--noise", type=float, default=0.2, help="two-moons noise (default: 0.2)")
    demo.add_argument("--quiet", action="store_true", help="print only the summary")
    sw = sub.add_parser("sweep", help="run many training runs (a grid or config files), resumably, in parallel",
                        description="Run every cell of the given YAML files, each in OUT/<cell name>: a file with "
                        "a 'grid' key (settings -> lists of values, on top of its 'base' settings; 'seeds' sets "
                        "seed, bag_seed and data_seed together) gives every combination; any other file is one "
                        "cell. Finished cells are skipped, interrupted ones resumed from their checkpoint.")
    sw.add_argument("configs", nargs="+", metavar="CONFIG", help="grid files or plotllp train config files")
    sw.add_argument("--out", default="runs/sweep", help="folder of the cells' folders (default: runs/sweep)")
    sw.add_argument("--jobs", type=int, default=1, help="cells run at a time, each its own process; with several "
                    "GPUs each job gets one (default: 1)")
    sw.add_argument("--seeds", type=int, nargs="+", metavar="S", help="run every cell once per seed")
    sw.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a setting in every cell (repeatable), e.g. --set data_dir=../shared/data")
    sw.add_argument("--dry-run", action="store_true", help="list the cells and their state; run nothing")
    tb = sub.add_parser("table", help="the paper's table layout (methods x bag sizes, mean (std)) from results",
                        description="Rows: each first stage and the first stage + PLOT; columns: bag sizes (runs on "
                        "a table's own bags: one column, 'given bags'); cells: mean (std) over seeds, the best of each "
                        "column in bold (the highest; the lowest for an error, loss or time). Runs that differ in "
                        "another setting (a grid over lr, two sweeps) get a row each, named by it, e.g. 'DLLP "
                        "[lr=0.01]'. Accuracies and bag errors are shown in percent. Missing cells are shown as such.")
    tb.add_argument("results", nargs="+", metavar="RESULTS", help="results.json files or folders holding them")
    tb.add_argument("--format", choices=["md", "csv", "latex"], default="md", help="output format (default: md)")
    tb.add_argument("--metric", default="test_accuracy", help="metric of results.json's first_stage and final "
                    "entries, e.g. test_accuracy, bag_mae, val_bag_mae, train_bag_mae, train_acc_ot, seconds (a '+ PLOT' "
                    "row: both stages' time) (default: test_accuracy)")
    tb.add_argument("--output", metavar="FILE", help="write to FILE instead of printing")
    fg = sub.add_parser("figure", help="the paper's figures from finished runs (PNG and SVG)",
                        description="boundaries: decision boundaries of each run's first stage and final model "
                        "on two-dimensional data (Figure 2); curves: training-set accuracy of the model, the OT "
                        "labels and their ensemble across both stages (Figure 3); labels: test and OT-label accuracy "
                        "per PLOT epoch, one line per run, e.g. hard vs soft (Figure 4); bag-size: test accuracy "
                        "against bag size for every method.")
    fg.add_argument("kind", choices=["boundaries", "curves", "labels", "bag-size"])
    fg.add_argument("runs", nargs="+", metavar="RUN", help="run folders (bag-size: results.json files or folders)")
    fg.add_argument("--out", required=True, help="output file stem; writes STEM.png and STEM.svg")
    pr = sub.add_parser("predict", help="per-row class probabilities of a trained model on a table",
                        description="Apply the final model of a finished `plotllp train --dataset table:FILE` run "
                        "to the rows of a CSV or Parquet file (same feature columns) and write a CSV of the row "
                        "number, the bag column if present, one probability column per class, and the "
                        "predicted class (or the same columns as a Parquet file).")
    pr.add_argument("--model", required=True, metavar="RUN_DIR", help="the --out folder of the training run")
    pr.add_argument("--input", required=True, metavar="FILE", help="CSV or Parquet table of rows to predict")
    pr.add_argument("--output", required=True, metavar="FILE",
                    help="file to write: CSV, or Parquet when its name ends in .parquet or .pq (needs pyarrow; "
                    "the probabilities then as float32, unrounded)")
    pr.add_argument("--first-stage", action="store_true", help="use the first-stage model instead of the final one")
    return parser


RUN_FILES = RUN_OUTPUTS + (CHECKPOINT,)


def _refuse_run_file(output: str, what: str) -> None:
    """An ``--output`` that would replace one of a run folder's own files is an error (it would lose the run)."""
    out = os.path.realpath(output)
    folder, name = os.path.split(out)
    if name == "results.json":
        raise LLPInputError(f"--output {output}: a file named results.json is read as a run's results (by plotllp "
                            f"table and figure); write {what} to another name")
    if name in RUN_FILES + ("log.txt", "cell.yaml") and any(os.path.exists(os.path.join(folder, f)) for f in RUN_FILES):
        raise LLPInputError(f"--output {output} would overwrite the {name} of the run in {folder}; write {what} "
                            "elsewhere")


def cmd_predict(args) -> int:
    import numpy as np
    import torch

    from .data.tables import bag_columns, feature_matrix, read_table
    from .engine import predict_proba
    from .pipeline import atomic_write, atomic_write_with, read_run

    out = os.path.realpath(args.output)
    if out == os.path.realpath(args.input):
        raise LLPInputError(f"--output {args.output} is the --input file; write the predictions elsewhere")
    _refuse_run_file(args.output, "the predictions")
    cfg, model, first, meta = read_run(args.model)
    names = meta.get("feature_names")
    if not names:
        raise LLPInputError(f"{args.model} was not trained on a table (--dataset table:FILE); predict reads tables")
    given = bag_columns(cfg.bag_column)
    cols = read_table(args.input, text=given)
    x = feature_matrix(args.input, cols, names, predicting=True)
    probs = predict_proba(first if args.first_stage else model, torch.from_numpy(x)).numpy()
    if not np.isfinite(probs).all():
        raise PlotLLPError(f"the model in {args.model} predicts NaN or infinity for some rows: its training "
                           "diverged; train it again with a lower learning rate")
    classes = list(meta["class_names"]) or [str(i) for i in range(probs.shape[1])]
    bags = {c: cols[c] for c in given if c in cols}
    if args.output.lower().endswith((".parquet", ".pq")):
        table = predictions_table(args.output, probs, classes, bags)
        import pyarrow.parquet as pq
        atomic_write_with(args.output, lambda fh: pq.write_table(table, fh))
    else:
        atomic_write(args.output, predictions_csv(probs, classes, bags, path=args.output))
    print(f"wrote {args.output}: {len(probs)} rows, {len(classes)} classes")
    return 0


def prediction_columns(path: str, classes, bags: dict | None = None) -> list[str]:
    """The columns `plotllp predict` writes: ``row``, the input's bag columns, ``p_CLASS`` for each class,
    ``predicted``; a bag column named like another is an error (the file could not be read back)."""
    header = ["row", *(bags or {}), *(f"p_{c}" for c in classes), "predicted"]
    clash = next((c for c in (bags or {}) if header.count(c) > 1), None)
    if clash is not None:
        raise LLPInputError(f"cannot write {path}: the bag column {clash!r} is named like an output column (row, "
                            "p_CLASS, predicted); rename it in the input table")
    return header


def predictions_csv(probs, classes, bags: dict | None = None, path: str = "the predictions") -> str:
    """`plotllp predict`'s CSV (:func:`prediction_columns`): a row number from 1, the bag ids (the columns
    ``bags`` maps to their values), each class's probability with 6 decimals, and the class of the largest
    (the first on ties). Written by columns (``csv.writer.writerows``; a Python loop per row took 2.98 s
    against 1.18 s on a million rows of 2 classes, one run each: commit 3c0a5e4)."""
    import csv
    import io

    from .data.tables import value_text

    bags = bags or {}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(prediction_columns(path, classes, bags))            # (its error names ``path``)
    ids = [[v if type(v) is str else value_text(v) for v in values] for values in bags.values()]
    probabilities = [[f"{v:.6f}" for v in column] for column in probs.T.tolist()]
    predicted = [classes[i] for i in probs.argmax(1).tolist()]
    w.writerows(zip(range(1, len(probs) + 1), *ids, *probabilities, predicted))
    return buf.getvalue()


def predictions_table(path: str, probs, classes, bags: dict | None = None):
    """:func:`predictions_csv`'s columns as a pyarrow table (for a Parquet ``path``): the row number as int64,
    the bag ids as pyarrow makes them from the values read (their text where it cannot: a map column's),
    each class's probability as float32 (unrounded), the class of the largest as text."""
    try:
        import pyarrow as pa
    except ImportError:
        raise LLPInputError(f"writing {path} needs pyarrow (pip install pyarrow), or give a .csv output") from None
    from .data.tables import value_text

    prediction_columns(path, classes, bags)
    columns = {"row": pa.array(range(1, len(probs) + 1), type=pa.int64())}
    for name, values in (bags or {}).items():
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowException, TypeError, ValueError):
            columns[name] = pa.array([value_text(v) for v in values], type=pa.string())
    columns.update({f"p_{c}": pa.array(probs[:, j], type=pa.float32()) for j, c in enumerate(classes)})
    columns["predicted"] = pa.array([str(c) for c in classes], type=pa.string()).take(probs.argmax(1))
    return pa.table(columns)


def _parse_sets(items) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise LLPInputError(f"--set takes KEY=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return out


def _not_under_torchrun(command: str, why: str) -> None:
    if _rank_of_torchrun() is not None:
        raise LLPInputError(f"plotllp {command} {why}; start it without torchrun (only plotllp train runs on "
                            "several processes)")


def cmd_sweep(args) -> int:
    from .experiments import sweep

    _not_under_torchrun("sweep", "starts each cell as a process of its own (--jobs at a time)")
    if args.jobs < 1:
        raise LLPInputError(f"--jobs must be at least 1, got {args.jobs}")
    failed = sweep.run(args.configs, args.out, jobs=args.jobs, seeds=args.seeds, overrides=_parse_sets(args.set),
                       dry_run=args.dry_run)
    return 1 if failed else 0


def _note_unfinished(paths, what: str) -> None:
    """Say on stderr which folders under ``paths`` hold a run in progress or interrupted, which ``what``
    (a table, a figure) leaves out."""
    from .experiments.results import unfinished

    folders = unfinished(paths)
    if folders:
        n = len(folders)
        shown = ", ".join(folders[:3]) + (f" and {n - 3} more" if n > 3 else "")
        print(f"plotllp: note: the {what} leaves out {n} run{'s' if n > 1 else ''} in progress or interrupted "
              f"({CHECKPOINT}): {shown} (plotllp train --resume, or the sweep run again, finishes "
              f"{'them' if n > 1 else 'it'})", file=sys.stderr)


def cmd_table(args) -> int:
    from .experiments.table import render

    _note_unfinished(args.results, "table")
    if args.output:
        _refuse_run_file(args.output, "the table")
    text = render(args.results, fmt=args.format, metric=args.metric)
    if args.output:
        from .pipeline import atomic_write
        atomic_write(args.output, text)
        print(f"wrote {args.output}")
    else:
        print(text, end="")
    return 0


def _differences(cfgs) -> list[str]:
    """For each run, the settings (seeds included) in which the runs ``cfgs`` differ, as `` [k=v, ...]``
    (beyond method, data set and bag size, which a figure names anyway), so that no two look alike."""
    from .config import saved_setting
    from .experiments.results import SEED_SETTINGS, describe, settings_of, varying

    every = [{**settings_of(c), **{k: saved_setting(c, k) for k in SEED_SETTINGS}} for c in cfgs]
    named = {"first_stage", "second_stage", "labels", "loss", "mixup", "pseudo_source", "dataset", "bag_size"}
    if all(len({s[k] for k in SEED_SETTINGS}) == 1 for s in every):        # seeds set together: "seed" says it
        named |= {"bag_seed", "data_seed"}
    shown = [k for k in varying(every) if k not in named]
    return [describe(settings, shown) for settings in every]


def _run_labels(cfgs) -> list[str]:
    """A figure's name for each run: method, data set, bags, and what else tells the runs apart."""
    from .experiments.results import STAGE_NAMES, plot_variant

    labels = []
    for cfg, differs in zip(cfgs, _differences(cfgs)):
        name = STAGE_NAMES.get(cfg["first_stage"], cfg["first_stage"])
        if cfg.get("second_stage") != "none":
            name += " + PLOT" + plot_variant(cfg)
        bags = "its own bags" if str(cfg["dataset"]).startswith("table:") else f"bag {cfg['bag_size']}"
        labels.append(f"{name}, {cfg['dataset']}, {bags}{differs}")
    return labels


def cmd_figure(args) -> int:
    from . import plotting
    from .experiments.results import aggregate, entries, find_results, load

    stem = plotting.file_stem(args.out)
    if os.path.basename(stem) in ("", ".", ".."):
        raise LLPInputError(f"--out {args.out!r} names no file: give a file stem, e.g. figs/curves (writes "
                            "figs/curves.png and figs/curves.svg)")
    if args.kind != "boundaries":            # (boundaries: each folder named must hold a model.pt)
        _note_unfinished(args.runs, "figure")
    if args.kind == "bag-size":
        paths = plotting.accuracy_vs_bag_size(aggregate(entries(args.runs)), args.out)
    elif args.kind == "boundaries":
        from .data import load_dataset
        from .experiments.results import STAGE_NAMES, plot_variant
        from .pipeline import load_run

        panels, runs = [], []
        for run_dir in args.runs:
            cfg, model, first = load_run(run_dir)
            if cfg.dataset.startswith("table:"):
                raise LLPInputError(f"{run_dir}: decision boundaries are drawn for two-dimensional data sets such "
                                    "as moons, not for tables")
            ds = load_dataset(cfg.dataset, data_dir=cfg.data_dir, seed=cfg.data_seed, noise=cfg.noise,
                              train_size=cfg.train_size)
            if ds.x_test.ndim != 2 or ds.x_test.shape[1] != 2:
                raise LLPInputError(f"{run_dir}: decision boundaries need two-dimensional inputs; {cfg.dataset} "
                                    f"has inputs of shape {tuple(ds.x_test.shape[1:])}")
            runs.append((cfg.to_dict(), first, model, ds))
        for (cfg, first, model, ds), differs in zip(runs, _differences([r[0] for r in runs])):
            name = STAGE_NAMES.get(cfg["first_stage"], cfg["first_stage"])
            panels.append((name + differs, first, ds.x_test, ds.y_test))         # each run on its own test set
            if cfg["second_stage"] != "none":
                panels.append((f"{name} + PLOT{plot_variant(cfg)}{differs}", model, ds.x_test, ds.y_test))
        out = plotting.decision_boundaries(panels, None, None, stem + ".png")
        paths = [out, stem + ".svg"]
    else:
        runs = []
        for run_dir in args.runs:
            found = find_results([run_dir])
            for p in found:
                r = load(p)
                need = ("train_acc_model", "test_accuracy") if args.kind == "curves" else ("test_accuracy",)
                rows = [row for row in r.get("history", []) if isinstance(row, dict)]
                if not any(row.get(k) is not None for row in rows for k in need):
                    raise LLPInputError(f"{p}: the {args.kind} figure needs instance labels (test accuracy, training-"
                                        "set diagnostics), which this run has none of (a table of proportions)")
                if args.kind == "labels" and not any(row.get("stage") == "plot" for row in rows):
                    raise LLPInputError(f"{p}: the labels figure shows PLOT epochs; this run has none")
                runs.append(r)
        draw = plotting.training_curves if args.kind == "curves" else plotting.label_convergence
        paths = draw(list(zip(_run_labels([r["config"] for r in runs]), runs)), args.out)
    for p in paths:
        print(f"wrote {p}")
    return 0


def cmd_train(args) -> int:
    settings = {k: v for k, v in vars(args).items() if k in FIELDS}
    yaml_settings = load_yaml(args.config) if args.config else None
    cfg = make_config(settings, yaml_settings)
    if "noise" in settings and cfg.dataset != "moons":       # (a saved config.yaml holds every setting)
        raise LLPInputError(f"--noise applies to --dataset moons only, not to --dataset {cfg.dataset}")
    from .pipeline import train

    done = os.path.join(cfg.out, "results.json")
    if args.resume and os.path.exists(done) and not os.path.exists(os.path.join(cfg.out, CHECKPOINT)):
        from .experiments.sweep import changed_settings

        changed = changed_settings(cfg.out, cfg.to_dict())
        if changed:
            raise LLPInputError(f"the run in {cfg.out} finished with other settings ({'; '.join(changed[:3])}"
                                f"{'; ...' if len(changed) > 3 else ''}); choose another --out, or add --overwrite "
                                "instead of --resume to replace it")
        if not _rank_of_torchrun():                   # once, not once per rank
            print(f"plotllp: the run in {cfg.out} has already finished; nothing to resume ({done})")
        return 0
    try:
        res = train(cfg, resume=args.resume, overwrite=args.overwrite)
    except TrainingDivergedError as e:
        kept = os.path.join(cfg.out, CHECKPOINT)
        if os.path.exists(kept):
            raise TrainingDivergedError(f"{e}; {kept} holds the last finished epoch (remove it, or choose another "
                                        "--out, to start afresh with other settings)") from None
        raise
    if not res.is_main:          # a rank > 0 of a torchrun job: rank 0 reports
        return 0
    r = res.results

    def line(m):
        if "test_accuracy" in m:
            return f"test accuracy {100 * m['test_accuracy']:.2f}%  bag MAE {m['bag_mae']:.4f}  ({m['seconds']:.1f}s)"
        return f"training-bag MAE {m['train_bag_mae']:.4f} (no labelled test set)  ({m['seconds']:.1f}s)"

    print(f"first stage ({cfg.first_stage}): {line(r['first_stage'])}")
    if cfg.second_stage != "none":
        print(f"final ({cfg.first_stage} + plot): {line(r['final'])}")
    print(f"wrote {os.path.join(cfg.out, 'results.json')}")
    for text in r.get("warnings", []):
        print(f"plotllp: warning: {text}", file=sys.stderr)
    return 0


def cmd_data(args) -> int:
    import json

    import numpy as np

    from .data import load_dataset

    if args.dataset.startswith("table:"):
        raise LLPInputError("plotllp data describes the built-in and image data sets; a table is read by "
                            "plotllp train --dataset table:FILE --bag-column COL ...")
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

    _not_under_torchrun("demo", "is a small run on one process")

    t0 = time.perf_counter()
    cfg = make_config({"dataset": "moons", "noise": args.noise, "data_seed": args.seed, "bag_seed": args.seed,
                       "seed": args.seed, "device": args.device, "out": args.out, "quiet": args.quiet})
    os.makedirs(args.out, exist_ok=True)        # an unwritable --out fails now, not after training
    if os.path.exists(os.path.join(args.out, "results.json")) and not args.quiet:
        print(f"plotllp demo: replacing the earlier demo in {args.out}")
    res = train(cfg, overwrite=True)          # the README's repeatable main job
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
    rank = _rank_of_torchrun()
    if rank:                          # a rank > 0 of a torchrun job: rank 0 reports a bad command line
        with contextlib.redirect_stderr(io.StringIO()):
            args = parser.parse_args(argv)
    else:
        args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    say = _error_printer(rank)
    termination = _stop_on_termination()
    stopped_by = termination.__enter__()
    try:
        return {"train": cmd_train, "data": cmd_data, "demo": cmd_demo, "sweep": cmd_sweep, "table": cmd_table,
                "figure": cmd_figure, "predict": cmd_predict}[args.command](args)
    except TrainingDivergedError as e:
        say(f"plotllp: error: {e}")
        return 3
    except (PlotLLPError, LLPInputError) as e:
        # bad input is found alike by the ranks of a torchrun job: rank 0 says so (and the first rank of
        # each other machine)
        say(f"plotllp: error: {e}", every_rank=False)
        return 2
    except KeyboardInterrupt as e:
        why = stopped_by[0] if stopped_by else str(e)
        say("plotllp: interrupted" + (f" ({why})" if why else ""), every_rank=False)
        return 128 + (stopped_by[1] if stopped_by else signal.SIGINT)
    except BrokenPipeError:              # the reader went away (`plotllp data ... | head`): stop quietly
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())     # nothing left to flush at exit
        return 141                       # as a process killed by SIGPIPE
    except OSError as e:                 # unwritable output folder, disk full, ...
        say(f"plotllp: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "))
        return 2
    except MemoryError:
        say("plotllp: error: out of memory: use a smaller model (--width), batch or data set")
        return 2
    except Exception as e:
        from .engine import compile_failure          # torch is imported only by the commands that need it
        reason = compile_failure(e)
        if reason is not None:
            say(f"plotllp: error: --compile: torch.compile could not compile the network ({reason}); train "
                f"without --compile (with --resume if --out already holds this run's checkpoint)", every_rank=False)
            return 2
        import torch
        oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
        if isinstance(e, oom) or (isinstance(e, RuntimeError) and "can't allocate memory" in str(e)):
            say(f"plotllp: error: out of memory ({str(e).splitlines()[0][:120]}); use a smaller "
                "model (--width), batch or data set")
            return 2
        if os.environ.get("PLOTLLP_TRACEBACK"):
            raise
        if rank is not None and _peer_gone(e):
            say("plotllp: error: another process of this torchrun job stopped (its message, if it could write "
                "one, is above); this one stops too")
            return 1
        # a failure plotllp did not foresee: one line, and how to see where it happened
        first = (str(e).strip().splitlines() or [""])[0][:300]
        say(f"plotllp: internal error: {type(e).__name__}: {first} (a bug, or an input plotllp does not check "
            "yet; set PLOTLLP_TRACEBACK=1 to see where it happened)")
        return 1
    finally:
        termination.__exit__(None, None, None)


def _peer_gone(e: Exception) -> bool:
    """An error of a collective whose peer process has stopped (Gloo: the connection closed or reset)."""
    text = str(e).lower()
    return type(e).__name__ in ("DistBackendError", "DistNetworkError") or (
        "peer" in text and ("closed" in text or "reset" in text))


def _rank_of_torchrun() -> int | None:
    """This process's rank when ``torchrun`` started several (``WORLD_SIZE`` > 1), else None."""
    try:
        return int(os.environ["RANK"]) if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 else None
    except (KeyError, ValueError):
        return None


@contextlib.contextmanager
def _stop_on_termination():
    """While a command runs, SIGTERM and SIGHUP (what schedulers, ``kill`` and a closed terminal send)
    stop it as Ctrl-C does: a run keeps its last epoch's checkpoint and says so; a sweep stops its cells.
    Yields a list that receives the signal's name and number when one arrives."""
    got: list = []
    before = {}

    def stop(signum, frame):
        if not got:
            got.extend([signal.Signals(signum).name, int(signum)])
        raise KeyboardInterrupt

    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) == signal.SIG_DFL:
            with contextlib.suppress(ValueError, OSError):       # not the main thread: leave it as it is
                before[sig] = signal.signal(sig, stop)
    try:
        yield got
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _error_printer(rank: int | None):
    """``say(message, every_rank=True)``: print ``message`` to stderr. In a torchrun job, rank 0 prints
    it as is; a rank > 0 prints it tagged with its rank, or, when ``every_rank`` is False (bad input,
    which the ranks of a machine meet alike), only if it is the first rank on its machine (a file may be
    missing on one machine of several)."""
    first_on_machine = os.environ.get("LOCAL_RANK", "0") == "0"

    def say(message: str, every_rank: bool = True) -> None:
        if rank is None or rank == 0:
            print(message, file=sys.stderr)
        elif every_rank or first_on_machine:
            print(message.replace("plotllp: ", f"plotllp (rank {rank}): ", 1), file=sys.stderr)
    return say


def entry() -> None:
    """The ``plotllp`` program: :func:`main`, then exit with its status. A Ctrl-C that comes once the
    command has ended, while the interpreter shuts down, is ignored: the command's work is done and its
    files are written, and it would only end in an atexit traceback or a status of -2.

    A process of a ``torchrun`` job ends with ``os._exit`` once its output is flushed, without the
    interpreter's shutdown: PyTorch's Gloo worker threads outlive ``destroy_process_group``, and one that
    releases a tensor Python made while the interpreter shuts down ends the process in ``std::terminate``
    (SIGABRT) after a finished run (4 times in about 140 test jobs run beside another torchrun job on 2
    cores; a rank's backtrace: ``ProcessGroupGloo::runLoop`` -> ``~AsyncWork`` -> ``decref_pyobject`` ->
    ``PyThread_exit_thread``)."""
    code = main()
    with contextlib.suppress(ValueError, OSError):          # not the main thread: leave it as it is
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if _rank_of_torchrun() is not None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(int(code or 0))
    sys.exit(code)


if __name__ == "__main__":
    entry()
