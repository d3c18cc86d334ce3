"""How the report writes numbers: accuracies in %, differences in percentage points, p-values, budgets.

Usage: ``pct(group.clean())``; ``pct_ci(stat, (lo, hi))``; ``points(0.0123)`` -> "+1.23 points"; ``fmt_p(0.0386)``
"""

from __future__ import annotations

from batchout.reporting.groups import Stat


def pct(s: Stat | None) -> str:
    if s is None:
        return "–"
    if s.n == 1:
        return f"{100 * s.mean:.2f} (single run)"
    return f"{100 * s.mean:.2f} ± {100 * s.std:.2f} (n={s.n})"


def pct_ci(s: Stat | None, ci: tuple[float, float] | None) -> str:
    """``pct`` and, when known, the 95 % interval of the mean in brackets (``Group.interval``)."""
    if s is None or ci is None:
        return pct(s)
    return f"{pct(s)} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def eps_label(eps: float) -> str:
    k = round(eps * 255)
    return f"{k}/255" if 0 < k <= 16 and abs(eps * 255 - k) < 1e-4 else f"{eps:g}"


def points(diff: float, unit: str = " points") -> str:
    return f"{100 * diff:+.2f}{unit}"


def ci_points(ci: list[float] | tuple[float, float]) -> str:
    return f"[{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]"


def fmt_p(p: float | None) -> str:
    # Three significant digits: 0.0386, 0.205, 1, 1.23e-10 (tiny p-values stay readable).
    return "–" if p is None else f"{p:.3g}"
