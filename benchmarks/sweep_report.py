"""A sweep's results as a committed report: the paper's table layout (``plotllp table``) and the
measured seconds per run, with the commands, commit and machine.

Run: ``python benchmarks/sweep_report.py RUNS --name NAME --sweep-command "plotllp sweep ..."
--sweep-commit COMMIT [--note-file FILE] [--metrics test_accuracy val_bag_mae ...]``; writes
``benchmarks/results/NAME.md``.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import header, write  # noqa: E402

from plotllp.experiments.results import find_results, load  # noqa: E402
from plotllp.experiments.table import render  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("runs", help="the sweep's --out folder")
    ap.add_argument("--name", required=True)
    ap.add_argument("--title", default=None)
    ap.add_argument("--sweep-command", required=True, help="the command that made the runs")
    ap.add_argument("--sweep-commit", required=True, help="the commit the runs were made with")
    ap.add_argument("--note-file", default=None, help="a Markdown file of reading, written after the runs")
    ap.add_argument("--metrics", nargs="+", default=["test_accuracy"],
                    help="the tables to show (any metric of `plotllp table --metric`; default: test_accuracy)")
    args = ap.parse_args()
    runs = [load(p) for p in find_results([args.runs])]
    text = header(args.title or f"Sweep {args.name}")
    text += f"- runs made by: `{args.sweep_command}` at commit {args.sweep_commit}\n"
    # the machine line above is this script's; the runs' own arithmetic is in their results.json (since 4ee037d)
    threads = sorted({str(r.get("threads", "?")) for r in runs})
    kernels = sorted({str(r.get("cpu_capability", "?")) for r in runs})
    text += (f"- the runs' arithmetic (their results.json; ? where not recorded): {', '.join(threads)} torch "
             f"thread(s) each, ATen {', '.join(kernels)} kernels\n\n")
    text += "\n".join(render([args.runs], "md", metric=m) for m in args.metrics)
    # rows named as in the tables above (runs of one method and bag size that differ in a setting get a row each)
    text += ("\nSeconds per run (wall time including the per-epoch evaluation; a \"+ PLOT\" row counts both "
             "stages; mean over seeds):\n\n" + render([args.runs], "md", metric="seconds", digits=0))
    total = sum(r["first_stage"]["seconds"] + (r["final"]["seconds"] if r["config"].get("second_stage", "none") != "none"
                                                and int(r["config"].get("epochs2", 0)) > 0 else 0.0) for r in runs)
    text += f"\n{len(runs)} runs, {total / 3600:.2f} hours of run time in all.\n"
    if args.note_file:
        with open(args.note_file) as f:
            text += "\n" + f.read()
    write(f"{args.name}.md", text)


if __name__ == "__main__":
    main()
