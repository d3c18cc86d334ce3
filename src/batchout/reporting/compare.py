"""Method comparisons a robustness reviewer can accept: paired by seed, the test point as the unit,
Holm-corrected.

Usage: ``rows = comparisons(groups, alpha=0.05)``; ``headline_eps(groups, {"mnist": 0.1})``

For each ``groups.PAIRS`` comparison within a (data set, model), seed s of A is paired with seed s
of B (unmatched seeds are left out and counted). Two kinds of row:

* robust (``quantity`` "worst", one per eps): per-example worst case over every attack of the grid.
  Both sides must have attacked the same test points (equal ``examples_sha256``), and every seed of
  a data set is attacked on those same points: a point's S seed pairs are one cluster, not S
  independent samples. Per test point i, d_i = sum over seed pairs of (A robust) - (B robust); the
  test is the exact sign-flip permutation test over points (``clustered.sign_flip_p``: under H0 each
  d_i is as likely -d_i; with one seed it is exact McNemar), the difference is the mean over seed
  pairs of acc_A - acc_B, and its 95 % interval is Newcombe's on the pooled table shrunk to its
  effective size by the point-clustered design effect (``clustered.diff_interval``). The trained
  models are fixed: "A higher" is a claim about these seeds' models on these test points.
* clean (``quantity`` "clean"): test accuracy over the whole test split (no per-example flags), a
  paired t-test over the seed pairs' differences, with its t interval; zero spread cannot be judged.

A side with a single run, or fewer than two seed pairs, is never judged: one model per method
cannot separate the method from its seed. Holm's correction runs over every judged row of the
report (robust and clean, all data sets) at ``alpha``; a row that is not resolved is sized for the
level Holm compared it with (``inference.holm_levels``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from batchout.evaluation.informative import informative_eps
from batchout.io import eps_key
from batchout.reporting import clustered, inference
from batchout.reporting.groups import (
    EPS_TOL,
    PAIRS,
    VERDICT_ATTACK,
    Group,
    RunRecord,
    Stat,
    attacks_of,
    budget_span,
    eps_of,
    stat,
)

POWER = 0.8  # the power the "not resolved" sample sizes are quoted at


@dataclass(frozen=True)
class Pairing:
    pairs: list[tuple[RunRecord, RunRecord]]  # (A run, B run) of the same seed number, by seed
    unmatched: int  # runs of either side whose seed the other side lacks
    reason: str | None  # why nothing can be judged, else None


def pair_by_seed(a: Group, b: Group) -> Pairing:
    """Seed s of A with seed s of B. Runs of one group differ only in the seed, so seeds are unique."""
    sa, sb = ({r.seed_no: r for r in g.runs} for g in (a, b))
    common = sorted(set(sa) & set(sb), key=lambda s: -1 if s is None else s)
    pairs = [(sa[s], sb[s]) for s in common]
    unmatched = len(sa) + len(sb) - 2 * len(common)
    reason = None
    if len(a.runs) < 2 or len(b.runs) < 2:
        # A one-seed side has no spread of its own; its difference could be seed noise alone.
        reason = f"single run (n={len(a.runs)} vs n={len(b.runs)})"
    elif not pairs:
        reason = "no seed number in common, nothing to pair"
    elif len(pairs) < 2:
        reason = "a single seed pair (the other seeds unmatched)"
    return Pairing(pairs, unmatched, reason)


def _flags(ra: RunRecord, rb: RunRecord, eps: float) -> tuple[str, str] | str:
    """One seed pair's per-example worst-case flags on the same test points, or why not."""
    sha = ra.attack.get("examples_sha256"), rb.attack.get("examples_sha256")
    if None in sha:
        return f"attack metrics of seed {ra.seed_no} predate examples_sha256 (rerun the attack stage)"
    if sha[0] != sha[1]:
        return f"different test points (examples_sha256 of seed {ra.seed_no} differ)"
    fa, fb = (r.flags(VERDICT_ATTACK, eps) for r in (ra, rb))
    if fa is None or fb is None or len(fa) != len(fb):
        return f"no per-example flags at eps {eps:g} for seed {ra.seed_no}"
    return fa, fb


