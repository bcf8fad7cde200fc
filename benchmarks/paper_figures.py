"""The paper's Figures 2, 3 and 4 from real runs, through the `plotllp` command.

- Figure 2: decision boundaries on two-moons (noise 0.2, 40 bags of 50) of DLLP, LLP-VAT and LLP-GAN,
  each alone and followed by PLOT.
- Figure 3: Fashion-MNIST, MLP, bags of 256: training-set accuracy of the model, of its OT labels and
  of the ensemble of the last 5 OT labels, through the first stage and PLOT.
- Figure 4: from one Fashion-MNIST first stage (bags of 256), PLOT with hard and with soft labels.

Run: ``python benchmarks/paper_figures.py``; the PNGs go to ``benchmarks/results/fig*.png`` and the
commands and numbers to ``benchmarks/results/figures.md``; run folders to ``runs/paper_figures``.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import RESULTS, header, write  # noqa: E402

from plotllp.cli import main as plotllp  # noqa: E402

DATA = os.path.relpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data"))
RUNS = "runs/paper_figures"
FIG = os.path.relpath(RESULTS)


def run(args: list[str], done: list[str]) -> None:
    if args[0] == "train":
        args = [*args, "--overwrite"]          # a second invocation retrains into the same folders
    cmd = "plotllp " + " ".join(shlex.quote(a) for a in args)
    print(cmd, flush=True)
    t0 = time.perf_counter()
    if plotllp(args) != 0:
        sys.exit(f"failed: {cmd}")
    done.append(f"{cmd}   # {time.perf_counter() - t0:.0f} s")


def acc(run_dir: str) -> tuple[float, float]:
    with open(os.path.join(run_dir, "results.json")) as f:
        r = json.load(f)
    return 100 * r["first_stage"]["test_accuracy"], 100 * r["final"]["test_accuracy"]


def main():
    text = header("The paper's Figures 2, 3 and 4 from real runs")
    cmds: list[str] = []
    moons = []
    for stage, extra in (("dllp", []), ("vat", ["--vat-eps", "0.3"]), ("gan", ["--lr", "3e-4", "--beta1", "0.5",
                                                                              "--lr2", "1e-3"])):
        out = f"{RUNS}/fig2_{stage}"
        run(["train", "--dataset", "moons", "--noise", "0.2", "--first-stage", stage, *extra, "--quiet", "--out", out],
            cmds)
        moons.append(out)
    run(["figure", "boundaries", *moons, "--out", f"{FIG}/fig2_moons.png"], cmds)
    common = ["--dataset", "fashion_mnist", "--data-dir", os.path.join(DATA, "fashion_mnist"), "--model", "mlp",
              "--width", "256", "--bag-size", "256", "--batch-bags", "1", "--quiet"]
    run(["train", *common, "--epochs1", "15", "--epochs2", "10", "--out", f"{RUNS}/fig3"], cmds)
    run(["figure", "curves", f"{RUNS}/fig3", "--out", f"{FIG}/fig3_fashion.png"], cmds)
    run(["train", *common, "--epochs1", "15", "--second-stage", "none", "--out", f"{RUNS}/fig4_first"], cmds)
    for labels in ("hard", "soft"):
        run(["train", *common, "--init", f"{RUNS}/fig4_first/first_stage.pt", "--epochs1", "0", "--epochs2", "10",
             "--labels", labels, "--out", f"{RUNS}/fig4_{labels}"], cmds)
    run(["figure", "labels", f"{RUNS}/fig4_hard", f"{RUNS}/fig4_soft", "--out", f"{FIG}/fig4_fashion.png"], cmds)
    from PIL import Image

    for f in ("fig2_moons", "fig3_fashion", "fig4_fashion"):        # keep small PNGs only (64-colour palette)
        svg = os.path.join(FIG, f + ".svg")
        if os.path.exists(svg):
            os.remove(svg)
        png = os.path.join(FIG, f + ".png")
        Image.open(png).convert("RGB").convert("P", palette=Image.ADAPTIVE, colors=64).save(png, optimize=True)
    lines = [f"- two-moons (noise 0.2), {s}: {a:.2f} -> + PLOT {b:.2f}"
             for s, (a, b) in zip(("DLLP", "LLP-VAT", "LLP-GAN"), map(acc, moons))]
    f3 = acc(f"{RUNS}/fig3")
    lines.append(f"- Fashion-MNIST, bags of 256 (Figure 3's run): DLLP {f3[0]:.2f} -> + PLOT {f3[1]:.2f}")
    for labels in ("hard", "soft"):
        lines.append(f"- Figure 4, {labels} labels from the same first stage ({acc(f'{RUNS}/fig4_first')[0]:.2f}): "
                     f"{acc(f'{RUNS}/fig4_{labels}')[1]:.2f}")
    text += ("\nTest accuracy % of the runs drawn (last epoch, one seed each):\n\n" + "\n".join(lines)
             + "\n\n![Figure 2](fig2_moons.png)\n\n![Figure 3](fig3_fashion.png)\n\n![Figure 4](fig4_fashion.png)\n"
             + "\nCommands, in order, with their wall time:\n\n```\n" + "\n".join(cmds) + "\n```\n")
    write("figures.md", text)


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()), epilog="Takes no options: "
                            "it trains 7 runs and draws 3 figures (506 s in all on two CPU cores, figures.md) and overwrites "
                            "benchmarks/results/fig*.png and figures.md.").parse_args()
    main()
