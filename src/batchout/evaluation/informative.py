"""Where on an eps grid accuracies can differ at all: the eps furthest from 0 and from clean accuracy.

Usage: ``informative_eps([0.1, 0.2], {0.1: 0.8, 0.2: 0.4}, clean=0.9)`` -> 0.2

Shared by the checks (which eps to probe hardest) and the report (its headline eps); plain numbers, no
torch, so the report depends on this file alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def informative_eps(eps: Sequence[float], acc: Mapping[float, float], clean: float) -> float:
    """The eps whose accuracy ``acc[eps]`` is furthest from both 0 and ``clean``: there two attacks
    (or two methods) can differ; at 0 % or at clean accuracy they all tie. Ties go to the smaller eps."""
    return max(eps, key=lambda e: (min(acc[e], clean - acc[e]), -e))
