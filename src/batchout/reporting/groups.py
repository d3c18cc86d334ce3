"""Report arithmetic: group runs across seeds, summarise each group, and judge method differences
against the seed-to-seed spread.

Usage: ``groups = make_groups(records); rows = comparisons(groups, factor)``; ``summary(groups, factor)``

Accuracies are fractions in [0, 1] everywhere (shown as percentages by ``batchout.reporting.tables``).
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchout.config import RunSpec
from batchout.io import eps_key
from batchout.layers.batchout import METHODS

MAIN_ATTACK = "pgd"
TABLE_ATTACKS = ("pgd", "fgsm", "worst")  # PGD is our main attack; the paper reports FGSM
PAIRS = (("batchout", "standard"), ("batchout", "adversarial"), ("batchout_final", "standard"))
EPS_TOL = 1e-6


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
        vals = [r.attack.get("robust_acc", {}).get(attack, {}).get(eps_key(eps)) for r in self.runs]
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
                    "robust": {a: {eps_key(e): d(g.robust(a, e)) for e in eps_of([g])} for a in TABLE_ATTACKS},
                    "suspected_gradient_masking": {r.name: r.masking() for r in g.flagged()}}
                   for g in groups],
        "comparisons": comparisons(groups, factor),
    }


# ----------------------------------------------------------------------------- rendering
