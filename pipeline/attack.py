"""Attack an arm's trained models (every seed) over the eps grid and log their robustness.

Usage: ``python -m pipeline.attack mnist-lenet-standard`` (or ``batchout attack NAME``; ``NAME-s1`` for one seed)
"""

from __future__ import annotations

from pathlib import Path

import typer

from batchout.paths import Paths
from pipeline._common import NAME_HELP, PARAMS_OPTION, load, run_cli, stage_command


@stage_command
def command(name: str = typer.Argument(..., help=NAME_HELP),
            params: Path = PARAMS_OPTION) -> None:
    from batchout.io import eps_key
    from batchout.stages.attack import run  # heavy (torch, mlflow): imported only when the command runs

    for run_, result in run(load(params), name, Paths()).items():
        last = result["eps"][-1]
        worst = result["robust_acc"]["worst"]
        masked = result["checks"].get("suspected_gradient_masking")
        print(f"{run_}: clean={result['clean_acc']:.4f} worst@{last:.4f}={worst[eps_key(last)]:.4f}"
              f"{'  SUSPECTED GRADIENT MASKING' if masked else ''} ({result['seconds']:.1f} s)")


if __name__ == "__main__":
    run_cli(command)
