"""Paired, Holm-corrected comparisons and the report sections built on them, on tiny hand-made runs.

Usage: ``.venv/bin/pytest tests/test_report_compare.py``

Each run is a RunRecord with per-example worst-case flags written out by hand, so every discordant
count below can be read off the ranges of robust test points.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from conftest import converge_doc

from batchout.io import eps_key
from batchout.reporting import answer, clustered, compare, inference, render, tables
from batchout.reporting.groups import RunRecord, make_groups

Z975, Z80 = 1.959963984540054, 0.8416212335729143  # standard normal quantiles (tables)


def _flags(robust: range, n: int) -> str:
    return "".join("1" if i in robust else "0" for i in range(n))


def rec(method: str, seed: int, flags: dict[float, str], test_acc: float, *, sha: str = "pts",
        dataset: str = "mnist", breakdown: dict | None = None, converged: bool = True) -> RunRecord:
    n = len(next(iter(flags.values())))
    acc = {eps_key(e): f.count("1") / n for e, f in flags.items()}
    attack = {"eps": sorted(flags), "n_examples": n, "examples_sha256": sha, "clean_acc": 0.9, "seed": seed,
              "robust_acc": {"worst": acc, "pgd": acc},
              "robust_flags": {"worst": {eps_key(e): f for e, f in flags.items()}},
              "breakdown": breakdown or {}, "checks": {},
              "converge": converge_doc(sorted(flags), [acc[eps_key(e)] for e in sorted(flags)], n,
                                       converged=converged)}
    return RunRecord(f"{dataset}-lenet-{method}-s{seed}", dataset, "lenet", method, method, {"test_acc": test_acc},
                     attack, seed=seed)


def _exact_p(b: int, c: int) -> float:
    n = b + c
    return float(min(Fraction(1), 2 * Fraction(sum(math.comb(n, i) for i in range(min(b, c) + 1)), 2**n)))


def _robust(rows: list[dict]) -> dict:
    return next(r for r in rows if r["quantity"] == "worst")


def test_seed_pairs_on_the_same_points_are_tested_per_point():
    # seed 0: A robust on 0..29, B on 20..39 -> b = 20, c = 10; seed 1: A on 0..9, B on 5..29 -> b = 5, c = 20.
    # Per point (sum over the two seed pairs): 0..4 +1, 5..9 0, 10..19 +1 -1 = 0, 20..29 -1 +(-1) ... read off below.
    spans = {("batchout", 0): range(30), ("standard", 0): range(20, 40), ("batchout", 1): range(10),
             ("standard", 1): range(5, 30)}
    runs = [rec(m, s, {0.1: _flags(span, 50)}, 0.97 + 0.01 * s) for (m, s), span in spans.items()]
    row = _robust(compare.comparisons(make_groups(runs), 0.05))
    d = [sum((i in spans[("batchout", s)]) - (i in spans[("standard", s)]) for s in (0, 1)) for i in range(50)]
    assert row["discordant"] == {"b": 25, "c": 30}  # the pooled table is still reported
    # The old code tested the pooled table, p = exact McNemar(25, 30) = 0.590; the unit is now the test point.
    assert row["p"] == pytest.approx(clustered.sign_flip_p(d), rel=1e-12) != pytest.approx(_exact_p(25, 30))
    assert row["test"] == "exact sign-flip over test points (clustered McNemar)"
    assert row["diff"] == pytest.approx(((20 - 10) / 50 + (5 - 20) / 50) / 2)  # mean of the per-seed differences
    assert row["ci"][0] < -0.05 < row["ci"][1] and row["seeds_paired"] == 2 and row["test_points"] == 50


def test_significant_both_ways_and_holm_over_data_sets():
    # mnist: batchout robust on 0..59, standard on 0..39 (the same 20 points per seed); cifar10: the other way round
    def pair(ds: str, more: str) -> list[RunRecord]:
        wide, narrow = _flags(range(60), 100), _flags(range(40), 100)
        return [rec(m, s, {0.1: wide if m == more else narrow}, 0.9 + 0.01 * s, dataset=ds)
                for m in ("standard", "batchout") for s in (0, 1)]

    rows = compare.comparisons(make_groups(pair("mnist", "batchout") + pair("cifar10", "standard")), 0.05)
    up, down = (_robust([r for r in rows if r["dataset"] == ds]) for ds in ("mnist", "cifar10"))
    # 20 points, each discordant under both seeds: 2 / 2^20 (pooling called it 40 points: 2 / 2^40)
    assert up["discordant"] == {"b": 40, "c": 0} and up["p"] == pytest.approx(2 / 2**20)
    assert up["verdict"] == "batchout higher" and down["verdict"] == "batchout lower"
    assert down["diff"] == pytest.approx(-0.2) and up["outcome"] == "higher" and down["outcome"] == "lower"
    # the two seeds agree on every point: exactly one seed's Newcombe interval
    assert up["ci"] == pytest.approx(list(inference.newcombe_paired(40, 20, 0, 40)), abs=0)
    # Holm spans both data sets; the clean rows have zero spread (0.01 per seed pair both times): not judged
    judged = [r for r in rows if r["p"] is not None]
    assert len(judged) == 2 and up["p_holm"] == pytest.approx(2 * up["p"]) == down["p_holm"]


def test_a_side_whose_attack_did_not_converge_is_an_upper_bound_never_a_verdict():
    """The same data as the significant mnist rows above, but one standard seed's escalation hit its cap while
    points still fell: its worst case is an upper bound, so the row names the budget instead of a verdict,
    stays out of Holm's family, and the answer table says so."""
    wide, narrow = _flags(range(60), 100), _flags(range(40), 100)
    runs = [rec(m, s, {0.1: wide if m == "batchout" else narrow}, 0.9 + 0.01 * s, converged=(m, s) != ("standard", 1))
            for m in ("standard", "batchout") for s in (0, 1)]
    rows = compare.comparisons(make_groups(runs), 0.05)
    row = _robust(rows)
    assert row["outcome"] == "upper bound" and row["p"] is None and row["p_holm"] is None
    assert row["verdict"] == "upper bound: attack not converged at 2x (mnist-lenet-standard-s1)"
    assert row["diff"] == pytest.approx(0.2) and row["unconverged"] == ["mnist-lenet-standard-s1"]
    assert compare.counts(rows)["upper_bound"] == 1 and compare.counts(rows)["significant"] == 0
    table = answer.answer_table(rows, 0.1).items
    cells = next(r for r in table if r[1].startswith("0.1"))
    assert cells[2] == "2x" and cells[-1] == "upper bound: attack not converged at 2x"


