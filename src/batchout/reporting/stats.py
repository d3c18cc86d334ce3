"""Sampling error of an accuracy measured on n test examples.

Usage: ``lo, hi = wilson(acc * n, n)`` -> the 95 % Wilson score interval of a proportion

Wilson's interval (1927) keeps its coverage near 95 % even at accuracies near 0 or 1 and for a
few hundred examples, where the normal approximation (acc +- 1.96 sqrt(acc (1 - acc) / n))
collapses to zero width or leaves [0, 1].
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile: a two-sided 95 % interval


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``successes / n`` (fractions in [0, 1]); (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
