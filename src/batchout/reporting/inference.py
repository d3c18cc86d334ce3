"""Tests and intervals for the report's comparisons: exact McNemar, Newcombe's paired interval,
Student's t, Holm's step-down correction and sample-size estimates. Standard library only (no scipy).

Usage: ``p = mcnemar_exact(b, c)``; ``lo, hi = newcombe_paired(a, b, c, d)``; ``paired_t([0.01, 0.02])``;
``holm([0.01, 0.04, 0.03])``; ``holm_levels([0.01, 0.04])`` -> the level each p is compared with

The report's robust comparisons use these through ``batchout.reporting.clustered``, which makes the
test point (not the seed x point pair) the unit.

Paired 2x2 tables use the counts a (both robust), b (A robust, B not), c (B robust, A not) and d
(neither), over n = a + b + c + d test points. Kept apart from ``stats`` (Wilson), which the attack
stage imports: editing these tests must not invalidate every attack in DVC.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist, fmean, stdev

from batchout.reporting.stats import Z95, wilson


def z_quantile(q: float) -> float:
    return NormalDist().inv_cdf(q)


# ----------------------------------------------------------------------------- paired proportions
def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p: under H0 each of the b + c discordant points is b-type with
    probability 1/2, so p = min(1, 2 P(Binomial(b + c, 1/2) <= min(b, c))). 1.0 when b = c = 0."""
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1))
    # Integers to the end: Python's int / int rounds the exact ratio once, even where 2^n (n > 1023
    # discordant points) is beyond any float.
    return min(1.0, 2 * tail / 2**n)


def newcombe_paired(a: int, b: int, c: int, d: int, z: float = Z95) -> tuple[float, float]:
    """Newcombe's (1998, Stat Med 17:2635, method 10) hybrid score interval of p1 - p2 =
    (b - c) / n for paired proportions: the two marginal Wilson intervals (l1, u1), (l2, u2) combined
    square-and-add with the correlation phi of the table,

        L = D - sqrt((p1 - l1)^2 - 2 phi (p1 - l1)(u2 - p2) + (u2 - p2)^2)
        U = D + sqrt((p2 - l2)^2 - 2 phi (p2 - l2)(u1 - p1) + (u1 - p1)^2)

    where phi = C / sqrt((a+b)(c+d)(a+c)(b+d)), C = ad - bc - n/2 if ad - bc > n/2, 0 if
    0 <= ad - bc <= n/2, ad - bc if negative (Newcombe's continuity adjustment), phi = 0 when a
    margin is empty. Unlike the Wald interval it stays inside [-1, 1] and keeps its coverage at
    accuracies near 0 or 1."""
    n = a + b + c + d
    if n == 0:
        return -1.0, 1.0
    p1, p2 = (a + b) / n, (a + c) / n
    (l1, u1), (l2, u2) = wilson(a + b, n, z), wilson(a + c, n, z)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    cross = a * d - b * c
    adj = cross - n / 2 if cross > n / 2 else (0.0 if cross >= 0 else cross)
    phi = adj / math.sqrt(margins) if margins > 0 else 0.0
    diff = p1 - p2
    lo = diff - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    hi = diff + math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    return max(-1.0, lo), min(1.0, hi)


# ----------------------------------------------------------------------------- Student's t
def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz, Numerical Recipes 6.4)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for num in (m * (b - m) * x / ((qam + 2 * m) * (a + 2 * m)),
                    -(a + m) * (qab + m) * x / ((a + 2 * m) * (qap + 2 * m))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    # The fraction converges fast only below (a + 1) / (a + b + 2); use the symmetry I_x(a,b) = 1 - I_{1-x}(b,a).
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with df degrees of freedom: 1 - I_{df/(df+t^2)}(df/2, 1/2) / 2 for t >= 0."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(q: float, df: float) -> float:
    """The q quantile of Student's t (bisection on ``t_cdf``, to 1e-12)."""
    lo, hi = -1e4, 1e4
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < q else (lo, mid)
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2


@dataclass(frozen=True)
class PairedT:
    mean: float  # mean of the paired differences
    lo: float  # two-sided (1 - alpha) t interval of the mean
    hi: float
    p: float | None  # two-sided p of H0: mean difference 0; None: zero variance, cannot be judged
    sd: float  # sample std (ddof=1) of the differences


def paired_t(diffs: Sequence[float], alpha: float = 0.05) -> PairedT:
    """Paired t-test of k >= 2 differences: t = mean / (sd / sqrt(k)), df = k - 1, interval
    mean +- t_{1-alpha/2, df} sd / sqrt(k). Identical differences (sd = 0) give p = None: with no spread
    there is no standard error, so the row cannot be judged (never "significant")."""
    k = len(diffs)
    if k < 2:
        raise ValueError(f"paired_t needs at least 2 differences, got {k}")
    mean, sd = fmean(diffs), stdev(diffs)
    se = sd / math.sqrt(k)
    if se == 0.0:
        return PairedT(mean, mean, mean, None, 0.0)
    p = 2.0 * (1.0 - t_cdf(abs(mean) / se, k - 1))
    half = t_quantile(1 - alpha / 2, k - 1) * se
    return PairedT(mean, mean - half, mean + half, min(1.0, p), sd)


def seeds_needed(d: float, sd: float, alpha: float, power: float = 0.8, cap: int = 1000) -> float | None:
    """Seed pairs for a two-sided paired t-test at ``alpha`` to resolve mean difference d at ``power``:
    the smallest k >= 2 with k >= (t_{1-alpha/2, k-1} + t_{power, k-1})^2 sd^2 / d^2 (the normal
    formula k = (z_{1-alpha/2} + z_power)^2 sd^2 / d^2 with t quantiles, which matter at a few seeds).
    None when d is 0; the normal formula beyond ``cap`` seeds."""
    if d == 0:
        return None
    ratio = sd**2 / d**2
    normal = (z_quantile(1 - alpha / 2) + z_quantile(power)) ** 2 * ratio
    # t quantiles exceed normal ones, so the answer is at least the normal k: start the search there.
    for k in range(max(2, math.ceil(normal)), cap + 1):
        if k >= (t_quantile(1 - alpha / 2, k - 1) + t_quantile(power, k - 1)) ** 2 * ratio:
            return float(k)
    return normal


# ----------------------------------------------------------------------------- multiple testing
def holm_levels(pvalues: Sequence[float], alpha: float) -> list[float]:
    """The level Holm's step-down compares each p-value with, in the input order: alpha / (m - rank),
    rank 0 for the smallest p (ties in input order). A row is sized for significance at this level."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [0.0] * m
    for rank, i in enumerate(order):
        out[i] = alpha / (m - rank)
    return out


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's (1979) step-down adjusted p-values, in the input order: sorted ascending, the i-th
    (from 0) is max over j <= i of min(1, (m - j) p_(j)). Reject where adjusted p <= alpha: the
    family-wise error rate stays <= alpha."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out
