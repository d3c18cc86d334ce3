"""Report arithmetic: group runs across seeds, judge method differences against the seed spread,
set our numbers beside the paper's, and lay the report out as blocks that render to Markdown or HTML.

Usage: ``groups = make_groups(records); blocks = build_blocks(title, groups, factor, figures)``;
``to_markdown(title, blocks)``; ``to_html(title, blocks, images)``

Accuracies are fractions in [0, 1] everywhere and shown as percentages.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchout.config import METHODS, RunSpec
from batchout.report_render import Block, to_html, to_markdown  # noqa: F401 (re-exported)

MAIN_ATTACK = "pgd"
TABLE_ATTACKS = ("pgd", "fgsm", "worst")  # PGD is our main attack; the paper reports FGSM
PAIRS = (("batchout", "standard"), ("batchout", "adversarial"), ("batchout_final", "standard"))
EPS_TOL = 1e-6

PAPER_CITATION = 'Subramanya, Mopuri, Babu, "BatchOut", ICVGIP 2018'
PAPER_METHODS = {"standard": "standard", "adversarial": "FGSM-AT", "batchout": "BatchOut"}
# FGSM accuracy (%) digitized from the paper's figures; "clean" is its clean test accuracy (%).
PAPER: dict[str, dict[str, Any]] = {
    "mnist": {"eps": [0.1, 0.2, 0.3, 0.4, 0.5],
              "fgsm": {"standard": [80.2, 33.9, 19.4, 13.3, 10.9], "FGSM-AT": [96.4, 97.6, 96.2, 95.1, 88.2],
                       "BatchOut": [96.5, 96.3, 96.0, 95.6, 94.9]},
              "clean": {"standard": 99.47, "FGSM-AT": 99.31, "BatchOut": 99.12}},
    "cifar10": {"eps": [v / 255 for v in (1, 2, 3, 4, 5)],
                "fgsm": {"standard": [54.7, 43.6, 41.0, 39.9, 39.3], "FGSM-AT": [73.3, 67.7, 61.1, 54.1, 48.3],
                         "BatchOut": [70.4, 61.5, 56.5, 54.2, 53.0]},
                "clean": {"standard": 80.22, "FGSM-AT": 80.01, "BatchOut": 80.79}},
}
# The seed project's own single-run numbers (%): (dataset, model, quantity, eps or None, standard, final).
# quantity "clean" = test accuracy, "pgd" = our main attack at eps, None = the seed does not say.
SEED_RESULTS = (("cifar3", "resnet_bottleneck", "clean", None, 90.66, 90.86),
                ("cifar3", "resnet_bottleneck", MAIN_ATTACK, 5 / 255, 58.0, 64.0),
                ("cifar10", "resnet_bottleneck", "clean", None, 78.3, 85.2))  # test accuracy per the notes


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float | None  # sample std (ddof=1) across seeds; None for a single run
    n: int


def stat(values: Sequence[float]) -> Stat:
    vals = [float(v) for v in values]
    return Stat(statistics.fmean(vals), statistics.stdev(vals) if len(vals) >= 2 else None, len(vals))


@dataclass(frozen=True)
class RunRecord:
    name: str
    dataset: str
    model: str
    method: str
    label: str  # the group label: method, "(tuned)" or a config stem when one method has several configs
    train: dict[str, Any]
    attack: dict[str, Any]

    def masking(self) -> list[str] | None:
        """Failed check names when gradient masking is suspected, else None."""
        checks = self.attack.get("checks", {})
        if not checks.get("suspected_gradient_masking"):
            return None
        # Only "<name>_ok" entries are checks; other booleans describe how a check ran.
        return [k for k, ok in checks.items() if k.endswith("_ok") and ok is False]


@dataclass
class Group:
    dataset: str
    model: str
    method: str
    label: str
    runs: list[RunRecord] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.model} {self.label}"

    def clean(self) -> Stat:
        return stat([r.train["test_acc"] for r in self.runs])

    def robust(self, attack: str, eps: float) -> Stat | None:
        vals = [r.attack.get("robust_acc", {}).get(attack, {}).get(f"eps_{eps:.4f}") for r in self.runs]
        return stat(vals) if vals and all(v is not None for v in vals) else None

    def flagged(self) -> list[RunRecord]:
        return [r for r in self.runs if r.masking() is not None]


def group_labels(specs: dict[str, RunSpec], tuned: Iterable[str]) -> dict[str, str]:
    """Run name -> group label. Runs whose settings differ only in the seed share a label."""
    tuned = set(tuned)
    sig = {n: (s.model_dump_json(exclude={"seed"}), n in tuned) for n, s in specs.items()}
    base = {n: s.method + (" (tuned)" if n in tuned else "") for n, s in specs.items()}
    labels = {}
    for name, spec in specs.items():
        rivals = {sig[o] for o, so in specs.items()
                  if (so.dataset, so.model, base[o]) == (spec.dataset, spec.model, base[name])}
        stem = re.sub(r"-s\d+$", "", min(o for o in specs if sig[o] == sig[name]))
        labels[name] = base[name] if len(rivals) == 1 else f"{base[name]} [{stem}]"
    return labels


def make_groups(records: Iterable[RunRecord]) -> list[Group]:
    """Groups by (dataset, model, label), ordered by dataset first seen, model, then method order."""
    groups: dict[tuple[str, str, str], Group] = {}
    for r in records:
        groups.setdefault((r.dataset, r.model, r.label), Group(r.dataset, r.model, r.method, r.label)).runs.append(r)
    first = {}
    for ds, _, _ in groups:
        first.setdefault(ds, len(first))
    return sorted(groups.values(),
                  key=lambda g: (first[g.dataset], g.model, METHODS.index(g.method), g.label))


def merge_eps(*lists: Iterable[float]) -> list[float]:
    """The sorted union of budgets, equal values (within EPS_TOL) merged."""
    out: list[float] = []
    for e in sorted(float(e) for eps in lists for e in eps):
        if not out or e - out[-1] > EPS_TOL:
            out.append(e)
    return out


def eps_of(groups: Iterable[Group]) -> list[float]:
    return merge_eps(*(r.attack.get("eps", []) for g in groups for r in g.runs))


@dataclass(frozen=True)
class Verdict:
    diff: float  # mean(a) - mean(b), fraction
    pooled: float | None  # pooled sample std; None when a side is a single run
    real: bool | None  # None: cannot be judged
    text: str


def compare(a: Stat, b: Stat, factor: float) -> Verdict:
    """Is the difference of means larger than ``factor`` x the pooled seed-to-seed std?"""
    diff = a.mean - b.mean
    if a.n < 2 or b.n < 2:
        # A one-seed side has no spread of its own; its difference could be seed noise alone.
        return Verdict(diff, None, None, f"single run (n={a.n} vs n={b.n}); cannot be judged")
    pooled = math.sqrt(((a.n - 1) * a.std**2 + (b.n - 1) * b.std**2) / (a.n + b.n - 2))
    real = abs(diff) > factor * pooled
    word = "larger than" if real else "within"
    return Verdict(diff, pooled, real, f"{word} the seed-to-seed spread ({factor:g} x {100 * pooled:.2f} pp)")


def comparisons(groups: Sequence[Group], factor: float) -> list[dict[str, Any]]:
    """Every PAIRS difference within a (dataset, model), on clean accuracy and the main attack."""
    rows = []
    for a in groups:
        for b in groups:
            if (a.method, b.method) not in PAIRS or (a.dataset, a.model) != (b.dataset, b.model):
                continue
            quantities = [("clean", None, a.clean(), b.clean())]
            quantities += [(MAIN_ATTACK, e, a.robust(MAIN_ATTACK, e), b.robust(MAIN_ATTACK, e)) for e in eps_of([a, b])]
            suspect = "; robust numbers suspect (gradient masking)" if a.flagged() or b.flagged() else ""
            for q, eps, sa, sb in quantities:
                if sa is not None and sb is not None:
                    v = compare(sa, sb, factor)
                    rows.append({"dataset": a.dataset, "model": a.model, "a": a.label, "b": b.label,
                                 "quantity": q, "eps": eps, "diff": v.diff, "pooled_std": v.pooled,
                                 "larger_than_spread": v.real, "verdict": v.text + (suspect if eps else "")})
    return rows


# ----------------------------------------------------------------------------- formatting
def pct(s: Stat | None) -> str:
    if s is None:
        return "–"
    if s.n == 1:
        return f"{100 * s.mean:.2f} (single run)"
    return f"{100 * s.mean:.2f} ± {100 * s.std:.2f} (n={s.n})"


def eps_label(eps: float) -> str:
    k = round(eps * 255)
    return f"{k}/255" if 0 < k <= 16 and abs(eps * 255 - k) < 1e-4 else f"{eps:g}"


def _group_title(g: Group) -> str:
    return g.title + (" ⚠ suspected gradient masking" if g.flagged() else "")


def accuracy_table(groups: Sequence[Group], attack: str) -> Block:
    eps = eps_of(groups)
    header = ("model / method", "clean (test set)", *(f"eps {eps_label(e)}" for e in eps))
    rows = [(_group_title(g), pct(g.clean()), *(pct(g.robust(attack, e)) for e in eps)) for g in groups]
    return Block("table", items=(header, *rows))


def paper_table(dataset: str, groups: Sequence[Group]) -> Block | None:
    """Our FGSM accuracy beside the paper's, one column pair per group of a paper method."""
    paper = PAPER.get(dataset)
    mine = [g for g in groups if g.method in PAPER_METHODS]
    if paper is None or not mine:
        return None
    header = ["eps"]
    for g in mine:
        header += [f"{g.title} (ours)", f"{PAPER_METHODS[g.method]} (paper)"]
    rows = [("clean", *[c for g in mine for c in (pct(g.clean()), f"{paper['clean'][PAPER_METHODS[g.method]]:.2f}")])]
    for e in merge_eps(eps_of(mine), paper["eps"]):
        idx = [i for i, p in enumerate(paper["eps"]) if abs(p - e) <= EPS_TOL]
        cells = [eps_label(e)]
        for g in mine:
            ours = g.robust("fgsm", e)
            cells += ["not run" if ours is None else pct(ours),
                      f"{paper['fgsm'][PAPER_METHODS[g.method]][idx[0]]:.1f}" if idx else "–"]
        rows.append(tuple(cells))
    return Block("table", items=(tuple(header), *rows))


