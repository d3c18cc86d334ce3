"""The search over BatchOut's k and n: the only code that imports Optuna. ``study``: sampler, pruner,
the objective's trial loop and the best result; ``storage``: where a study lives (journal file or
SQLAlchemy URL) and what happens to the trials of dead workers.

Usage: ``from batchout import tuning``; ``study = tuning.open_study(name, tuning.storage_spec(None, journal), tune)``;
``tuning.optimize(study, tune, trial_fn, quota=6, total=6)``; ``tuning.summarize(study, tune)``

Callers never touch optuna objects: ``trial_fn(ctx: TrialContext)`` trains one configuration. Must not
import mlflow, torch or the stages (the tune stage wires training and tracking to it).
"""

from batchout.tuning.storage import (
    GRACE_PERIOD_S,
    HEARTBEAT_KEY,
    fail_stale_trials,
    has_heartbeat,
    open_storage,
    storage_spec,
)
from batchout.tuning.study import (
    FINISHED,
    TrialContext,
    TrialPruned,
    finished_count,
    make_pruner,
    objective_value,
    open_study,
    optimize,
    pareto_pick,
    save_plots,
    split_quota,
    suggest,
    summarize,
)

__all__ = [
    "FINISHED", "GRACE_PERIOD_S", "HEARTBEAT_KEY", "TrialContext", "TrialPruned", "fail_stale_trials",
    "finished_count", "has_heartbeat", "make_pruner", "objective_value", "open_storage",
    "open_study", "optimize", "pareto_pick", "save_plots", "split_quota", "storage_spec", "suggest", "summarize",
]
