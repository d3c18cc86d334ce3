"""The report's layout: tables and sections as blocks that render to Markdown or HTML.

Usage: ``blocks = build_blocks(title, groups, alpha, gallery.figure_blocks(...))``; then ``batchout.reporting.render``'s
``to_markdown(title, blocks)`` or ``to_html(title, blocks, images)``
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from batchout.io import eps_key
from batchout.reporting import answer, cost
from batchout.reporting.compare import comparisons, headline_eps
from batchout.reporting.fmt import ci_points, eps_label, fmt_p, pct, pct_ci, points
from batchout.reporting.groups import EPS_TOL, Group, attacks_of, eps_of, merge_eps, stat
from batchout.reporting.reference import PAPER, PAPER_CITATION, PAPER_METHODS, SEED_RESULTS
from batchout.reporting.render import Block


def _group_title(g: Group) -> str:
    return g.title + (" ⚠ suspected gradient masking" if g.flagged() else "")


def accuracy_table(groups: Sequence[Group], attack: str) -> Block:
    eps = eps_of(groups)
    header = ("model / method", "clean (test set)", *(f"eps {eps_label(e)}" for e in eps))
    rows = [(_group_title(g), pct(g.clean()), *(pct_ci(g.robust(attack, e), g.interval(attack, e)) for e in eps))
            for g in groups]
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
    header = ("model", "A", "B", "quantity", "A - B (pp)", "95 % CI (pp)", "p", "p (Holm)", "seeds paired",
              "test points", "verdict")
    body = []
    for r in rows:
        ci = "–" if r["ci"] is None else ci_points(r["ci"])
        pts = "test split" if r["eps"] is None else (r["test_points"] or "–")
        paired = f"{r['seeds_paired']}" + (f" ({r['seeds_unmatched']} unmatched)" if r["seeds_unmatched"] else "")
        quantity = "clean" if r["eps"] is None else f"worst case eps {eps_label(r['eps'])}"
        body.append((r["model"], r["a"], r["b"], quantity,
                     "–" if r["diff"] is None else points(r["diff"], unit=""), ci, fmt_p(r["p"]), fmt_p(r["p_holm"]),
                     paired, pts, r["verdict"]))
    return Block("table", items=(header, *body))


def convergence_table(groups: Sequence[Group]) -> Block | None:
    """Each run's PGD accuracy against steps and restarts at its informative eps (``checks.convergence``)."""
    runs = [r for g in groups for r in g.runs if r.attack.get("checks", {}).get("convergence")]
    if not runs:
        return None
    first = runs[0].attack["checks"]["convergence"]
    configs = list(zip(first["restarts"], first["steps"], strict=True))
    header = ("run", "eps", "checks subset",
              *(f"{s} steps" + (f" x {k} restarts" if k > 1 else "") for k, s in configs))
    rows = []
    for r in runs:
        conv = r.attack["checks"]["convergence"]
        acc = dict(zip(zip(conv["restarts"], conv["steps"], strict=True), conv["acc"], strict=True))
        subset = r.attack["checks"].get("subset")
        rows.append((r.name, eps_label(conv["eps"]), "?" if subset is None else f"{subset:.0f}",
                     *(f"{100 * acc[c]:.2f}" if c in acc else "–" for c in configs)))
    return Block("table", items=(header, *rows))


def breakdown_tables(groups: Sequence[Group], eps: float) -> list[Block]:
    """Per ensemble (autoattack): accuracy after each member at ``eps``, mean ± std over seeds."""
    blocks = []
    names = dict.fromkeys(n for g in groups for r in g.runs for n in r.attack.get("breakdown", {}))
    for name in names:
        cells: dict[str, dict[str, Any]] = {}
        for g in groups:
            parts = [r.attack.get("breakdown", {}).get(name, {}) for r in g.runs]
            members = dict.fromkeys(m for p in parts for m in p)
            vals = {m: [p[m][eps_key(eps)] for p in parts if eps_key(eps) in p.get(m, {})] for m in members}
            cells[g.title] = {m: stat(v) for m, v in vals.items() if len(v) == len(parts)}
        means: dict[str, list[float]] = {}
        for c in cells.values():
            for m, s in c.items():
                means.setdefault(m, []).append(s.mean)
        # Metrics files sort keys; the cascade's accuracy only falls member by member, so the
        # falling order of the accuracies recovers the order the members ran in.
        order = sorted(means, key=lambda m: -sum(means[m]) / len(means[m]))
        if not order:
            continue
        header = ("model / method", *(f"after {m}" for m in order))
        rows = [(t, *(pct(c.get(m)) for m in order)) for t, c in cells.items() if c]
        blocks += [Block("h3", f"{name}: accuracy after each member, eps {eps_label(eps)}"),
                   Block("table", items=(header, *rows))]
    return blocks


def masking_items(groups: Sequence[Group]) -> tuple[str, ...]:
    items = []
    for g in groups:
        for r in g.runs:
            failed = r.masking()
            if failed is not None:
                names = ', '.join(failed) or 'none named'
                items.append(f"{r.name}: suspected gradient masking; failed checks: {names}")
    return tuple(items)


