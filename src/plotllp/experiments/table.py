"""The paper's table layout from finished runs: rows = methods (each first stage, then the first stage
followed by PLOT), columns = bag sizes, cells = mean (std) over seeds, the best mean of each column
marked; as Markdown, CSV or LaTeX. A cell without runs is shown as missing, never as a number.
"""

from __future__ import annotations

import csv
import io

from .results import aggregate, entries

MISSING = {"md": "—", "latex": "--", "csv": ""}


def _best(methods, bags, cells):
    best = {}
    for b in bags:
        means = [cells[(m, b)].mean for m in methods if (m, b) in cells]
        best[b] = max(means) if means else None
    return best


def _fmt(cell, scale: float, digits: int) -> str:
    return f"{scale * cell.mean:.{digits}f} ({scale * cell.std:.{digits}f})"


def render(paths, fmt: str = "md", metric: str = "test_accuracy", scale: float = 100.0, digits: int = 2) -> str:
    """The table of the runs under ``paths`` in ``fmt`` (md, csv, latex); one table per data set."""
    if fmt not in MISSING:
        raise ValueError(f"format must be md, csv or latex, got {fmt!r}")
    data = aggregate(entries(paths, metric))
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["dataset", "method", "bag_size", "mean", "std", "seeds", "best_in_column"])
        for ds, (methods, bags, cells) in data.items():
            best = _best(methods, bags, cells)
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
        best = _best(methods, bags, cells)
        seeds = sorted({len(c.values) for c in cells.values()})
        caption = (f"{ds}: {metric.replace('_', ' ')} (%), mean (std) over "
                   f"{'/'.join(map(str, seeds))} seed(s); best per bag size in bold")
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
            out.append(f"{caption}\n\n| method | " + " | ".join(f"bag {b}" for b in bags) + " |\n| --- |"
                       + " --- |" * len(bags) + "\n" + "\n".join(f"| {m} | " + " | ".join(r) + " |" for m, r in rows))
        else:
            esc = lambda s: s.replace("_", "\\_").replace("%", "\\%")  # noqa: E731
            out.append("\\begin{table}[t]\n\\centering\n\\begin{tabular}{l" + "c" * len(bags) + "}\n\\toprule\n"
                       + "Method & " + " & ".join(f"{b}" for b in bags) + " \\\\\n\\midrule\n"
                       + "\n".join(f"{esc(m)} & " + " & ".join(r) + " \\\\" for m, r in rows)
                       + f"\n\\bottomrule\n\\end{{tabular}}\n\\caption{{{esc(caption)}}}\n\\end{{table}}")
    return "\n\n".join(out) + "\n"
