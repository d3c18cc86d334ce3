"""Each run's few headline numbers, as the DVC metrics file ``metrics/<run>.json``: numbers only and
no timings, so the file changes only when a result does and ``dvc metrics diff`` / ``dvc exp show``
compare runs across commits and experiments.

Usage: ``files = run_metrics(records, {"mnist": 0.1})`` -> ``{"mnist-lenet-standard-s0": {"clean": 0.98, ...}}``;
``check_metrics(records)`` -> ``{"mnist-lenet-standard-s0": {"ensemble_drop": 0.0067, "converged": 1, ...}}``;
``arm_metrics(records, {"mnist": 0.1})`` -> ``{"mnist-lenet-standard": {"clean": 0.98, "worst": 0.61}}``

Per run: ``clean`` (test-split accuracy of the trained model), ``worst`` (per eps, the per-example
worst case over every attack of the grid and every escalation round, on the attacked test points), and
at the data set's headline eps (the report's, ``report.headline_eps`` or chosen from the data; the same
for every run of a data set, so the report names it, not this file) the 95 % Wilson
interval of the worst case (``lo``, ``hi``) and ``converged_at``: the factor of the profile's attack
budget at which the escalation converged there, 0 when it did not (the worst case is an upper bound).
Short, shared keys keep ``dvc metrics show`` one row per run under 120 columns (README: "After dvc repro").

``metrics/checks.json`` holds, per run, the evaluation checks' numbers: ``ensemble_drop`` (the most a
doubled escalation round took off the accuracy, a fraction of the attacked points: had it converged?),
``pgd_drop`` (the more-iterations check), ``budget`` (per eps, the factor of the profile's budget the
worst case rests on), ``converged`` (1 when it converged at every eps) and ``flagged`` (1 when any check
failed). Its keys are run names, so the per-run files' ``dvc metrics show metrics/<ds>-*`` stays narrow.

``metrics/arms.json`` holds each arm's mean over its seeds of ``clean`` and the headline ``worst``,
under keys no other metrics file has (``<arm>.clean``): ``dvc exp show`` then heads those columns
with the bare key, where the per-run files' shared keys carry their 40-character path, so one arm's
columns across experiments fit a terminal (README: "After dvc repro").
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from batchout.io import eps_key
from batchout.paths import arm_of
from batchout.reporting.groups import VERDICT_ATTACK, RunRecord

DIGITS = 4  # accuracies of at most a few thousand test points: 4 decimals lose nothing


def eps_label(eps: float) -> str:
    """As params.yaml writes budgets: ``0.1`` -> ``"0.1"``, ``8/255`` -> ``"8/255"``, else 4 decimals."""
    eps = float(eps)
    if abs(eps - round(eps, 2)) < 1e-9:
        return f"{round(eps, 2):g}"
    steps = eps * 255  # CIFAR budgets are whole 8-bit intensity steps
    if abs(steps - round(steps)) < 1e-6:
        return f"{round(steps)}/255"
    return f"{eps:.4f}".rstrip("0").rstrip(".")


def one_run(record: RunRecord, headline: float | None) -> dict[str, Any]:
    """The numbers of one run; ``headline`` None (a data set the report could not place) leaves out eps/lo/hi."""
    worst = record.attack["robust_acc"][VERDICT_ATTACK]
    out: dict[str, Any] = {
        "clean": round(float(record.train["test_acc"]), DIGITS),
        "worst": {eps_label(e): round(float(worst[eps_key(e)]), DIGITS) for e in record.attack["eps"]},
    }
    if headline is not None and eps_key(headline) in worst:
        lo, hi = record.attack["robust_ci"][VERDICT_ATTACK][eps_key(headline)]
        out.update(lo=round(float(lo), DIGITS), hi=round(float(hi), DIGITS))
        conv = record.convergence(headline)
        if conv is not None:  # the budget the headline worst case converged at; 0: it did not (an upper bound)
            out["converged_at"] = conv["factor"] if conv["converged"] else 0
    return out


def run_metrics(records: Sequence[RunRecord], headline: Mapping[str, float]) -> dict[str, dict[str, Any]]:
    """Run name -> its metrics file's content, in the records' (params) order."""
    return {r.name: one_run(r, headline.get(r.dataset)) for r in records}


def arm_metrics(records: Sequence[RunRecord], headline: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """Arm -> mean over its seeds of ``clean`` and of ``worst`` at the data set's headline eps."""
    runs = run_metrics(records, headline)
    arms: dict[str, list[RunRecord]] = {}
    for record in records:
        arms.setdefault(arm_of(record.name), []).append(record)
    out = {}
    for arm, members in arms.items():
        numbers = [runs[r.name] for r in members]
        out[arm] = {"clean": round(statistics.fmean(n["clean"] for n in numbers), DIGITS)}
        eps = headline.get(members[0].dataset)
        if eps is not None and all("lo" in n for n in numbers):
            out[arm]["worst"] = round(statistics.fmean(n["worst"][eps_label(eps)] for n in numbers), DIGITS)
    return out


def check_metrics(records: Sequence[RunRecord]) -> dict[str, dict[str, float]]:
    """Run name -> its checks' numbers (``metrics/checks.json``); a check that did not run is left out."""
    out = {}
    for r in records:
        checks = r.attack.get("checks", {})
        numbers = {"ensemble_drop": checks.get("ensemble_drop"), "pgd_drop": checks.get("more_iterations_drop")}
        out[r.name] = {k: round(float(v), DIGITS) for k, v in numbers.items() if v is not None}
        if r.attack.get("converge"):  # per eps, the budget the worst case rests on; 1 when every eps converged
            out[r.name]["budget"] = {eps_label(e): r.convergence(e)["factor"] for e in r.attack["eps"]}
            out[r.name]["converged"] = int(all(r.converged(e) for e in r.attack["eps"]))
        out[r.name]["flagged"] = int(r.masking() is not None)
    return out
