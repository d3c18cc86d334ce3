"""A study's finished trials as a table: what the report's tuning landscape (k vs n) draws, so the
report never opens Optuna's storage.

Usage: ``write_trials(study, "robust", best=3, path=Path("tune/plots/trials.csv"))``

Columns: ``number, state (complete | pruned), k, n, objective, value, clean_acc, robust_acc, masked, best``.
``masked``: 1 when the trial's robust accuracy is an upper bound (its attack did not converge), 0 when it
converged, empty for a pruned trial.
``value`` is the objective's value (a pareto study: robust accuracy, the quantity its pick maximises,
as in ``tune/best.yaml``); empty for a pruned trial, which never returned one (Optuna stores its last
per-epoch report there, a number of another kind).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from batchout.io import write_csv


def _row(t: FrozenTrial, objective: str, best: int | None) -> dict[str, Any]:
    attrs = {key: t.user_attrs.get(key, "") for key in ("clean_acc", "robust_acc")}  # set after training only
    masked = t.user_attrs.get("masked")
    return {"number": t.number, "state": t.state.name.lower(), "k": float(t.params["k"]), "n": float(t.params["n"]),
            # values: [objective] or, for pareto, [clean, robust]: the last one is what best.yaml calls value
            "objective": objective, "value": t.values[-1] if t.state == TrialState.COMPLETE else "", **attrs,
            "masked": "" if masked is None else int(masked),
            "best": int(t.number == best)}


def write_trials(study: Study, objective: str, best: int | None, path: Path) -> Path:
    """Every complete or pruned trial, in trial order; ``best``: the chosen trial's number (None: none)."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    write_csv(path, [_row(t, objective, best) for t in sorted(done, key=lambda t: t.number)])
    return path
