"""Which trained run each model-registry alias should point at, per data set (pure: no MLflow).

Usage: ``picks = pick(records, {"mnist": 0.1}, tuned_arms={"mnist-lenet-batchout_tuned"})`` ->
``{"mnist": {"best-robust": Pick(...), "tuned": Pick(...) or None}}``; register each under
``registered_name("mnist")`` (``batchout.tracking.registry``).

``best-robust``: the run with the highest worst-case robust accuracy (every attack of the grid, per
example) at the data set's headline eps, ties broken by clean test accuracy, then by the order of
``records``. ``tuned``: the same choice among the runs of the tuned arms (train.tuned_runs).
A run flagged ``suspected_gradient_masking`` is never picked: its robust accuracy is the number the
sanity checks distrust, so the "most robust" model would too often be the most masked one. A run
without an MLflow run id (older metrics files) cannot be registered and is skipped too.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from batchout.io import eps_key
from batchout.paths import arm_of
from batchout.reporting.groups import VERDICT_ATTACK, RunRecord

BEST_ROBUST = "best-robust"
TUNED = "tuned"
ALIASES = (BEST_ROBUST, TUNED)


@dataclass(frozen=True)
class Pick:
    run: str  # run name, e.g. mnist-lenet-batchout-s1
    run_id: str  # its MLflow run id (train metrics' mlflow_run_id)
    eps: float  # the headline eps the robust accuracy is taken at
    robust_acc: float  # worst-case robust accuracy at eps, a fraction of the attacked points
    clean_acc: float  # test accuracy on the whole test split


def registered_name(dataset: str) -> str:
    """One registered model per data set: its versions are comparable (same classes, image shape)."""
    return f"batchout-{dataset}"


def _candidate(r: RunRecord, eps: float) -> Pick | None:
    robust = r.attack.get("robust_acc", {}).get(VERDICT_ATTACK, {}).get(eps_key(eps))
    run_id = r.train.get("mlflow_run_id")
    if robust is None or not run_id or r.masking() is not None:
        return None
    return Pick(r.name, str(run_id), eps, float(robust), float(r.train["test_acc"]))


def best(records: Sequence[RunRecord], eps: float) -> Pick | None:
    """The highest (robust, clean) accuracy among the eligible records; the first of equals."""
    picks = [p for r in records if (p := _candidate(r, eps)) is not None]
    return max(picks, key=lambda p: (p.robust_acc, p.clean_acc), default=None)


def pick(records: Sequence[RunRecord], headline_eps: Mapping[str, float],
         tuned_arms: Collection[str]) -> dict[str, dict[str, Pick | None]]:
    """Data set -> alias -> chosen run (None: no eligible run). Data sets without a headline eps
    (no attack results to rank by) are left out."""
    out: dict[str, dict[str, Pick | None]] = {}
    for ds, eps in headline_eps.items():
        mine = [r for r in records if r.dataset == ds]
        tuned = [r for r in mine if arm_of(r.name) in tuned_arms]
        out[ds] = {BEST_ROBUST: best(mine, eps), TUNED: best(tuned, eps)}
    return out
