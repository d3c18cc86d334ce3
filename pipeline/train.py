"""Train one configured run (train.runs.<name>): model, metrics, curves, MLflow run.

Usage: ``python -m pipeline.train mnist-lenet-standard-s0`` (or ``batchout train NAME``);
several processes: ``torchrun --nproc-per-node 4 -m pipeline.train NAME``
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from batchout.paths import Paths
from pipeline._common import PARAMS_OPTION, load, run_cli, stage_command


@stage_command
def command(name: str = typer.Argument(..., help="a key of train.runs in params.yaml"),
            params: Path = PARAMS_OPTION) -> None:
    from batchout.stages.train import run  # heavy (torch, mlflow): imported only when the command runs
    metrics = run(load(params), name, Paths())
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 speaks for the group
        return
    print(f"{name}: test_acc={metrics['test_acc']:.4f} val_acc={metrics['val_acc']:.4f} "
          f"({metrics['wall_seconds']:.1f} s, {metrics['images_per_s']:.0f} images/s)")


if __name__ == "__main__":
    run_cli(command)
