"""Train an arm of the study (train.runs.<arm>, every seed) or one seed's run: models, metrics, curves, MLflow runs.

Usage: ``python -m pipeline.train mnist-lenet-standard`` (or ``batchout train NAME``; ``NAME-s1`` for one seed);
several processes: ``torchrun --nproc-per-node 4 -m pipeline.train NAME``
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from batchout.paths import Paths
from pipeline._common import NAME_HELP, PARAMS_OPTION, load, run_cli, stage_command


@stage_command
def command(name: str = typer.Argument(..., help=NAME_HELP),
            params: Path = PARAMS_OPTION) -> None:
    from batchout.stages.train import run  # heavy (torch, mlflow): imported only when the command runs
    results = run(load(params), name, Paths())
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 speaks for the group
        return
    for run_, m in results.items():
        print(f"{run_}: test_acc={m['test_acc']:.4f} val_acc={m['val_acc']:.4f} "
              f"({m['wall_seconds']:.1f} s, {m['images_per_s']:.0f} images/s)")


if __name__ == "__main__":
    run_cli(command)
