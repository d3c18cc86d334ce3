"""The report's first section: the answer to "is BatchOut more robust?", one paragraph per data set,
at that data set's headline eps, in words a reader can quote.

Usage: ``blocks = answer_blocks(groups, rows, headline_eps(groups, {}), {})``; ``method_note(0.05)``
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from batchout.reporting.compare import POWER, at_eps, baseline
from batchout.reporting.fmt import ci_points, eps_label, fmt_p, points
from batchout.reporting.groups import Group, grid_attacks
from batchout.reporting.render import Block

SHORT = {"not resolved": "not resolved at this sample size", "not judged": "cannot be judged"}


def method_note(alpha: float) -> str:
    return (f"Verdicts are on the worst case per test example over every attack of the grid. Robust rows: seed s "
            "of A paired with seed s of B on the same attacked test points; two-sided exact McNemar test on the "
            "discordant points pooled over seed pairs (stratified by seed), 95 % Newcombe hybrid score interval of "
            "the paired difference. Clean rows: paired t-test over seeds, t interval. p-values are Holm-adjusted "
            f"over every comparison of the report; 'higher'/'lower' means significant at alpha = {alpha:g}. "
            f"'Not resolved' rows quote the paired test points N = (z_(1-alpha/2) + z_{POWER:g})^2 p_disc / d^2 "
            "(p_disc: discordant fraction, d: difference) that would resolve the "
            f"observed difference at {100 * POWER:.0f} % power (clean rows: the smallest seed count k with "
            f"k >= (t_(1-alpha/2, k-1) + t_({POWER:g}, k-1))^2 sd^2 / d^2). A method with a single run, or fewer "
            "than two seed pairs, cannot be judged.")


def _robust_sentence(r: dict[str, Any], attacks: str) -> str:
    head = f"{r['a']} vs {r['b']} ({r['model']}) at eps {eps_label(r['eps'])}: "
    if r["p"] is None:
        diff = "difference unknown" if r["diff"] is None else f"{points(r['diff'])} (difference of seed means)"
        return f"{head}{diff}, under the worst case over {attacks}: {r['verdict']}."
    left = f" ({r['seeds_unmatched']} unmatched left out)" if r["seeds_unmatched"] else ""
    return (f"{head}{points(r['diff'])}, 95 % CI {ci_points(r['ci'])}, p = {fmt_p(r['p_holm'])} (Holm), under the "
            f"worst case over {attacks}; seeds {r['seeds_paired']}{left}, test points {r['test_points']} per seed: "
            f"{r['verdict']}.")


def _clean_sentence(r: dict[str, Any]) -> str:
    outcome = SHORT.get(r["outcome"], f"{r['a']} {r['outcome']}")
    if r["p"] is None:
        return f"Clean test accuracy: {points(r['diff'])} (difference of seed means), {outcome}."
    return (f"Clean test accuracy: {points(r['diff'])}, 95 % CI {ci_points(r['ci'])}, p = {fmt_p(r['p_holm'])} "
            f"(Holm), paired t over {r['seeds_paired']} seeds: {outcome}.")


def dataset_paragraph(ds: str, groups: Sequence[Group], rows: Sequence[dict[str, Any]], eps: float | None,
                      chosen: bool) -> str:
    """One data set's answer: each compared pair at the headline eps, then its clean comparison."""
    if not rows:
        return f"{ds}: no comparison (needs BatchOut and a baseline of the same model)."
    if eps is None:
        return f"{ds}: no worst-case robust accuracy in the attack metrics; nothing to answer."
    base = ", ".join(dict.fromkeys(g.label for g in baseline(groups)))
    why = ("set in report.headline_eps" if chosen else
           f"the budget where {base}'s worst-case accuracy is furthest from 0 and from its clean accuracy")
    attacks = ", ".join(grid_attacks(groups)) or "the grid's attacks"
    out = [f"{ds}, at eps {eps_label(eps)} ({why}):"]
    robust = at_eps(rows, eps)
    if not robust:
        out.append(f"no comparison was attacked at eps {eps_label(eps)}.")
    for r in robust:
        out.append(_robust_sentence(r, attacks))
        key = (r["a"], r["b"], r["model"])
        clean = next(c for c in rows if c["eps"] is None and (c["a"], c["b"], c["model"]) == key)
        out.append(_clean_sentence(clean))
    return " ".join(out)


def answer_blocks(groups: Sequence[Group], rows: Sequence[dict[str, Any]], headline: Mapping[str, float],
                  override: Mapping[str, float]) -> list[Block]:
    blocks = [Block("h2", "Answer: is BatchOut more robust?")]
    for ds in dict.fromkeys(g.dataset for g in groups):
        mine = [r for r in rows if r["dataset"] == ds]
        blocks.append(Block("p", dataset_paragraph(ds, [g for g in groups if g.dataset == ds], mine,
                                                   headline.get(ds), ds in override)))
    return blocks
