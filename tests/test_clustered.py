"""The test point as the unit: the sign-flip test, the design-effect interval, an arm's interval and
the sample size, against brute force, textbook values and a simulated null.

Usage: ``.venv/bin/pytest tests/test_clustered.py -q``

Every seed of a data set is attacked on the same test points. The old code pooled the seeds'
2x2 tables as if the seeds had drawn new points; each test below fails on that pooling.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest

from batchout.reporting import clustered, inference
from batchout.reporting.stats import wilson

Z975, Z80 = 1.959963984540054, 0.8416212335729143  # standard normal quantiles (tables)


def _flags(robust: range, n: int) -> str:
    return "".join("1" if i in robust else "0" for i in range(n))


def _brute_force_p(d: list[int]) -> float:
    """Every sign pattern of the nonzero differences, counted."""
    nz = [x for x in d if x]
    t = abs(sum(nz))
    hits = sum(abs(sum(s * abs(x) for s, x in zip(signs, nz, strict=True))) >= t
               for signs in itertools.product((-1, 1), repeat=len(nz)))
    return hits / 2 ** len(nz)


def test_seeds_that_disagree_on_the_same_points_are_one_sample_of_points():
    """Three seed pairs disagreeing on the same 7 points: 7 informative points, not 21.
    Pooled McNemar (the old code) gives 2/2^21 = 9.5e-7; the single-table answer is 2/2^7 = 0.0156."""
    pp = clustered.paired_points(["1" * 7 + "0" * 43] * 3, ["0" * 50] * 3)
    assert pp.table == (0, 21, 0, 129) and pp.d[:7] == (3,) * 7
    assert clustered.sign_flip_p(pp.d) == 2 / 2**7
    assert inference.mcnemar_exact(21, 0) == 2 / 2**21  # what pooling claimed
    # identical seeds: the design effect is S, and the interval is exactly the one-seed Newcombe interval
    assert clustered.design_effect(pp) == 3
    assert clustered.diff_interval(pp) == inference.newcombe_paired(0, 7, 0, 43)


def test_sign_flip_p_equals_brute_force_and_mcnemar_for_one_seed():
    rng = random.Random(3)
    for _ in range(20):
        d = [rng.choice([-3, -2, -1, 0, 0, 1, 2, 3]) for _ in range(rng.randint(1, 12))]
        assert clustered.sign_flip_p(d) == pytest.approx(_brute_force_p(d), rel=1e-12)
    for b, c in ((10, 2), (0, 5), (3, 3), (700, 800)):
        d = [1] * b + [-1] * c + [0] * 17
        assert clustered.sign_flip_p(d) == pytest.approx(inference.mcnemar_exact(b, c), rel=1e-12)
    assert clustered.sign_flip_p([0, 0]) == 1.0
    assert clustered.sign_flip_p([3] * 2000) == pytest.approx(2.2250738585072014e-308)  # below floats: floored


def test_the_sign_flip_test_holds_its_level_where_pooling_does_not():
    """A null where B is A with a point-level coin flip: each discordant point's direction is random
    (H0) but repeats across the seeds. Pooled McNemar rejects far above 5 %; the sign-flip test does not."""
    rng = random.Random(0)
    trials, rej_flip, rej_pooled = 400, 0, 0
    for _ in range(trials):
        a, b = ["" for _ in range(3)], ["" for _ in range(3)]
        for _ in range(150):
            base = rng.random() < 0.6
            disc = rng.random() < 0.1
            direction = rng.random() < 0.5
            for s in range(3):
                flip = disc and (rng.random() < 0.85)  # the point's disagreement repeats in most seeds
                a[s] += "1" if base or (flip and direction) else "0"
                b[s] += "1" if base or (flip and not direction) else "0"
        pp = clustered.paired_points(a, b)
        rej_flip += clustered.sign_flip_p(pp.d) <= 0.05
        rej_pooled += inference.mcnemar_exact(pp.table[1], pp.table[2]) <= 0.05
    mc = 2.5 * math.sqrt(0.05 * 0.95 / trials)  # 2.5 Monte Carlo standard errors
    assert rej_flip / trials <= 0.05 + mc, rej_flip
    assert rej_pooled / trials > 0.08, rej_pooled


def test_the_design_effect_is_one_for_one_seed_and_between_one_and_s():
    rng = random.Random(1)
    one = ["".join(rng.choice("01") for _ in range(80))]
    other = ["".join(rng.choice("01") for _ in range(80))]
    pp = clustered.paired_points(one, other)
    assert clustered.design_effect(pp) == 1
    assert clustered.diff_interval(pp) == inference.newcombe_paired(*pp.table)
    three = [["".join(rng.choice("01") for _ in range(80)) for _ in range(3)] for _ in range(2)]
    deff = clustered.design_effect(clustered.paired_points(*three))
    assert 1 <= deff <= 3


def test_an_arms_interval_is_one_seeds_for_identical_seeds_and_holds_the_seed_spread():
    flags = _flags(range(30), 50)
    # three identical seeds: exactly Wilson(30, 50); pooling (the old code) gave Wilson(90, 150), ~1.7x narrower
    assert clustered.arm_interval([flags] * 3) == wilson(30, 50)
    old_lo, old_hi = wilson(90, 150)
    lo, hi = clustered.arm_interval([flags] * 3)
    assert (hi - lo) / (old_hi - old_lo) > 1.6
    assert clustered.arm_interval([flags]) == wilson(30, 50)
    # seeds at 40 %, 60 %, 80 % on the same points: the training spread widens it past the points-only variance
    spread = [_flags(range(k), 50) for k in (20, 30, 40)]
    mean, var = clustered.arm_variance(spread)
    cols = [sum(f[i] == "1" for f in spread) / 3 for i in range(50)]
    points_only = sum((c - float(mean)) ** 2 for c in cols) / 50**2
    assert mean == pytest.approx(0.6) and float(var) > 2 * points_only
    lo, hi = clustered.arm_interval(spread)
    assert lo < 0.6 < hi and hi - lo > 0.3


def test_points_needed_is_connors_formula_at_the_given_level():
    # one seed, b = 30, c = 10 of 200: delta = 0.1, s0^2 = 0.2, s1^2 = 0.2 - 0.01 (Connor 1987)
    pp = clustered.paired_points([_flags(range(30), 200)], [_flags(range(30, 40), 200)])
    need = (Z975 * math.sqrt(0.2) + Z80 * math.sqrt(0.19)) ** 2 / 0.1**2
    assert clustered.points_needed(pp, 0.05) == pytest.approx(need)
    z = inference.z_quantile(1 - 0.0125)
    assert clustered.points_needed(pp, 0.025) == pytest.approx((z * math.sqrt(0.2) + Z80 * math.sqrt(0.19)) ** 2
                                                               / 0.01)
    assert clustered.points_needed(clustered.paired_points(["10"], ["01"]), 0.05) is None
