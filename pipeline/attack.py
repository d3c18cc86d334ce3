"""Attack one trained model over the eps grid and log its robustness.

Usage: ``python -m pipeline.attack mnist-lenet-standard-s0`` (or ``batchout attack NAME``)
"""

from __future__ import annotations

from pathlib import Path

import typer

from batchout.paths import Paths
from pipeline._common import PARAMS_OPTION, load, run_cli, stage_command


@stage_command
def command(name: str = typer.Argument(..., help="a key of train.runs or train.tuned_runs"),
            params: Path = PARAMS_OPTION) -> None:
    from batchout.io import eps_key
    from batchout.stages.attack import run  # heavy (torch, mlflow): imported only when the command runs

    result = run(load(params), name, Paths())
    last = result["eps"][-1]
    worst = result["robust_acc"].get("worst", result["robust_acc"].get("pgd", {}))
    masked = result["checks"].get("suspected_gradient_masking")
    print(f"{name}: clean={result['clean_acc']:.4f} worst@{last:.4f}={worst.get(eps_key(last), float('nan')):.4f}"
          f"{'  SUSPECTED GRADIENT MASKING' if masked else ''} ({result['seconds']:.1f} s)")


if __name__ == "__main__":
    run_cli(command)