def _base_row(a: Group, b: Group, pairing: Pairing, quantity: str, eps: float | None) -> dict[str, Any]:
    return {"dataset": a.dataset, "model": a.model, "a": a.label, "b": b.label, "quantity": quantity, "eps": eps,
            "test": None, "diff": None, "ci": None, "p": None, "p_holm": None, "seeds_paired": len(pairing.pairs),
            "seeds_unmatched": pairing.unmatched, "test_points": None, "paired_points": None, "discordant": None,
            "design_effect": None, "needed": None, "holm_level": None, "outcome": "not judged",
            "reason": pairing.reason, "verdict": "", "budget": None, "unconverged": [], "upper_bound": False,
            "suspect": sorted(r.name for r in a.flagged() + b.flagged()) if eps is not None else []}


def robust_row(a: Group, b: Group, pairing: Pairing, eps: float) -> dict[str, Any]:
    row = _base_row(a, b, pairing, VERDICT_ATTACK, eps)
    runs = [r for pair in pairing.pairs for r in pair] or a.runs + b.runs
    row.update(budget=budget_span(runs, eps), unconverged=sorted(r.name for r in runs if not r.converged(eps)))
    sa, sb = a.robust(VERDICT_ATTACK, eps), b.robust(VERDICT_ATTACK, eps)
    row["diff"] = sa.mean - sb.mean if sa and sb else None  # shown even where nothing can be judged
    if pairing.reason:
        return row
    flags = [_flags(ra, rb, eps) for ra, rb in pairing.pairs]
    bad = next((f for f in flags if isinstance(f, str)), None)
    if bad is None and len({len(fa) for fa, _ in flags}) != 1:
        bad = "seeds attacked different numbers of test points"
    if bad:
        row["reason"] = bad
        return row
    pp = clustered.paired_points([fa for fa, _ in flags], [fb for _, fb in flags])
    row.update(test="exact sign-flip over test points (clustered McNemar)", test_points=pp.points,
               diff=pp.diff, ci=list(clustered.diff_interval(pp)), p=clustered.sign_flip_p(pp.d),
               paired_points=pp.points * pp.seeds, discordant={"b": pp.table[1], "c": pp.table[2]},
               design_effect=float(clustered.design_effect(pp)), _points=pp)
    if row["unconverged"]:  # a difference of upper bounds is no verdict: kept out of Holm's family
        row.update(p=None, upper_bound=True, reason=f"upper bound: attack not converged at {row['budget']} "
                                                     f"({', '.join(row['unconverged'])})")
    return row


def clean_row(a: Group, b: Group, pairing: Pairing) -> dict[str, Any]:
    row = _base_row(a, b, pairing, "clean", None)
    row["diff"] = a.clean().mean - b.clean().mean
    if pairing.reason:
        return row
    diffs = [ra.train["test_acc"] - rb.train["test_acc"] for ra, rb in pairing.pairs]
    t = inference.paired_t(diffs, alpha=0.05)  # the report's intervals are 95 % throughout
    row.update(test="paired t over seeds", diff=t.mean, ci=[t.lo, t.hi], p=t.p, _sd=t.sd)
    if t.p is None:
        row["reason"] = f"zero variance: every seed pair differs by exactly {100 * t.mean:+.2f} points"
    return row


def _size(row: dict[str, Any], level: float) -> float | None:
    """The sample that resolves the row's observed difference at ``level`` (its Holm level) and POWER:
    test points for a robust row, seed pairs for a clean one."""
    if row["quantity"] == "clean":
        return inference.seeds_needed(row["diff"], row.pop("_sd"), level, POWER)
    return clustered.points_needed(row.pop("_points"), level, POWER)


def _resolve_text(row: dict[str, Any]) -> str:
    need, level = row["needed"], row["holm_level"]
    if need is None:
        return "not resolved at this sample size: no difference observed"
    at = f"at {100 * POWER:.0f} % power and its Holm level {level:.3g}"
    if row["quantity"] == "clean":
        return f"not resolved at this sample size: about {math.ceil(need)} seed pairs would resolve a difference " \
               f"this large {at}"
    return (f"not resolved at this sample size: about {math.ceil(need)} test points (each attacked under these "
            f"{row['seeds_paired']} seed pairs; more seeds on the same points add no test points) would resolve "
            f"a difference this large {at}")


def verdict(row: dict[str, Any], alpha: float) -> tuple[str, str]:
    """(outcome, words): "higher" / "lower" (significant after Holm), "not resolved", "not judged", or
    "upper bound" (a side's attack did not converge at that eps: never a verdict)."""
    if row["upper_bound"]:
        outcome, text = "upper bound", row["reason"]
    elif row["p"] is None:
        outcome, text = "not judged", f"cannot be judged: {row['reason']}"
    elif row["p_holm"] <= alpha:
        outcome = "higher" if row["diff"] > 0 else "lower"
        text = f"{row['a']} {outcome}"
    else:
        outcome, text = "not resolved", _resolve_text(row)
    if row["suspect"]:
        text += f"; suspect: gradient masking suspected in {', '.join(row['suspect'])}"
    return outcome, text


