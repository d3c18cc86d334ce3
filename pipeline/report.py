"""Build the report: tables, plots and verdicts from every run's metrics, to reports/ and MLflow.

Usage: ``python -m pipeline.report`` (or ``batchout report``)
"""

from __future__ import annotations

from pathlib import Path

from batchout.paths import Paths
from pipeline._common import PARAMS_OPTION, load, run_cli, stage_command


@stage_command
def command(params: Path = PARAMS_OPTION) -> None:
    from batchout.stages.report import run  # heavy (torch, mlflow): imported only when the command runs

    doc = run(load(params), Paths())
    flagged = sum(len(g["suspected_gradient_masking"]) for g in doc["groups"])
    print(f"report: {len(doc['groups'])} groups, {flagged} flagged for gradient masking -> "
          f"{Paths().reports / 'report.html'} (MLflow run {doc['mlflow_run_id']})")


if __name__ == "__main__":
    run_cli(command)
