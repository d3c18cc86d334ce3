"""What the attacks cost, in forward and backward passes (exact, machine-independent), beside what the
standard AutoAttack would spend on the same points.

Usage: ``ours, standard = passes(groups)``; ``cost_sentence(groups)``

The standard AutoAttack's schedule, counted by a pass counter around a model no member can break
(``pyautoattack`` 0.2.0, ``version="standard"``; tests/test_reference_attacks.py recounts it at 10 and at 3
classes): per point, APGD-CE runs its whole schedule (no early exit: 101 gradient steps), then APGD-T
(9 targets x 101 steps), FAB-T (9 targets x 100 steps, each a gradient and a forward check) and Square
(5,000 queries) run in full on every point still robust; below 10 classes the targeted members take
classes - 1 targets. Our converged robust count stands in for the points it would leave robust, so the
estimate is a lower bound whenever the standard version is no stronger than our escalation.
"""

from __future__ import annotations

from collections.abc import Sequence

from batchout.io import eps_key
from batchout.names import NUM_CLASSES
from batchout.reporting.groups import Group

TARGETS = 9  # the standard version's targets for APGD-T and FAB-T (at most classes - 1)
# (forward, backward) passes per point of the targeted members, per target; each adds 2 forward passes
PER_TARGET = {"apgd_t": (102, 101), "fab_t": (203, 100)}


def standard_schedule(classes: int = 10) -> dict[str, tuple[int, int]]:
    """(forward, backward) passes per point in the standard AutoAttack, by member, on ``classes`` classes;
    "checks": its own clean pass and model checks before the first member (one batch)."""
    targets = min(TARGETS, classes - 1)
    schedule = {"checks": (8, 0), "apgd_ce": (103, 101)}
    schedule.update({m: (2 + f * targets, b * targets) for m, (f, b) in PER_TARGET.items()})
    return schedule | {"square": (5004, 0)}


STANDARD_SCHEDULE = standard_schedule(10)  # MNIST, CIFAR-10: (920, 909) for APGD-T, (1829, 900) for FAB-T


def standard_passes(attacked: int, robust: int, classes: int = 10) -> int:
    """Forward+backward passes of the standard AutoAttack on ``attacked`` clean-correct points of which
    ``robust`` survive every member (a lower bound: points broken by a later member cost more than APGD-CE's)."""
    schedule = standard_schedule(classes)
    every = sum(schedule["checks"]) + sum(schedule["apgd_ce"])
    survivors = sum(sum(schedule[m]) for m in ("apgd_t", "fab_t", "square"))
    return attacked * every + robust * survivors


def standard_at(attack: dict, eps: float) -> int | None:
    """The standard AutoAttack's estimate on one run's attacked points at ``eps``, our converged robust points
    standing in for its survivors; None where the run has no escalation there, or its data set's class count
    is unknown (an image-folder data set)."""
    conv = attack.get("converge", {}).get("eps", {}).get(eps_key(eps))
    classes = NUM_CLASSES.get(attack.get("dataset", ""))
    if conv is None or classes is None:
        return None
    clean = attack.get("clean_flags", "").count("1")
    return standard_passes(clean, round(conv["acc"] * attack["n_examples"]), classes)


def run_passes(attack: dict) -> tuple[int, int]:
    """(ours, the standard AutoAttack's estimate) over one run's eps grid: ours counted (every attack of the
    grid and every escalation round), the standard version's from :func:`standard_at` at each eps (an
    unknown estimate adds nothing, so the sum stays "at least")."""
    ours = standard = 0
    for e in attack.get("eps", []):
        conv = attack.get("converge", {}).get("eps", {}).get(eps_key(e))
        if conv is None:
            continue
        ours += conv["passes"]["forward"] + conv["passes"]["backward"]
        standard += standard_at(attack, e) or 0
    return ours, standard


def passes(groups: Sequence[Group]) -> tuple[int, int]:
    """Summed over every run of ``groups``: (ours, the standard AutoAttack's estimate)."""
    pairs = [run_passes(r.attack) for g in groups for r in g.runs]
    return sum(o for o, _ in pairs), sum(s for _, s in pairs)


def cost_sentence(groups: Sequence[Group]) -> str | None:
    ours, standard = passes(groups)
    if not ours:
        return None
    n = sum(len(g.runs) for g in groups)
    return (f"Cost: the attacks and every escalation round took {ours:,} forward+backward passes over the "
            f"{n} models' attacked points and eps; the standard AutoAttack would spend at least {standard:,} "
            f"on the same points ({ours / standard:.2f}x of it; its schedule with our converged robust points "
            "standing in for the ones it would leave robust).") if standard else None
