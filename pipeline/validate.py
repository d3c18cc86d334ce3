"""Check the whole params.yaml against the schema before any other stage runs (dvc.yaml's first stage).

Usage: ``python -m pipeline.validate`` (or ``batchout validate``); a bad key exits 2 with one line
naming it and its closest valid spelling, and nothing is written.
"""

from __future__ import annotations

from pathlib import Path

from batchout.paths import Paths
from pipeline._common import PARAMS_OPTION, load, run_cli, stage_command


@stage_command
def command(params: Path = PARAMS_OPTION) -> None:
    from batchout.stages.validate import run

    done = run(load(params), Paths())
    print(f"{params}: valid ({done['arms']} arms, {done['runs']} runs, data sets {', '.join(done['datasets'])}; "
          f"attacks {', '.join(done['attacks'])})")


if __name__ == "__main__":
    run_cli(command)