def test_not_resolved_is_sized_at_the_rows_holm_level_in_test_points():
    # per seed of 100 points: batchout robust on 0..51, standard on 4..53 -> b = 4, c = 2, the same points per seed
    runs = [rec("batchout", s, {0.1: _flags(range(52), 100)}, acc) for s, acc in ((0, 0.99), (1, 0.98))]
    runs += [rec("standard", s, {0.1: _flags(range(4, 54), 100)}, acc) for s, acc in ((0, 0.985), (1, 0.987))]
    rows = compare.comparisons(make_groups(runs), 0.05)
    row, clean = _robust(rows), next(r for r in rows if r["quantity"] == "clean")
    assert row["p"] == pytest.approx(2 * (1 + 6 + 15) / 64)  # one seed's table: 2 P(Bin(6, 1/2) <= 2)
    assert row["p"] < clean["p"] and row["holm_level"] == pytest.approx(0.05 / 2)  # first of 2 Holm steps
    # Connor at the Holm level 0.025: d_i = +-2 on 6 points over S = 2: s0^2 = 24 / 400, delta = 4 / 200
    z = inference.z_quantile(1 - 0.025 / 2)
    need = (z * math.sqrt(0.06) + Z80 * math.sqrt(0.06 - 0.02**2)) ** 2 / 0.02**2
    assert row["needed"] == pytest.approx(need) and row["outcome"] == "not resolved"
    assert math.ceil(need) != 1178  # the old figure: alpha 0.05, twelve "seeds" of new points
    assert row["verdict"] == (f"not resolved at this sample size: about {math.ceil(need)} test points (each "
                              "attacked under these 2 seed pairs; more seeds on the same points add no test points) "
                              "would resolve a difference this large at 80 % power and its Holm level 0.025")


def test_a_zero_variance_clean_row_cannot_be_judged():
    f = {0.1: _flags(range(10), 20)}
    runs = [rec("batchout", s, f, 0.95) for s in (0, 1, 2)] + [rec("standard", s, f, 0.94) for s in (0, 1, 2)]
    clean = next(r for r in compare.comparisons(make_groups(runs), 0.05) if r["quantity"] == "clean")
    assert clean["p"] is None and clean["outcome"] == "not judged"  # the old code: p = 0, "batchout higher"
    assert clean["verdict"] == "cannot be judged: zero variance: every seed pair differs by exactly +1.00 points"


