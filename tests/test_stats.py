"""The report's statistics against textbook values and independent computations.

Usage: ``.venv/bin/pytest tests/test_stats.py``

Wilson, Newcombe's paired interval, exact McNemar, Student's t, the paired t-test, Holm, and the
sample sizes quoted by "not resolved" verdicts.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from batchout.reporting import inference
from batchout.reporting.stats import wilson

Z975 = 1.959963984540054  # the standard normal 97.5 % quantile (tables)



def test_wilson_textbook_values():
    # Newcombe (1998, Stat Med 17:857), Table I: 81/263 -> 0.2553 to 0.3662; 15/148 -> 0.0624 to 0.1605
    assert wilson(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)
    assert wilson(15, 148) == pytest.approx((0.0624, 0.1605), abs=5e-5)
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(Z975**2 / (10 + Z975**2))  # at 0 successes: z^2 / (n + z^2)


def test_mcnemar_exact_known_counts():
    # b=10, c=2: 2 (C(12,0) + C(12,1) + C(12,2)) / 2^12 = 2 x 79 / 4096
    assert inference.mcnemar_exact(10, 2) == pytest.approx(0.0385742, abs=1e-7) == 2 * 79 / 4096
    assert inference.mcnemar_exact(2, 10) == inference.mcnemar_exact(10, 2)  # two-sided: symmetric
    assert inference.mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert inference.mcnemar_exact(0, 0) == 1.0 and inference.mcnemar_exact(3, 3) == 1.0  # capped at 1
    # large counts stay exact: 2^1500 is beyond any float, the p-value is not
    n, b = 1500, 700
    exact = 2 * Fraction(sum(math.comb(n, i) for i in range(b + 1)), 2**n)
    assert inference.mcnemar_exact(b, n - b) == pytest.approx(float(exact), rel=1e-12)


def test_newcombe_paired_textbook_value():
    # Fagerland, Lydersen & Laake (2017), "Statistical Analysis of Contingency Tables", ch. 8: Cavo et
    # al. (2012) table [[59, 6], [16, 80]] -> estimate -0.0621, Newcombe square-and-add CI -0.1186 to -0.0046
    lo, hi = inference.newcombe_paired(59, 6, 16, 80)
    assert (lo, hi) == pytest.approx((-0.1186, -0.0046), abs=5e-5)
    # no discordance, a = d = 10: phi = (ad - bc - n/2) / sqrt(10^4) = 0.9 (Newcombe's n/2 adjustment), both
    # margins 10/20 with Wilson half-width w below 1/2, so the bounds are -+ sqrt(2 w^2 - 2 x 0.9 w^2)
    w = 0.5 - wilson(10, 20)[0]
    assert inference.newcombe_paired(10, 0, 0, 10) == pytest.approx((-w * math.sqrt(0.2), w * math.sqrt(0.2)))
    # all 20 discordant one way: p1 = 1, p2 = 0, empty margins -> phi = 0, L = 1 - sqrt((1 - l1)^2 + u2^2) with
    # u2 = 1 - l1 by symmetry; U capped at 1. A Wald interval here has zero width.
    lo, hi = inference.newcombe_paired(0, 20, 0, 0)
    assert lo == pytest.approx(1 - math.sqrt(2) * (1 - wilson(20, 20)[0])) and hi == 1.0


def test_t_distribution_against_tables_and_closed_forms():
    # two-sided 95 % critical values from any t table
    for df, crit in ((1, 12.7062), (2, 4.3027), (5, 2.5706), (10, 2.2281), (30, 2.0423)):
        assert inference.t_quantile(0.975, df) == pytest.approx(crit, abs=5e-5)
    for t in (-3.0, -0.5, 0.0, 0.7, 2.0, 9.0):
        assert inference.t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)  # Cauchy
        assert inference.t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)
    assert inference.t_cdf(1.96, 10_000) == pytest.approx(0.975, abs=1e-4)  # tends to the normal


def test_paired_t_known_differences():
    d = [1.0, 2.0, 3.0, 4.0]  # mean 2.5, sd sqrt(5/3), t = 2.5 / (sd / 2) = 3.873 on 3 df
    res = inference.paired_t(d)
    t = 2.5 / (math.sqrt(5 / 3) / 2)
    # Student t with 3 df has a closed-form cdf: 1/2 + (x / (1 + x^2) + atan(x)) / pi with x = t / sqrt(3)
    x = t / math.sqrt(3)
    assert res.p == pytest.approx(2 * (0.5 - (x / (1 + x * x) + math.atan(x)) / math.pi), abs=1e-10)
    assert res.p == pytest.approx(0.0305, abs=5e-4)
    half = 3.1824 * math.sqrt(5 / 3) / 2  # t_{0.975, 3} = 3.1824 (tables)
    assert (res.lo, res.hi) == pytest.approx((2.5 - half, 2.5 + half), abs=1e-3)
    # zero spread has no standard error: cannot be judged (the old code called [0.01, 0.01] p = 0, significant)
    assert inference.paired_t([0.0, 0.0]).p is None and inference.paired_t([0.01, 0.01]).p is None
    with pytest.raises(ValueError, match="at least 2"):
        inference.paired_t([0.1])


def test_holm_on_a_known_list():
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4 x 0.005, 3 x 0.01, 2 x 0.03, max(0.06, 1 x 0.04): step-down, monotone
    assert inference.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert inference.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert inference.holm([]) == []
    # the level each p was compared with: alpha / 4, / 3, / 2, / 1 in ascending order of p
    assert inference.holm_levels([0.01, 0.04, 0.03, 0.005], 0.05) == pytest.approx([0.05 / 3, 0.05, 0.05 / 2, 0.05 / 4])


def test_seed_pairs_needed_for_a_clean_row():
    # the smallest k with k >= (t_{0.975,k-1} + t_{0.8,k-1})^2 sd^2 / d^2; with sd = d, from t tables:
    # k = 9 needs (2.3060 + 0.8889)^2 = 10.21 > 9, k = 10 needs (2.2622 + 0.8834)^2 = 9.89 <= 10
    k = inference.seeds_needed(1.0, 1.0, 0.05)
    crit = {9: (2.3060, 0.8889), 10: (2.2622, 0.8834)}  # t_{0.975, df}, t_{0.8, df} for df = k - 1 (tables)
    assert k == 10 and (crit[10][0] + crit[10][1]) ** 2 <= 10 and (crit[9][0] + crit[9][1]) ** 2 > 9
    assert inference.seeds_needed(0.0, 1.0, 0.05) is None
