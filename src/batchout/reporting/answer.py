"""The report's first section: the answer to "is BatchOut more robust?" that a reader takes in at a
glance: per data set one table (comparison | eps | difference | 95 % CI | Holm p | verdict) and at
most three plain sentences; then, below the figures, the long form in words (``long_form``).

Usage: ``blocks = answer_blocks(groups, rows, headline_eps(groups, {}), {})``; ``method_note(0.05)``
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from batchout.reporting import paper
from batchout.reporting.compare import POWER, at_eps, baseline
from batchout.reporting.fmt import ci_points, eps_label, fmt_p, points
from batchout.reporting.groups import EPS_TOL, Group, grid_attacks
from batchout.reporting.render import Block

SHORT = {"not resolved": "not resolved at this sample size", "not judged": "cannot be judged",
         "upper bound": "upper bound: attack not converged"}
CLAIM = ("A 'higher' or 'lower' is a claim about these seeds' trained models on these test points, not about "
         "the method in general")


def method_note(alpha: float) -> str:
    return ("Verdicts are on the worst case per test example over every attack of the grid. Every seed of a data "
            "set is attacked on the same test points, so the test point is the unit. Robust rows: seed s of A "
            "paired with seed s of B; per test point the difference summed over the seed pairs; two-sided exact "
            "sign-flip permutation test over test points (the clustered McNemar test; exact McNemar for one seed); "
            "95 % interval: Newcombe's hybrid score interval on the pooled table, shrunk to its effective size by "
            "the point-clustered design effect. Accuracy intervals: 95 % Wilson at the effective sample size of "
            "the seeds' mean, whose variance holds the test-point (clustered) and the seed-to-seed (training) "
            "terms. Clean rows: paired t-test over seeds, t interval; zero spread cannot be judged. p-values are "
            f"Holm-adjusted over every comparison of the report; 'higher'/'lower' means significant at alpha = "
            f"{alpha:g}. 'Not resolved' rows quote the test points that would resolve the observed difference at "
            f"{100 * POWER:.0f} % power at the level Holm compared the row with (clean rows: seed pairs). A method "
            "with a single run, or fewer than two seed pairs, cannot be judged.")


def budget_words(groups: Sequence[Group]) -> str:
    """The attacks the worst case is taken over, with their budgets in words (from the attack stage)."""
    budgets: dict[str, str] = {}
    for g in groups:
        for r in g.runs:
            budgets.update(r.attack.get("budgets", {}))
    words = [budgets.get(a, a) for a in grid_attacks(groups)] or ["the grid's attacks"]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _verdict_cell(r: dict[str, Any]) -> str:
    text = {"higher": f"{r['a']} higher", "lower": f"{r['a']} lower"}.get(r["outcome"], SHORT.get(r["outcome"], ""))
    if r["outcome"] == "not judged" and r["reason"]:
        text += f" ({r['reason']})"
    if r["outcome"] == "upper bound":
        text += f" at {r['budget']}"
    return text + (" ⚠ checks failed" if r["suspect"] else "")


def answer_table(rows: Sequence[dict[str, Any]], headline: float | None) -> Block:
    """Each comparison's worst-case rows (every eps; the headline eps marked), then its clean row. ``budget``:
    the attack budget the row's worst cases rest on, as factors of the profile's (:func:`budget_legend`)."""
    header = ("comparison", "eps", "budget", "difference (points)", "95 % CI", "Holm p", "verdict")
    body = []
    for r in sorted(rows, key=lambda r: (r["a"], r["b"], r["model"], r["eps"] is None, r["eps"] or 0.0)):
        if r["eps"] is None:
            eps = "clean"
        else:
            eps = eps_label(r["eps"]) + (" (headline)" if headline is not None
                                         and abs(r["eps"] - headline) <= EPS_TOL else "")
        body.append((f"{r['a']} vs {r['b']} ({r['model']})", eps, r.get("budget") or "–",
                     "–" if r["diff"] is None else points(r["diff"], unit=""),
                     "–" if r["ci"] is None else ci_points(r["ci"]), fmt_p(r["p_holm"]), _verdict_cell(r)))
    return Block("table", items=(header, *body))


def budget_legend(groups: Sequence[Group]) -> str:
    """What each budget factor of the answer table means: the rounds' budgets in words (the escalation
    doubles every member's steps, targets and queries, each up to its cap, then restarts)."""
    words: dict[int, str] = {}
    for g in groups:
        for r in g.runs:
            for conv in r.attack.get("converge", {}).get("eps", {}).values():
                for i, rnd in enumerate(conv.get("rounds", [])):
                    words.setdefault(2 ** i, rnd["budget"])
    if not words:
        return "Budgets: no attack was escalated, so no worst case is shown to have converged (all are upper bounds)."
    return "Budgets (the worst case rests on every round up to it): " + "; ".join(
        f"{k}x: {w}" for k, w in sorted(words.items())) + "."


def _resolved_sentence(rows: Sequence[dict[str, Any]], alpha: float) -> str:
    found: dict[str, list[str]] = {}
    for r in rows:
        if r["outcome"] in ("higher", "lower"):
            what = f"{r['a']} {r['outcome']} than {r['b']}"
            found.setdefault(what, []).append("clean" if r["eps"] is None else f"eps {eps_label(r['eps'])}")
    if not found:
        return f"No comparison is resolved at this sample size (Holm, alpha = {alpha:g})."
    return (f"Resolved (Holm, alpha = {alpha:g}): " + "; ".join(f"{w} at {', '.join(e)}" for w, e in found.items())
            + "; every other row is not resolved at this sample size, an upper bound or cannot be judged.")


