"""Prepare a data set: raw files -> data/prepared/<name>/ (seeded train/val/test .npy + meta.json).

Usage: ``batchout prepare mnist`` or ``python -m pipeline.prepare cifar3 --params params.yaml``

Raw data comes from data.raw_dir, else the folder named by BATCHOUT_DATA_MIRROR, else the official
download. Bad input (unknown data set, missing or corrupt data) exits 2 with one line, writing nothing.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline._common import PARAMS_OPTION, load, run_cli, stage_command


@stage_command
def command(
    dataset: str = typer.Argument(..., help="mnist, cifar10, cifar3 or a key of data.image_folders"),
    params: Path = PARAMS_OPTION,
) -> None:
    from batchout.paths import Paths
    from batchout.stages.prepare import run

    meta = run(load(params).data, dataset, Paths())
    c, src = meta["counts"], meta["source"]
    print(
        f"{dataset}: train {c['train']}, val {c['val']}, test {c['test']} "
        f"(of {meta['source_counts']['train']}/{meta['source_counts']['test']}, {src['kind']} from {src['where']}) "
        f"-> {Paths().prepared(dataset)}"
    )


if __name__ == "__main__":
    run_cli(command)
