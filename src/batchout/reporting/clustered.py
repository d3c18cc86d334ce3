"""Statistics with the test point as the unit: every seed of a data set is attacked on the same test
points, so a point's outcomes under several seeds are one cluster, never independent samples.

Usage: ``pp = paired_points(flags_a, flags_b)``; ``sign_flip_p(pp.d)``; ``diff_interval(pp)``;
``arm_interval(flags)`` -> the 95 % interval of an arm's mean accuracy over its seeds

Flags are per-example robustness strings ("0110...", one character per attacked test point), one
string per seed; seed s of A is paired with seed s of B and all strings of a comparison cover the
same points in the same order. Integer sums are kept exact (``Fraction``) so that S identical seeds
give exactly the one-seed answer. Standard library and numpy only.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from batchout.reporting.inference import newcombe_paired, z_quantile
from batchout.reporting.stats import wilson


@dataclass(frozen=True)
class PairedPoints:
    """One comparison's per-point differences: ``d[i]`` = sum over the S seed pairs of
    (A robust at point i) - (B robust at point i), an integer in [-S, S]."""

    d: tuple[int, ...]
    seeds: int
    table: tuple[int, int, int, int]  # (a, b, c, d) pooled over seeds x points, as McNemar's counts

    @property
    def points(self) -> int:
        return len(self.d)

    @property
    def diff(self) -> float:
        """The mean over seed pairs of acc_A - acc_B (= the mean per-point difference)."""
        return sum(self.d) / (self.seeds * self.points)


def _bits(flags: Sequence[str]) -> list[list[int]]:
    if not flags or len({len(f) for f in flags}) != 1 or not flags[0]:
        raise ValueError("flags: need one non-empty string per seed, all of the same length")
    return [[1 if ch == "1" else 0 for ch in f] for f in flags]


def paired_points(flags_a: Sequence[str], flags_b: Sequence[str]) -> PairedPoints:
    """Seed s of A against seed s of B, summed per test point."""
    a, b = _bits(flags_a), _bits(flags_b)
    if len(a) != len(b) or len(a[0]) != len(b[0]):
        raise ValueError("flags: A and B need the same seeds and the same test points")
    d = tuple(sum(ra[i] - rb[i] for ra, rb in zip(a, b, strict=True)) for i in range(len(a[0])))
    pairs = [(x, y) for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True)]
    table = tuple(pairs.count(p) for p in ((1, 1), (1, 0), (0, 1), (0, 0)))
    return PairedPoints(d, len(a), table)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the test
def _lattice_binomial(m: int, k: int) -> np.ndarray:
    """P(k (2B - m) = v) for B ~ Binomial(m, 1/2), on the integers v = -k m .. k m (zeros between)."""
    out = np.zeros(2 * k * m + 1)
    c, denom = 1, 2**m
    for j in range(m + 1):  # exact binomial coefficients, each divided once (int / int rounds correctly)
        out[2 * k * j] = c / denom
        c = c * (m - j) // (j + 1)
    return out


def sign_flip_p(d: Sequence[int]) -> float:
    """Two-sided exact sign-flip permutation p of H0 "A and B are exchangeable at every test point":
    under H0 each point's difference is as likely +|d_i| as -|d_i|, independently of the other points,
    so p = P(|sum_i e_i |d_i|| >= |sum_i d_i|) over independent signs e_i = +-1.

    The null distribution is the convolution, over the distinct values k of |d_i| (at most S), of
    k (2 Binomial(m_k, 1/2) - m_k); all terms are non-negative, so float64 keeps ~1e-12 relative
    accuracy; a p below the smallest normal float (2.2e-308) is returned as that float. With one seed
    (d_i in {-1, 0, 1}) this is the exact McNemar test."""
    t = abs(sum(d))
    if t == 0:
        return 1.0
    pmf, offset = np.ones(1), 0
    for k, m in sorted(Counter(abs(x) for x in d if x).items()):
        pmf, offset = np.convolve(pmf, _lattice_binomial(m, k)), offset + k * m
    values = np.abs(np.arange(len(pmf)) - offset)
    return float(min(1.0, max(math.fsum(pmf[values >= t]), sys.float_info.min)))


# ----------------------------------------------------------------------------- the difference's interval
def design_effect(pp: PairedPoints) -> Fraction:
    """Var(mean difference) with points as clusters over Var as if all S x n (seed, point) pairs were
    independent, in [1, S]: the factor by which pooling seeds overstates the sample size. S when no
    point is discordant (nothing to estimate; seeds are then treated as copies)."""
    s, n, total = pp.seeds, pp.points, sum(pp.d)
    discordant = pp.table[1] + pp.table[2]
    naive = Fraction(discordant * s * n - total * total)  # times (S n)^3: Var of the pooled pairs
    clustered = Fraction(n * sum(x * x for x in pp.d) - total * total) * s  # times (S n)^3 as well
    if naive <= 0:
        return Fraction(s)
    return min(Fraction(s), max(Fraction(1), clustered / naive))


def diff_interval(pp: PairedPoints) -> tuple[float, float]:
    """95 % interval of the mean difference: Newcombe's paired interval on the pooled table with every
    count divided by the design effect (its effective size). One seed: Newcombe's interval itself; S
    seeds with identical flags: exactly the one-seed interval."""
    deff = design_effect(pp)
    return newcombe_paired(*(float(Fraction(c) / deff) for c in pp.table))


def points_needed(pp: PairedPoints, alpha: float, power: float = 0.8) -> float | None:
    """Test points (each attacked under these S seed pairs) for a two-sided level-``alpha`` test to
    resolve the observed mean difference delta at ``power``: N = (z_(1-alpha/2) s0 + z_power s1)^2 / delta^2
    with s0^2 = mean of (d_i / S)^2 (the per-point variance under H0) and s1^2 = s0^2 - delta^2 (observed).
    One seed: Connor's (1987) McNemar sample size. Extra seeds on the same points shrink the per-point
    variance only; they add no test points. None when delta is 0."""
    s, n, total = pp.seeds, pp.points, sum(pp.d)
    if total == 0:
        return None
    delta = total / (s * n)
    s0 = math.sqrt(sum(x * x for x in pp.d) / (s * s * n))
    s1 = math.sqrt(max(0.0, s0 * s0 - delta * delta))
    return (z_quantile(1 - alpha / 2) * s0 + z_quantile(power) * s1) ** 2 / delta**2


# ----------------------------------------------------------------------------- one arm's accuracy
def arm_variance(flags: Sequence[str]) -> tuple[Fraction, Fraction]:
    """(mean, variance of the mean) of an arm's accuracy over S seeds on the same n points, in the
    crossed random-effects model y_si = mu + seed_s + point_i + e_si: the point-clustered variance
    sum_i (m_i - mean)^2 / n^2 (m_i: point i's fraction of robust seeds) plus the seed variance
    component over S, estimated from the two-way ANOVA as max(0, (MS_seed - MS_error) / n). The
    second term is the training (seed-to-seed) variance, which pooling hides; one seed has none."""
    y = _bits(flags)
    s, n = len(y), len(y[0])
    total = sum(map(sum, y))
    mean = Fraction(total, s * n)
    cols = [sum(row[i] for row in y) for i in range(n)]
    ss_point = s * sum((Fraction(k, s) - mean) ** 2 for k in cols)  # S sum_i (m_i - mean)^2
    var = ss_point / (s * n * n)
    if s >= 2 and n >= 2:
        ss_seed = n * sum((Fraction(sum(row), n) - mean) ** 2 for row in y)
        ss_err = (total - total * mean) - ss_seed - ss_point  # binary y: sum (y - mean)^2 = total (1 - mean)
        seed_var = (ss_seed / (s - 1) - ss_err / ((s - 1) * (n - 1))) / n
        var += max(Fraction(0), seed_var) / s
    return mean, var


def arm_interval(flags: Sequence[str]) -> tuple[float, float]:
    """95 % Wilson interval of an arm's mean accuracy at the effective sample size mean (1 - mean) /
    variance (``arm_variance``; at most S n). One seed, or S identical seeds: exactly Wilson(k, n)."""
    mean, var = arm_variance(flags)
    s, n = len(flags), len(flags[0])
    if mean in (0, 1):
        n_eff = Fraction(n)  # every seed agrees on every point: one seed's worth of points
    elif var == 0:
        n_eff = Fraction(s * n)
    else:
        n_eff = min(Fraction(s * n), mean * (1 - mean) / var)
    return wilson(float(mean * n_eff), float(n_eff))  # type: ignore[arg-type]