def comparisons(groups: Sequence[Group], alpha: float) -> list[dict[str, Any]]:
    """Every PAIRS comparison within a (data set, model): clean, then worst case per eps; Holm over all."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: got {alpha}; allowed: 0 < alpha < 1")
    rows = []
    for a in groups:
        for b in groups:
            if (a.method, b.method) not in PAIRS or (a.dataset, a.model) != (b.dataset, b.model):
                continue
            pairing = pair_by_seed(a, b)
            rows.append(clean_row(a, b, pairing))
            rows += [robust_row(a, b, pairing, e) for e in eps_of([a, b])]
    judged = [r for r in rows if r["p"] is not None]
    pvals = [r["p"] for r in judged]
    for r, adj, level in zip(judged, inference.holm(pvals), inference.holm_levels(pvals, alpha), strict=True):
        r["p_holm"], r["holm_level"] = adj, level
        r["needed"] = _size(r, level)
    for r in rows:
        r.pop("_points", None), r.pop("_sd", None)
        r["outcome"], r["verdict"] = verdict(r, alpha)
    return rows


def baseline(groups: Sequence[Group]) -> list[Group]:
    """The groups of the first PAIRS baseline method present (standard before adversarial), else all."""
    for m in dict.fromkeys(b for _, b in PAIRS):
        mine = [g for g in groups if g.method == m]
        if mine:
            return mine
    return list(groups)


def headline_eps(groups: Sequence[Group], override: Mapping[str, float]) -> dict[str, float]:
    """Per data set, ``override`` when given, else the eps whose worst-case accuracy of the baseline
    is furthest from both 0 and its clean accuracy (on the attacked points), where a difference between
    methods can show: at 0 % or at clean accuracy every method ties. Ties go to the smaller eps."""
    out = {}
    for ds in dict.fromkeys(g.dataset for g in groups):
        if ds in override:
            out[ds] = float(override[ds])
            continue
        base = baseline([g for g in groups if g.dataset == ds])
        clean = stat([r.attack["clean_acc"] for g in base for r in g.runs]).mean
        means = {}
        for e in eps_of(base):
            accs = [s.mean for g in base if (s := g.robust(VERDICT_ATTACK, e)) is not None]
            if accs:
                means[e] = sum(accs) / len(accs)
        if means:
            out[ds] = informative_eps(list(means), means, clean)
    return out


def at_eps(rows: Sequence[dict[str, Any]], eps: float) -> list[dict[str, Any]]:
    return [r for r in rows if r["eps"] is not None and abs(r["eps"] - eps) <= EPS_TOL]


def counts(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """How many rows are significant (after Holm), not resolved, not judged, or suspect."""
    return {"significant": sum(r["outcome"] in ("higher", "lower") for r in rows),
            "not_resolved": sum(r["outcome"] == "not resolved" for r in rows),
            "not_judged": sum(r["outcome"] == "not judged" for r in rows),
            "upper_bound": sum(r["outcome"] == "upper bound" for r in rows),
            "suspect": sum(bool(r["suspect"]) for r in rows)}


def summary(groups: Sequence[Group], alpha: float, headline: Mapping[str, float]) -> dict[str, Any]:
    """Machine-readable report content (summary.json)."""
    def d(s: Stat | None, ci: tuple[float, float] | None = None) -> dict[str, Any] | None:
        out = None if s is None else {"mean": s.mean, "std": s.std, "n": s.n}
        if out is not None and ci is not None:
            out["ci95"] = list(ci)  # test point as the unit, seed variance included (Group.interval)
        return out

    rows = comparisons(groups, alpha)
    return {
        "alpha": alpha, "verdict_attack": VERDICT_ATTACK, "headline_eps": dict(headline), "counts": counts(rows),
        "groups": [{"dataset": g.dataset, "model": g.model, "method": g.method, "label": g.label,
                    "runs": [r.name for r in g.runs], "clean": d(g.clean()),
                    "robust": {a: {eps_key(e): d(g.robust(a, e), g.interval(a, e)) for e in eps_of([g])}
                               for a in attacks_of([g])},
                    "suspected_gradient_masking": {r.name: r.masking() for r in g.flagged()}}
                   for g in groups],
        "comparisons": rows,
    }