def test_refusals_single_run_unpaired_and_different_points():
    f = {0.1: _flags(range(10), 20)}
    one = compare.comparisons(make_groups([rec("batchout", 0, f, 0.9), rec("batchout", 1, f, 0.9),
                                           rec("standard", 0, f, 0.9)]), 0.05)
    assert all(r["verdict"] == "cannot be judged: single run (n=2 vs n=1)" for r in one)
    shifted = compare.comparisons(make_groups([rec("batchout", 0, f, 0.9), rec("batchout", 1, f, 0.9),
                                               rec("standard", 1, f, 0.9), rec("standard", 2, f, 0.9)]), 0.05)
    assert _robust(shifted)["verdict"] == "cannot be judged: a single seed pair (the other seeds unmatched)"
    assert _robust(shifted)["seeds_unmatched"] == 2
    other = compare.comparisons(make_groups([rec("batchout", 0, f, 0.9), rec("batchout", 1, f, 0.9),
                                             rec("standard", 0, f, 0.9, sha="elsewhere"),
                                             rec("standard", 1, f, 0.9, sha="elsewhere")]), 0.05)
    row = _robust(other)
    assert row["p"] is None
    assert row["verdict"] == "cannot be judged: different test points (examples_sha256 of seed 0 differ)"


def test_unmatched_seeds_are_left_out_and_counted():
    f0, f1 = {0.1: _flags(range(15), 20)}, {0.1: _flags(range(5), 20)}
    runs = [rec("batchout", s, f0, 0.9) for s in (0, 1, 2)] + [rec("standard", s, f1, 0.9) for s in (0, 1)]
    row = _robust(compare.comparisons(make_groups(runs), 0.05))
    assert (row["seeds_paired"], row["seeds_unmatched"]) == (2, 1) and row["discordant"] == {"b": 20, "c": 0}


def test_headline_eps_answer_and_sections():
    eps = (0.05, 0.1, 0.3)
    # standard: 80 %, 45 %, 5 % of 20 points at the three budgets, clean 90 %: eps 0.1 is furthest from 0 and 90 %
    std = {e: _flags(range(k), 20) for e, k in zip(eps, (16, 9, 1), strict=True)}
    bo = {e: _flags(range(k), 20) for e, k in zip(eps, (18, 15, 10), strict=True)}
    parts = {"pgd": {eps_key(0.1): 0.5}, "fab": {eps_key(0.1): 0.4}}  # ran pgd then fab (keys come sorted)
    runs = [rec(m, s, fl, 0.9, breakdown={"ens": parts}) for m, fl in (("standard", std), ("batchout", bo))
            for s in (0, 1)]
    groups = make_groups(runs)
    assert compare.headline_eps(groups, {}) == {"mnist": 0.1}
    assert compare.headline_eps(groups, {"mnist": 0.3}) == {"mnist": 0.3}
    rows = compare.comparisons(groups, 0.05)
    text = answer.long_form("mnist", groups, rows, 0.3, chosen=True)
    assert text.startswith("mnist, at eps 0.3 (set in report.headline_eps): batchout vs standard (lenet) at eps 0.3: "
                           "+45.00 points, 95 % CI [")
    assert "under the worst case over pgd; seeds 2 on the same 20 test points: batchout higher." in text
    header, *body = tables.breakdown_tables(groups, 0.1)[1].items
    assert header == ("model / method", "after pgd", "after fab") and body[0][1:] == ("50.00 ± 0.00 (n=2)",
                                                                                      "40.00 ± 0.00 (n=2)")
    md = render.to_markdown("T", tables.build_blocks("T", groups, 0.05, {}, {"mnist": 0.3}))
    assert md.index("## Answer") < md.index("## Summary") < md.index("## Data set: mnist")
    assert "ens: accuracy after each member" not in md  # the breakdown exists at 0.1 only, the headline is 0.3


def test_seed_results_beside_ours():
    eps = [1 / 255, 5 / 255]

    def rec(method: str, test_acc: float, pgd: list[float]) -> RunRecord:
        attack = {"eps": eps, "clean_acc": test_acc,
                  "robust_acc": {"pgd": {f"eps_{e:.4f}": v for e, v in zip(eps, pgd, strict=True)}}}
        return RunRecord(f"c3-{method}", "cifar3", "resnet_bottleneck", method, method,
                                {"test_acc": test_acc}, attack)

    groups = make_groups([rec("batchout_final", 0.91, [0.7, 0.6]), rec("standard", 0.90, [0.6, 0.5])])
    assert [g.method for g in groups] == ["standard", "batchout_final"]
    header, clean, robust, other = tables.seed_table(groups).items
    assert clean[3:] == ("90.66", "90.86", "90.00 (single run)", "91.00 (single run)")
    assert robust[2] == "robust at eps 5/255 (ours: PGD)" and robust[3:] == ("58.00", "64.00", "50.00 (single run)",
                                                                            "60.00 (single run)")
    assert other[0] == "cifar10" and other[5:] == ("–", "–")  # no cifar10 runs here
    rows = compare.comparisons(groups, 0.05)
    assert [(r["quantity"], r["eps"]) for r in rows] == [("clean", None), ("worst", eps[0]), ("worst", eps[1])]
    assert all(r["outcome"] == "not judged" for r in rows)  # the seed-style single runs stay unjudged
    assert all(r["verdict"] == "cannot be judged: single run (n=1 vs n=1)" for r in rows)
