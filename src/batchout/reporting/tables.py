"""The report's layout: tables and sections as blocks that render to Markdown or HTML.

Usage: ``blocks = build_blocks(title, groups, factor, figures)``; then ``batchout.reporting.render``'s
``to_markdown(title, blocks)`` or ``to_html(title, blocks, images)``
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from batchout.reporting.groups import EPS_TOL, MAIN_ATTACK, TABLE_ATTACKS, Group, Stat, comparisons, eps_of, merge_eps
from batchout.reporting.reference import PAPER, PAPER_CITATION, PAPER_METHODS, SEED_RESULTS
from batchout.reporting.render import Block


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
