"""The report's figure section: per data set the robustness curves with interval bands, clean /
adversarial image pairs at the headline eps and the training curves; then the tuning landscape.
Each figure is a PNG in the report's figures/ folder and an ``img`` block with its caption; a figure without
inputs becomes a one-line note.

Usage: ``blocks = figure_blocks(groups, {"mnist": 0.1}, FigureInputs(curves, examples, trials, tune), out)``

Reads no files (the report stage does): ``FigureInputs`` holds what the figures draw besides the metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from batchout.config import TuneParams
from batchout.reporting.figures import Pairs, plot_landscape, plot_pairs, plot_training
from batchout.reporting.fmt import eps_label
from batchout.reporting.groups import EPS_TOL, Group, grid_attacks, robustness_curves
from batchout.reporting.plots import plot_robustness
from batchout.reporting.render import Block

# The figures' folder inside reports/: dvc.yaml's top-level `plots` shows it with `dvc plots show`.
FIGURES = "figures"
TUNING_FILE = f"{FIGURES}/tuning.png"
# What a trial's value is (trials.csv): a pareto study's is its robust accuracy, the quantity its pick maximises.
OBJECTIVE_NAMES = {"robust": "robust accuracy", "clean": "clean accuracy", "pareto": "robust accuracy",
                   "mix": "mix of robust and clean accuracy"}


@dataclass(frozen=True)
class FigureInputs:
    curves: dict[str, list[dict[str, float]]]  # run -> per epoch {"epoch", "val_acc", "train_loss"}
    examples: dict[str, dict[str, np.ndarray]]  # run -> the attack stage's examples/<run>.npz arrays
    trials: list[dict[str, Any]] | None  # tune/plots/trials.csv rows (k, n, value as floats); None: absent
    tune: TuneParams  # the study's data set and search scales, for the landscape's title and axes


def _img(file: str, alt: str, caption: str) -> Block:
    return Block("img", alt, (file, caption))


def robustness_figure(ds: str, groups: Sequence[Group], out: Path) -> list[Block]:
    curves = robustness_curves(groups)
    if not any(len(c["eps"]) > 1 for c in curves.values()):
        return [Block("p", f"{ds}: no robust accuracy in the attack metrics; no robustness curve.")]
    file = f"{FIGURES}/robustness_{ds}.png"
    plot_robustness(curves, out / file, title=f"{ds}: worst-case robust accuracy")
    attacks = ", ".join(grid_attacks(groups)) or "the grid's attacks"
    return [_img(file, f"Robust accuracy vs eps, {ds}",
                 f"{ds}: accuracy under the worst case per test example over every attack of the grid ({attacks}) "
                 "vs the L-inf budget eps in [0,1] pixel units; eps 0 is clean accuracy on the same attacked test "
                 "points. Lines: mean over seeds. Bands: 95 % interval of that mean with the test point as the unit "
                 "(the seeds share their attacked points) and the seed-to-seed variance included.")]


def _pairs_at(ex: dict[str, np.ndarray], eps: float) -> Pairs | None:
    hits = np.flatnonzero(np.abs(ex["eps"] - eps) <= EPS_TOL)
    if not len(hits):
        return None
    i = int(hits[0])
    return Pairs(ex["x_clean"], ex["x_adv"][i], ex["y"], ex["pred_clean"], ex["pred_adv"][i])


def pairs_figure(ds: str, groups: Sequence[Group], eps: float | None, examples: Mapping[str, dict[str, np.ndarray]],
                 out: Path) -> list[Block]:
    """One row per group: its first seed's run with an examples file that holds the headline eps."""
    if eps is None:
        return [Block("p", f"{ds}: no headline eps; no adversarial examples shown.")]
    rows, lacking = [], []
    for g in groups:
        run = next((r.name for r in g.runs if r.name in examples), None)
        pairs = _pairs_at(examples[run], eps) if run else None
        if pairs is None:
            lacking.append(g.title)
        else:
            rows.append((g.title, pairs, run))
    note = [Block("p", f"{ds}: no adversarial examples at eps {eps_label(eps)} for {', '.join(lacking)} "
                       "(examples/<run>.npz missing or of another grid; rerun its attack stage).")] if lacking else []
    if not rows:
        return note
    file = f"{FIGURES}/examples_{ds}.png"
    classes = [str(c) for c in examples[rows[0][2]].get("classes", [])]
    plot_pairs([(f"{title}\n{run}", p) for title, p, run in rows], classes, out / file,
               title=f"{ds}: clean | adversarial at eps {eps_label(eps)}")
    n = max(len(p.y) for _, p, _ in rows)
    attacks = ", ".join(grid_attacks(groups)) or "the grid's attacks"
    return [_img(file, f"Clean and adversarial examples, {ds}",
                 f"{ds}: the first {n} attacked test images, one row per method (its first seed's model), each "
                 f"as a pair clean | adversarial at the headline eps {eps_label(eps)}. The adversarial image is the "
                 f"first attack of the grid ({attacks}) that fools the model, else the clean image (not fooled). "
                 "Above each image: the predicted class, red when wrong; below each pair: the true class."), *note]


def training_figure(ds: str, groups: Sequence[Group], curves: Mapping[str, list[dict[str, float]]],
                    out: Path) -> list[Block]:
    per_group = {g.title: [curves[r.name] for r in g.runs if curves.get(r.name)] for g in groups}
    per_group = {title: runs for title, runs in per_group.items() if runs}
    if not per_group:
        return [Block("p", f"{ds}: no training curves (plots/train/<run>.csv); rerun the train stages.")]
    file = f"{FIGURES}/training_{ds}.png"
    plot_training(per_group, out / file, title=ds)
    return [_img(file, f"Training curves, {ds}",
                 f"{ds}: validation accuracy and training loss (mean over the epoch's batches) per epoch. Thin "
                 "lines: each seed's run; thick lines: the mean over seeds.")]


def tuning_figure(trials: list[dict[str, Any]] | None, tune: TuneParams, out: Path) -> list[Block]:
    if not trials:
        return [Block("p", "No tuning trials (tune/plots/trials.csv is absent or empty): run `dvc repro tune`.")]
    objective = str(trials[0]["objective"])
    name = OBJECTIVE_NAMES.get(objective, objective)
    plot_landscape(trials, out / TUNING_FILE, f"tuning on {tune.dataset}: k vs n", name, (tune.k.log, tune.n.log))
    done = sum(t["state"] == "complete" for t in trials)
    return [_img(TUNING_FILE, "Tuning landscape",
                 f"The tune stage's study on {tune.dataset} ({tune.model}, {tune.method}): every finished trial's "
                 f"BatchOut k and n, colored by its {name} on the validation subset; {done} complete, "
                 f"{len(trials) - done} pruned (grey crosses, no final value); ringed: the trial tune/best.yaml "
                 "took.")]


def figure_blocks(groups: Sequence[Group], headline: Mapping[str, float], inputs: FigureInputs,
                  out: Path) -> list[Block]:
    """The whole figure section, its PNG files written into ``out / FIGURES``."""
    (out / FIGURES).mkdir(parents=True, exist_ok=True)
    blocks = [Block("h2", "Figures")]
    for ds in dict.fromkeys(g.dataset for g in groups):
        mine = [g for g in groups if g.dataset == ds]
        blocks += [Block("h3", f"Figures: {ds}"), *robustness_figure(ds, mine, out),
                   *pairs_figure(ds, mine, headline.get(ds), inputs.examples, out),
                   *training_figure(ds, mine, inputs.curves, out)]
    return [*blocks, Block("h3", "Tuning landscape"), *tuning_figure(inputs.trials, inputs.tune, out)]
