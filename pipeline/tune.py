"""Tune BatchOut's k and n with Optuna (tune section of params.yaml): tune/best.yaml and tune/plots/.

Usage: ``python -m pipeline.tune [--n-workers 4] [--n-trials 20] [--storage postgresql://...]``
(or ``batchout tune``); rerunning resumes the same study.
"""

from __future__ import annotations

from pathlib import Path

import typer

from batchout.paths import Paths
from pipeline._common import PARAMS_OPTION, load, run_cli, stage_command


@stage_command
def command(
    params: Path = PARAMS_OPTION,
    storage: str | None = typer.Option(
        None, "--storage", help="journal file or SQLAlchemy URL (default: tune.storage, else tune/optuna.journal)"
    ),
    n_workers: int = typer.Option(1, "--n-workers", min=1, help="local worker processes sharing the study"),
    n_trials: int | None = typer.Option(
        None, "--n-trials", min=1, help="finished trials wanted in total (default: tune.n_trials)"
    ),
) -> None:
    from batchout.stages.tune import run  # heavy (torch, mlflow): imported only when the command runs

    best = run(load(params), Paths(), storage=storage, n_workers=n_workers, n_trials=n_trials)
    print(f"tune: best k={best['k']:.4f} n={best['n']:.4f} {best['objective']}={best['value']:.4f} "
          f"(trial {best['trial']}, {best['finished_trials']} finished, {best['pruned_trials']} pruned)")


if __name__ == "__main__":
    run_cli(command)
