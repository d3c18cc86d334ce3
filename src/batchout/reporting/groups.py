"""Report data: runs grouped across seeds, each group's accuracies (mean, seed std, and the 95 %
interval of the mean with the test point as the unit and the seed variance included), and the
robustness curves. The statistical comparisons are in ``batchout.reporting.compare``.

Usage: ``groups = make_groups(records)``; ``groups[0].robust("worst", 0.1)``; ``robustness_curves(groups)``

Accuracies are fractions in [0, 1] everywhere (shown as percentages by ``batchout.reporting.tables``).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchout.config import RunSpec
from batchout.io import eps_key
from batchout.names import METHODS
from batchout.reporting.clustered import arm_interval

# Verdicts use the per-example worst case over every attack of the grid: a model is only as robust as
# the strongest attack we ran says (Carlini et al. 2019). PGD stays the quantity of the seed project's table.
VERDICT_ATTACK = "worst"
MAIN_ATTACK = "pgd"
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
    seed: int | None = None  # the spec's seed; None falls back to the attack file's "seed"

    @property
    def seed_no(self) -> int | None:
        return self.seed if self.seed is not None else self.attack.get("seed")

    def flags(self, attack: str, eps: float | None) -> str | None:
        """Per attacked test point, "1" where it stayed robust to ``attack`` at ``eps`` (``None`` eps:
        classified correctly on clean input); None when the attack metrics hold no such flags."""
        if eps is None:
            return self.attack.get("clean_flags")
        return self.attack.get("robust_flags", {}).get(attack, {}).get(eps_key(eps))

    def convergence(self, eps: float) -> dict[str, Any] | None:
        """The escalation's record at ``eps`` (``converged``, ``factor``, ``budget``, ``rounds``), if any."""
        return self.attack.get("converge", {}).get("eps", {}).get(eps_key(eps))

    def converged(self, eps: float) -> bool:
        """Whether the worst case at ``eps`` rests on an attack shown to have converged (a record from before
        the escalation existed has none: its numbers are upper bounds)."""
        conv = self.convergence(eps)
        return bool(conv and conv.get("converged"))

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

    def interval(self, attack: str, eps: float | None) -> tuple[float, float] | None:
        """95 % interval of the seeds' mean accuracy under ``attack`` at ``eps`` (None: clean, on the
        attacked points): every seed is attacked on the same points, so a point is one cluster, and the
        seed-to-seed variance is part of it (``clustered.arm_interval``). Three seeds with identical
        flags give exactly one seed's Wilson interval. None without per-example flags."""
        flags = [r.flags(attack, eps) for r in self.runs]
        if not flags or any(f is None for f in flags) or len({len(f) for f in flags}) != 1 or not flags[0]:
            return None
        return arm_interval(flags)

    def flagged(self) -> list[RunRecord]:
        return [r for r in self.runs if r.masking() is not None]


def group_labels(specs: dict[str, RunSpec], tuned: Iterable[str]) -> dict[str, str]:
    """Arm name -> group label: the method (``(tuned)`` for a tuned arm), and the arm's name in
    brackets when another arm has the same data set, model and method (say two BatchOut settings)."""
    tuned = set(tuned)
    base = {n: s.method + (" (tuned)" if n in tuned else "") for n, s in specs.items()}
    key = {n: (s.dataset, s.model, base[n]) for n, s in specs.items()}
    return {n: base[n] if list(key.values()).count(key[n]) == 1 else f"{base[n]} [{n}]" for n in specs}


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


def attacks_of(groups: Iterable[Group]) -> list[str]:
    """The attacks with accuracies in the runs: the worst case first, then the grid's by name."""
    names = {a for g in groups for r in g.runs for a in r.attack.get("robust_acc", {})}
    return [VERDICT_ATTACK] * (VERDICT_ATTACK in names) + sorted(names - {VERDICT_ATTACK})


def budget_span(runs: Iterable[RunRecord], eps: float) -> str:
    """The budgets the runs' worst cases at ``eps`` rest on, as factors of the profile's: "1x", "2x-8x"."""
    factors = sorted({(r.convergence(eps) or {}).get("factor", 1) for r in runs})
    if not factors:
        return "–"
    return f"{factors[0]}x" if len(factors) == 1 else f"{factors[0]}x-{factors[-1]}x"


def grid_attacks(groups: Iterable[Group]) -> list[str]:
    """The attacks the worst case is taken over (every attack of the grid, by name)."""
    return [a for a in attacks_of(groups) if a != VERDICT_ATTACK]


def robustness_curves(groups: Sequence[Group], attack: str = VERDICT_ATTACK) -> dict[str, dict[str, list[float]]]:
    """Curves for ``plots.plot_robustness``: clean accuracy (on the attacked points) at eps 0, then the
    attack per eps; means over seeds, their sample std, and the band ``lo``/``hi``: the 95 % interval of
    the mean (``Group.interval``). A list that is not known at every point is left empty."""
    curves = {}
    for g in groups:
        pts = [(0.0, stat([r.attack["clean_acc"] for r in g.runs]), g.interval(attack, None))]
        pts += [(e, s, g.interval(attack, e)) for e in eps_of([g]) if (s := g.robust(attack, e)) is not None]
        known = all(ci is not None for _, _, ci in pts)
        curves[g.title] = {"eps": [e for e, _, _ in pts], "acc": [s.mean for _, s, _ in pts],
                           "std": [s.std or 0.0 for _, s, _ in pts] if all(s.n >= 2 for _, s, _ in pts) else [],
                           "lo": [ci[0] for _, _, ci in pts] if known else [],
                           "hi": [ci[1] for _, _, ci in pts] if known else []}
    return curves