def _robust_blocks(groups: Sequence[Group]) -> list[Block]:
    n_ex = sorted({r.attack.get("n_examples") for g in groups for r in g.runs} - {None})
    blocks = [Block("p", f"Accuracy in %, mean ± sample std over seeds (n = seeds); in brackets the 95 % interval "
                         "of that mean, with the test point as the unit (the seeds share their attacked points) "
                         "and the seed-to-seed variance included. Clean accuracy is on the whole test split; "
                         "robust accuracy on "
                         f"{', '.join(map(str, n_ex)) or '?'} attacked test examples per model, L-inf budgets in "
                         "[0,1] pixel units.")]
    for attack in attacks_of(groups):
        if any(g.robust(attack, e) for g in groups for e in eps_of([g])):
            name = "worst case over all attacks (per example)" if attack == "worst" else attack.upper()
            blocks += [Block("h3", f"Robust accuracy: {name}"), accuracy_table(groups, attack)]
    return blocks


def escalation_table(groups: Sequence[Group]) -> Block | None:
    """Each run's escalation at every eps: converged or not, the budget its worst case rests on, the
    accuracy after each round (points that round broke), and the passes it cost beside the standard
    AutoAttack's on the same points (``reporting.cost``)."""
    runs = [r for g in groups for r in g.runs if r.attack.get("converge")]
    if not runs:
        return None
    header = ("run", "eps", "converged", "budget", "accuracy (%) after each round (points it broke)",
              "passes (ours)", "standard AutoAttack (at least)")
    rows = []
    for r in runs:
        for e in r.attack["eps"]:
            conv = r.convergence(e)
            steps = " -> ".join(f"{100 * x['acc']:.1f} ({x['broken']})" for x in conv["rounds"]) or "–"
            ours = conv["passes"]["forward"] + conv["passes"]["backward"]
            standard = cost.standard_at(r.attack, e)
            rows.append((r.name, eps_label(e), "yes" if conv["converged"] else "NO (upper bound)",
                         f"{conv['factor']}x", steps, f"{ours:,}", "–" if standard is None else f"{standard:,}"))
    return Block("table", items=(header, *rows))


def dataset_blocks(dataset: str, groups: Sequence[Group], cmp_rows: Sequence[dict[str, Any]],
                   headline: float | None, chosen: bool = False) -> list[Block]:
    blocks = [Block("h2", f"Data set: {dataset}"), *_robust_blocks(groups)]
    if cmp_rows:
        blocks += [Block("h3", "Paired comparisons (Holm-corrected over the whole report)"), comparison_table(cmp_rows),
                   Block("h3", "The answer in words"),
                   Block("p", answer.long_form(dataset, groups, cmp_rows, headline, chosen))]
    conv = convergence_table(groups)
    if conv is not None:
        blocks += [Block("h3", "Convergence: PGD accuracy (%) vs steps and restarts at each model's informative eps"),
                   conv]
    esc = escalation_table(groups)
    if esc is not None:
        tol = sorted({r.attack["converge"].get("tolerance") for g in groups for r in g.runs
                      if r.attack.get("converge")} - {None})
        blocks += [Block("h3", "Convergence of the ensemble: each model's attack escalated at every eps, its budget "
                               f"doubled until a round broke at most {'/'.join(map(str, tol))} test point(s); round 0 "
                               "is the grid at the profile's budget (the ensemble check: converged at every eps)"),
                   esc, Block("p", answer.budget_legend(groups))]
        sentence = cost.cost_sentence(groups)
        blocks += [Block("p", sentence)] if sentence else []
    if headline is not None:
        blocks += breakdown_tables(groups, headline)
    paper = paper_table(dataset, groups)
    if paper is not None:
        blocks += [Block("h3", f"Beside the paper (FGSM accuracy; {PAPER_CITATION}; values digitized from its "
                               "figures)"), paper]
    return blocks


def build_blocks(title: str, groups: Sequence[Group], alpha: float, figures: Sequence[Block],
                 headline_override: Mapping[str, float] | None = None, tolerance: float = 0.05) -> list[Block]:
    """The whole report: the answer, then ``figures`` (the figure section's blocks), then the tables.
    ``tolerance``: attack.checks.tolerance, where FGSM above the converged attack gets its cause named."""
    cmp_rows = comparisons(groups, alpha)
    headline = headline_eps(groups, headline_override or {})
    blocks = answer.answer_blocks(groups, cmp_rows, headline, headline_override or {}, alpha, tolerance)
    blocks += [*figures, Block("h2", "Summary"),
               Block("p", f"{sum(len(g.runs) for g in groups)} runs in {len(groups)} groups. "
                          + answer.method_note(alpha)),
               Block("h3", "Gradient-masking checks"),
               Block("list", items=masking_items(groups) or ("no model is suspected of gradient masking",))]
    for ds in dict.fromkeys(g.dataset for g in groups):
        mine = [g for g in groups if g.dataset == ds]
        blocks += dataset_blocks(ds, mine, [r for r in cmp_rows if r["dataset"] == ds], headline.get(ds),
                                 ds in (headline_override or {}))
    if any(g.dataset == s[0] for g in groups for s in SEED_RESULTS):
        blocks += [Block("h2", "The seed project's single runs, for reference"),
                   Block("p", "Single runs, so their differences cannot be judged against seed spread."),
                   seed_table(groups)]
    return blocks