def sentences(groups: Sequence[Group], rows: Sequence[dict[str, Any]], eps: float, why: str, alpha: float) -> str:
    """At most three sentences: what the numbers rest on, what is resolved, and what a verdict claims."""
    n_pts = sorted({r.attack.get("n_examples") for g in groups for r in g.runs} - {None})
    seeds = sorted({len(g.runs) for g in groups})
    conv = dict.fromkeys((r.attack.get("converge") or {}).get("tolerance") for g in groups for r in g.runs)
    tol = [t for t in conv if t is not None]
    escalated = (f", the ensemble escalated per model and eps (its budget doubled) until a round broke at most "
                 f"{'/'.join(map(str, tol))} test point(s) (else an upper bound)") if tol else ""
    first = (f"Robust numbers are the worst case per test point over {budget_words(groups)}{escalated}, on "
             f"{'/'.join(map(str, n_pts)) or '?'} test points attacked under {'/'.join(map(str, seeds))} seeds per "
             f"arm; the headline eps {eps_label(eps)} is {why}.")
    flagged = sorted(r.name for g in groups for r in g.flagged())
    last = CLAIM + (f"; runs that failed an evaluation check (⚠): {', '.join(flagged)}." if flagged else ".")
    return " ".join((first, _resolved_sentence(rows, alpha), last))


def _why(groups: Sequence[Group], chosen: bool) -> str:
    if chosen:
        return "set in report.headline_eps"
    base = ", ".join(dict.fromkeys(g.label for g in baseline(groups)))
    return f"where {base}'s worst-case accuracy is furthest from 0 and from its clean accuracy"


def answer_blocks(groups: Sequence[Group], rows: Sequence[dict[str, Any]], headline: Mapping[str, float],
                  override: Mapping[str, float], alpha: float = 0.05, tolerance: float = 0.05) -> list[Block]:
    """Per data set: the answer table, three sentences and the budgets' legend; then, where the paper reports
    numbers for it, the paper's claim beside ours (``reporting.paper``; ``tolerance``: where FGSM and the
    converged attack disagree by more, the measured cause)."""
    blocks = [Block("h2", "Answer: is BatchOut more robust?")]
    for ds in dict.fromkeys(g.dataset for g in groups):
        mine, eps = [r for r in rows if r["dataset"] == ds], headline.get(ds)
        dgroups = [g for g in groups if g.dataset == ds]
        blocks.append(Block("h3", ds))
        if not mine or eps is None:
            blocks.append(Block("p", long_form(ds, dgroups, mine, eps, False)))
        else:
            blocks += [answer_table(mine, eps), Block("p", sentences(dgroups, mine, eps,
                                                                     _why(dgroups, ds in override), alpha)),
                       Block("p", budget_legend(dgroups))]
        claims = paper.claim_rows(dgroups, tolerance)
        if claims:
            blocks += [Block("h3", f"{ds}: the paper's claim (FGSM) beside ours under FGSM and under the converged "
                                   "attack"), paper.claim_table(claims), Block("p", paper.claim_words(claims))]
    return blocks


# ----------------------------------------------------------------------------- the long form, in words
def _robust_sentence(r: dict[str, Any], attacks: str) -> str:
    head = f"{r['a']} vs {r['b']} ({r['model']}) at eps {eps_label(r['eps'])}: "
    if r["p"] is None:
        diff = "difference unknown" if r["diff"] is None else f"{points(r['diff'])} (difference of seed means)"
        return f"{head}{diff}, under the worst case over {attacks}: {r['verdict']}."
    left = f" ({r['seeds_unmatched']} unmatched left out)" if r["seeds_unmatched"] else ""
    return (f"{head}{points(r['diff'])}, 95 % CI {ci_points(r['ci'])}, p = {fmt_p(r['p_holm'])} (Holm), under the "
            f"worst case over {attacks}; seeds {r['seeds_paired']}{left} on the same {r['test_points']} test points: "
            f"{r['verdict']}.")


def _clean_sentence(r: dict[str, Any]) -> str:
    outcome = SHORT.get(r["outcome"], f"{r['a']} {r['outcome']}")
    if r["p"] is None:
        return f"Clean test accuracy: {points(r['diff'])} (difference of seed means), {r['verdict'] or outcome}."
    return (f"Clean test accuracy: {points(r['diff'])}, 95 % CI {ci_points(r['ci'])}, p = {fmt_p(r['p_holm'])} "
            f"(Holm), paired t over {r['seeds_paired']} seeds: {outcome}.")


def long_form(ds: str, groups: Sequence[Group], rows: Sequence[dict[str, Any]], eps: float | None,
              chosen: bool) -> str:
    """One data set's answer in words: each compared pair at the headline eps, then its clean comparison."""
    if not rows:
        return f"{ds}: no comparison (needs BatchOut and a baseline of the same model)."
    if eps is None:
        return f"{ds}: no worst-case robust accuracy in the attack metrics; nothing to answer."
    out = [f"{ds}, at eps {eps_label(eps)} ({_why(groups, chosen)}):"]
    robust = at_eps(rows, eps)
    if not robust:
        out.append(f"no comparison was attacked at eps {eps_label(eps)}.")
    for r in robust:
        out.append(_robust_sentence(r, budget_words(groups)))
        key = (r["a"], r["b"], r["model"])
        clean = next(c for c in rows if c["eps"] is None and (c["a"], c["b"], c["model"]) == key)
        out.append(_clean_sentence(clean))
    return " ".join(out)
