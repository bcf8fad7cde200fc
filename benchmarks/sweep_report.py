"""A sweep's results as a committed report: the paper's table layout (``plotllp table``) and the
measured seconds per run, with the commands, commit and machine.

Run: ``python benchmarks/sweep_report.py RUNS --name NAME --sweep-command "plotllp sweep ..."
--sweep-commit COMMIT [--note-file FILE]``; writes ``benchmarks/results/NAME.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import header, write  # noqa: E402

from plotllp.experiments.results import STAGE_NAMES, find_results, load, plot_variant  # noqa: E402
from plotllp.experiments.table import render  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("runs", help="the sweep's --out folder")
    ap.add_argument("--name", required=True)
    ap.add_argument("--title", default=None)
    ap.add_argument("--sweep-command", required=True, help="the command that made the runs")
    ap.add_argument("--sweep-commit", required=True, help="the commit the runs were made with")
    ap.add_argument("--note-file", default=None, help="a Markdown file of reading, written after the runs")
    args = ap.parse_args()
    text = header(args.title or f"Sweep {args.name}")
    text += f"- runs made by: `{args.sweep_command}` at commit {args.sweep_commit}\n\n"
    text += render([args.runs], "md")
    runs = [load(p) for p in find_results([args.runs])]
    by_kind: dict = {}
    for r in runs:
        cfg = r["config"]
        kind = (STAGE_NAMES.get(cfg["first_stage"], cfg["first_stage"]) + plot_variant(cfg), int(cfg["bag_size"]))
        plot = cfg.get("second_stage", "none") != "none" and int(cfg.get("epochs2", 0)) > 0
        by_kind.setdefault(kind, []).append((r["first_stage"]["seconds"], r["final"]["seconds"] if plot else 0.0))
    text += ("\nSeconds per run (wall time of each stage including its per-epoch evaluation; mean over "
             "seeds; runs shared the two cores two at a time):\n\n| run | bag | seeds | first stage s | PLOT s |\n"
             "| --- | --- | --- | --- | --- |\n")
    for (kind, bag), secs in sorted(by_kind.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        text += (f"| {kind} | {bag} | {len(secs)} | {statistics.mean(s[0] for s in secs):.0f} | "
                 f"{statistics.mean(s[1] for s in secs):.0f} |\n")
    total = sum(s[0] + s[1] for v in by_kind.values() for s in v)
    text += f"\n{len(runs)} runs, {total / 3600:.2f} hours of run time in all.\n"
    if args.note_file:
        with open(args.note_file) as f:
            text += "\n" + f.read()
    write(f"{args.name}.md", text)


if __name__ == "__main__":
    main()