def seed_table(groups: Sequence[Group]) -> Block:
    """The seed project's single runs beside ours (standard vs batchout_final)."""
    def ours(ds: str, model: str, method: str, q: str | None, eps: float | None) -> str:
        g = next((g for g in groups if (g.dataset, g.model, g.method) == (ds, model, method)), None)
        if g is None or q is None:
            return "–"
        return pct(g.clean() if q == "clean" else g.robust(q, eps))

    rows = []
    for ds, model, q, eps, std, fin in SEED_RESULTS:
        what = {"clean": "clean test accuracy", None: "accuracy (quantity not stated)"}.get(
            q, f"robust at eps {eps_label(eps or 0.0)} (ours: {str(q).upper()})")
        rows.append((ds, model, what, f"{std:.2f}", f"{fin:.2f}",
                     ours(ds, model, "standard", q, eps), ours(ds, model, "batchout_final", q, eps)))
    header = ("data set", "model", "quantity", "seed standard", "seed batchout_final",
              "ours standard", "ours batchout_final")
    return Block("table", items=(header, *rows))


def comparison_table(rows: Sequence[dict[str, Any]]) -> Block:
    header = ("model", "A", "B", "quantity", "A - B (pp)", "verdict")
    body = [(r["model"], r["a"], r["b"], "clean" if r["eps"] is None else f"{r['quantity']} eps {eps_label(r['eps'])}",
             f"{100 * r['diff']:+.2f}", r["verdict"]) for r in rows]
    return Block("table", items=(header, *body))


