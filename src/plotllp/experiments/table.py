"""The paper's table layout from finished runs: rows = methods (each first stage, then the first stage
followed by PLOT), columns = bag sizes (a table's own bags, of many sizes: one column "given bags"),
cells = mean (std) over seeds (one seed: its value; CSV: std 0), the best mean of each column marked (the highest;
the lowest for an error, loss or time); as Markdown, CSV or LaTeX. Runs that differ in a setting other
than the seeds get a row each, named by it (:func:`plotllp.experiments.results.entries`). A cell
without runs is shown as missing, never as a number. Accuracies and bag errors (fractions) are shown
in percent, other metrics as they are.
"""

from __future__ import annotations

import csv
import io

from ..errors import LLPInputError
from .results import aggregate, entries, find_results, is_number, load

MISSING = {"md": "—", "latex": "--", "csv": ""}


def lower_is_better(metric: str) -> bool:
    """An error, loss or time: the lowest mean is the best."""
    return any(word in metric for word in ("mae", "loss", "error", "seconds"))


def in_percent(metric: str) -> bool:
    """Accuracies and mean absolute errors of proportions are fractions, shown in percent."""
    return "acc" in metric or "mae" in metric


def bag_label(bag_size: int) -> str:
    return "given bags" if bag_size == 0 else f"bag {bag_size}"


def _best(methods, bags, cells, lowest: bool):
    best = {}
    for b in bags:
        means = [cells[(m, b)].mean for m in methods if (m, b) in cells]
        best[b] = (min(means) if lowest else max(means)) if means else None
    return best


def _metrics_of(paths) -> list[str]:
    """The numeric metrics the runs under ``paths`` report (those a table can show)."""
    names = set()
    for path in find_results(paths):
        r = load(path)
        for part in (r["first_stage"], r["final"]):
            names.update(k for k, v in part.items() if is_number(v))
    return sorted(names)


def _fmt(cell, scale: float, digits: int) -> str:
    """``mean (std)``; one seed has no spread to show: its value alone."""
    if len(cell.values) == 1:
        return f"{scale * cell.mean:.{digits}f}"
    return f"{scale * cell.mean:.{digits}f} ({scale * cell.std:.{digits}f})"


def render(paths, fmt: str = "md", metric: str = "test_accuracy", scale: float | None = None, digits: int = 2) -> str:
    """The table of the runs under ``paths`` in ``fmt`` (md, csv, latex); one table per data set.
    ``scale``: the factor of the shown numbers (default: 100 for :func:`in_percent` metrics, else 1)."""
    if fmt not in MISSING:
        raise LLPInputError(f"format must be md, csv or latex, got {fmt!r}")
    items = entries(paths, metric)
    if not items:
        raise LLPInputError(f"no run under {', '.join(map(str, paths))} reports {metric!r}; metrics there: "
                            f"{', '.join(_metrics_of(paths)) or 'none'}")
    if scale is None:
        scale = 100.0 if in_percent(metric) else 1.0
    lowest = lower_is_better(metric)
    data = aggregate(items)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["dataset", "method", "bag_size", "mean", "std", "seeds", "best_in_column"])
        for ds, (methods, bags, cells) in data.items():
            best = _best(methods, bags, cells, lowest)
            for m in methods:
                for b in bags:
                    c = cells.get((m, b))
                    if c is None:
                        w.writerow([ds, m, b, "", "", 0, ""])
                    else:
                        w.writerow([ds, m, b, f"{scale * c.mean:.{digits}f}", f"{scale * c.std:.{digits}f}",
                                    len(c.values), int(c.mean == best[b])])
        return buf.getvalue()
    out = []
    for ds, (methods, bags, cells) in data.items():
        best = _best(methods, bags, cells, lowest)
        seeds = sorted({len(c.values) for c in cells.values()})
        over = "one seed" if seeds == [1] else f"mean (std) over {'/'.join(map(str, seeds))} seed(s)"
        caption = (f"{ds}: {metric.replace('_', ' ')}{' (%)' if scale == 100 else ''}, {over}; best "
                   f"({'lowest' if lowest else 'highest'}) per bag size in bold")
        rows = []
        for m in methods:
            row = []
            for b in bags:
                c = cells.get((m, b))
                if c is None:
                    row.append(MISSING[fmt])
                    continue
                text = _fmt(c, scale, digits)
                if c.mean == best[b]:
                    text = f"**{text}**" if fmt == "md" else f"\\textbf{{{text}}}"
                row.append(text)
            rows.append((m, row))
        if fmt == "md":
            out.append(f"{caption}\n\n| method | " + " | ".join(bag_label(b) for b in bags) + " |\n| --- |"
                       + " --- |" * len(bags) + "\n" + "\n".join(f"| {m} | " + " | ".join(r) + " |" for m, r in rows))
        else:
            esc = lambda s: s.replace("_", "\\_").replace("%", "\\%")  # noqa: E731
            out.append("\\begin{table}[t]\n\\centering\n\\begin{tabular}{l" + "c" * len(bags) + "}\n\\toprule\n"
                       + "Method & " + " & ".join(bag_label(b).removeprefix("bag ") for b in bags) + " \\\\\n\\midrule\n"
                       + "\n".join(f"{esc(m)} & " + " & ".join(r) + " \\\\" for m, r in rows)
                       + f"\n\\bottomrule\n\\end{{tabular}}\n\\caption{{{esc(caption)}}}\n\\end{{table}}")
    return "\n\n".join(out) + "\n"
