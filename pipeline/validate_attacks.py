"""Check every attack's settings in params.yaml by building it (dvc.yaml's second stage).

Usage: ``python -m pipeline.validate_attacks`` (or ``batchout validate_attacks``); a bad setting exits 2
with one line naming it (``attack.attacks.pgd.stepz: unknown setting; did you mean 'steps'? ...``),
and nothing is written.
"""

from __future__ import annotations

from pathlib import Path

from batchout.paths import Paths
from pipeline._common import PARAMS_OPTION, load, run_cli, stage_command


@stage_command
def command(params: Path = PARAMS_OPTION) -> None:
    from batchout.stages.validate_attacks import run

    done = run(load(params), Paths())
    print(f"{params}: attack settings valid ({', '.join(done['attacks'])})")


if __name__ == "__main__":
    run_cli(command)