def masking_items(groups: Sequence[Group]) -> tuple[str, ...]:
    items = []
    for g in groups:
        for r in g.runs:
            failed = r.masking()
            if failed is not None:
                names = ', '.join(failed) or 'none named'
                items.append(f"{r.name}: suspected gradient masking; failed checks: {names}")
    return tuple(items)


def dataset_blocks(dataset: str, groups: Sequence[Group], cmp_rows: Sequence[dict[str, Any]],
                   figure: str | None) -> list[Block]:
    n_ex = sorted({r.attack.get("n_examples") for g in groups for r in g.runs} - {None})
    blocks = [Block("h2", f"Data set: {dataset}"),
              Block("p", f"Accuracy in %, mean ± sample std over seeds (n = seeds). Clean accuracy is on the "
                         f"whole test split; robust accuracy on {', '.join(map(str, n_ex)) or '?'} attacked "
                         "test examples per model, L-inf budgets in [0,1] pixel units.")]
    for attack in TABLE_ATTACKS:
        if any(g.robust(attack, e) for g in groups for e in eps_of([g])):
            name = "worst case over all attacks (per example)" if attack == "worst" else attack.upper()
            blocks += [Block("h3", f"Robust accuracy: {name}"), accuracy_table(groups, attack)]
    if figure:
        blocks.append(Block("img", f"{MAIN_ATTACK.upper()} robust accuracy vs eps, {dataset}", (figure,)))
    if cmp_rows:
        blocks += [Block("h3", "Is the difference larger than the seed-to-seed spread?"), comparison_table(cmp_rows)]
    paper = paper_table(dataset, groups)
    if paper is not None:
        blocks += [Block("h3", f"Beside the paper (FGSM accuracy; {PAPER_CITATION}; values digitized from its "
                               "figures)"), paper]
    return blocks


