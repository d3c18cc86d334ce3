"""The paper's claim against ours: per arm and eps the paper's FGSM accuracy, ours under FGSM and ours under
the converged attack, with 95 % intervals; in words, whether the claim is reproduced under FGSM and whether
it survives a converged attack; and where FGSM and the converged attack disagree, the cause we measured.

Usage: ``rows = claim_rows(groups, tolerance=0.05)``; ``claim_table(rows)``; ``claim_words(rows)``

A verdict cell compares the paper's number with our 95 % interval (the test point as the unit, seeds
included: ``Group.interval``): "reproduced" inside it, "ours higher" / "ours lower" outside. The causes are
measurements, never guesses: checks that failed on the arm's runs, an FGSM curve that rises with eps (FGSM
accuracy at a larger eps above a smaller one's), and the share of points whose cross-entropy gradient is
exactly zero in fp32 (``checks.vanishing_gradient``: FGSM's sign step is then zero).
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import fmean
from typing import Any

from batchout.reporting.fmt import eps_label
from batchout.reporting.groups import EPS_TOL, VERDICT_ATTACK, Group, budget_span, eps_of
from batchout.reporting.reference import PAPER, PAPER_CITATION, PAPER_METHODS
from batchout.reporting.render import Block

CLAIM_METHOD = "batchout"  # the paper's claim is BatchOut's robustness


def _versus(paper: float | None, ci: tuple[float, float] | None) -> str:
    if paper is None or ci is None:
        return "–"
    lo, hi = 100 * ci[0], 100 * ci[1]
    return "reproduced" if lo <= paper <= hi else ("ours higher" if lo > paper else "ours lower")


def _causes(g: Group, e: float, eps: Sequence[float]) -> str:
    """Why FGSM stays above the converged attack on ``g`` at ``e``, from what the attack stage measured."""
    found = []
    failed = sorted({name for r in g.runs for name in (r.masking() or [])})
    if failed:
        found.append(f"checks failed on {sum(r.masking() is not None for r in g.runs)} of {len(g.runs)} seeds "
                     f"({', '.join(failed)})")
    fgsm = [(x, s.mean) for x in eps if x <= e + EPS_TOL and (s := g.robust("fgsm", x)) is not None]
    rises = [(a, b) for (a, fa), (b, fb) in zip(fgsm, fgsm[1:], strict=False) if fb > fa + EPS_TOL]
    if rises:
        a, b = rises[-1]
        found.append(f"the FGSM curve rises with eps ({eps_label(a)} -> {eps_label(b)}): on this arm FGSM is not "
                     "even monotone in its budget")
    zero = [r.attack.get("checks", {}).get("vanishing_gradient") for r in g.runs]
    if all(z is not None for z in zero) and fmean(zero) > 0.01:
        found.append(f"the cross-entropy gradient is exactly zero (fp32) on {100 * fmean(zero):.0f} % of the "
                     "points, so FGSM cannot move them")
    return "; ".join(found) or "no check failed: FGSM is one step, and more steps and restarts find points it misses"


def claim_rows(groups: Sequence[Group], tolerance: float) -> list[dict[str, Any]]:
    """One row per (arm of a data set the paper reports, eps the paper reports and we attacked), in the groups'
    order; ``paper`` None for an arm the paper has no number for (a tuned arm, another method); a cause where
    FGSM's accuracy is more than ``tolerance`` (a fraction) above the converged attack's."""
    rows = []
    for g in groups:
        paper = PAPER.get(g.dataset)
        if paper is None:
            continue
        column = PAPER_METHODS.get(g.method) if g.label == g.method else None
        for i, e in enumerate(paper["eps"]):
            fgsm, conv = g.robust("fgsm", e), g.robust(VERDICT_ATTACK, e)
            if fgsm is None or conv is None:
                continue
            value = None if column is None else paper["fgsm"][column][i]
            row = {"dataset": g.dataset, "arm": g.title, "method": g.method, "eps": e, "paper": value,
                   "fgsm": fgsm.mean, "fgsm_ci": g.interval("fgsm", e), "converged": conv.mean,
                   "converged_ci": g.interval(VERDICT_ATTACK, e), "budget": budget_span(g.runs, e),
                   "all_converged": all(r.converged(e) for r in g.runs)}
            row["fgsm_vs_paper"] = _versus(value, row["fgsm_ci"])
            row["converged_vs_paper"] = _versus(value, row["converged_ci"])
            gap = fgsm.mean - conv.mean
            row["cause"] = _causes(g, e, eps_of([g])) if gap > tolerance else ""
            rows.append(row)
    return rows


def _pct(mean: float, ci: tuple[float, float] | None) -> str:
    return f"{100 * mean:.1f}" + ("" if ci is None else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]")


def claim_table(rows: Sequence[dict[str, Any]]) -> Block:
    header = ("arm", "eps", "paper (FGSM, %)", "ours FGSM (%) [95 % CI]", "ours converged (%) [95 % CI]", "budget",
              "FGSM vs paper", "converged vs paper", "FGSM above converged: measured cause")
    body = [(r["arm"], eps_label(r["eps"]), "–" if r["paper"] is None else f"{r['paper']:.1f}",
             _pct(r["fgsm"], r["fgsm_ci"]),
             _pct(r["converged"], r["converged_ci"]) + ("" if r["all_converged"] else " (upper bound)"),
             r["budget"], r["fgsm_vs_paper"], r["converged_vs_paper"], r["cause"] or "–") for r in rows]
    return Block("table", items=(header, *body))


def _which(rows: Sequence[dict[str, Any]], held: Sequence[dict[str, Any]], yes: str, no: str) -> str:
    """"<yes> at every eps", "<no> (at eps ...)" or "<yes> at eps A and <no> at B"."""
    def eps(rs: Sequence[dict[str, Any]]) -> str:
        return ", ".join(eps_label(r["eps"]) for r in rs)

    missed = [r for r in rows if r not in held]
    if not missed:
        return f"{yes} at every eps the paper reports and we attacked ({eps(rows)})"
    if not held:
        return f"{no} at any of them ({eps(rows)})"
    return f"{yes} at eps {eps(held)} and {no} at {eps(missed)}"


def claim_words(rows: Sequence[dict[str, Any]]) -> str:
    """The paper's BatchOut claim in plain words: reproduced under FGSM? does it survive the converged attack?"""
    mine = [r for r in rows if r["method"] == CLAIM_METHOD and r["paper"] is not None]
    if not mine:
        return f"No BatchOut arm with the paper's setup was attacked at the paper's eps ({PAPER_CITATION})."
    held = [r for r in mine if r["fgsm_vs_paper"] in ("reproduced", "ours higher")]
    survives = [r for r in mine if r["converged_vs_paper"] in ("reproduced", "ours higher") and r["all_converged"]]
    last = mine[-1]
    status = "converged" if last["all_converged"] else "an upper bound"
    return (f"Under FGSM, the paper's attack, the BatchOut claim ({PAPER_CITATION}) "
            f"{_which(mine, held, 'is reproduced', 'is not reproduced (ours lower)')}. Against the converged "
            f"attack it {_which(mine, survives, 'survives', 'does not survive')}: at eps {eps_label(last['eps'])} "
            f"the paper reports {last['paper']:.1f} %, ours is {100 * last['fgsm']:.1f} % under FGSM and "
            f"{100 * last['converged']:.1f} % under the converged attack "
            f"({status}, at {last['budget']} the profile's budget).")