def build_blocks(title: str, groups: Sequence[Group], factor: float, figures: dict[str, str]) -> list[Block]:
    """The whole report; ``figures[dataset]`` is the file name of that data set's plot."""
    cmp_rows = comparisons(groups, factor)
    flagged = masking_items(groups)
    blocks = [Block("h2", "Summary"),
              Block("p", f"{sum(len(g.runs) for g in groups)} runs in {len(groups)} groups. A difference between "
                         f"two methods counts as real when |difference of means| > {factor:g} x the pooled sample "
                         "std over seeds; with a single run on either side it cannot be judged."),
              Block("h3", "Gradient-masking checks"),
              Block("list", items=flagged or ("no model is suspected of gradient masking",))]
    for ds in dict.fromkeys(g.dataset for g in groups):
        mine = [g for g in groups if g.dataset == ds]
        blocks += dataset_blocks(ds, mine, [r for r in cmp_rows if r["dataset"] == ds], figures.get(ds))
    if any(g.dataset == s[0] for g in groups for s in SEED_RESULTS):
        blocks += [Block("h2", "The seed project's single runs, for reference"),
                   Block("p", "Single runs, so their differences cannot be judged against seed spread."),
                   seed_table(groups)]
    return blocks


def robustness_curves(groups: Sequence[Group], attack: str = MAIN_ATTACK) -> dict[str, dict[str, list[float]]]:
    """Curves for ``plots.plot_robustness``: clean accuracy at eps 0, then the attack per eps."""
    curves = {}
    for g in groups:
        pts = [(0.0, stat([r.attack["clean_acc"] for r in g.runs]))]
        pts += [(e, s) for e in eps_of([g]) if (s := g.robust(attack, e)) is not None]
        stds = [s.std or 0.0 for _, s in pts]
        curves[g.title] = {"eps": [e for e, _ in pts], "acc": [s.mean for _, s in pts],
                           "std": stds if all(s.n >= 2 for _, s in pts) else []}
    return curves


def summary(groups: Sequence[Group], factor: float) -> dict[str, Any]:
    """Machine-readable report content (summary.json)."""
    def d(s: Stat | None) -> dict[str, Any] | None:
        return None if s is None else {"mean": s.mean, "std": s.std, "n": s.n}

    return {
        "spread_factor": factor,
        "groups": [{"dataset": g.dataset, "model": g.model, "method": g.method, "label": g.label,
                    "runs": [r.name for r in g.runs], "clean": d(g.clean()),
                    "robust": {a: {f"eps_{e:.4f}": d(g.robust(a, e)) for e in eps_of([g])} for a in TABLE_ATTACKS},
                    "suspected_gradient_masking": {r.name: r.masking() for r in g.flagged()}}
                   for g in groups],
        "comparisons": comparisons(groups, factor),
    }


# ----------------------------------------------------------------------------- rendering
