"""Configuration: the params.yaml schema (``schema``: one pydantic model per section), reading it with
one-line errors (``load``), one training run's resolved settings (``run``), and the tune stage's
answer ``tune/best.yaml`` (``tuned``).

Usage: ``from batchout.config import load_params, resolve_run``;
``cfg = resolve_run(load_params("params.yaml").train, "mnist-lenet-standard-s0")``

Must not import torch or any batchout subpackage at module level; names of models, methods,
attacks and data sets are checked against their registries when a params file is validated.
"""

from batchout.config.load import format_error, load_params, parse_params
from batchout.config.run import RunConfig, resolve_run, runs_of
from batchout.config.schema import (
    Adversarial,
    AttackParams,
    Augment,
    BatchOutParams,
    Cap,
    Checks,
    Converge,
    DataParams,
    Escalation,
    Optimizer,
    Params,
    ReportParams,
    RunSpec,
    Schedule,
    Strict,
    Subset,
    TrainParams,
    TuneParams,
    known_datasets,
)

__all__ = [
    "Adversarial", "AttackParams", "Augment", "BatchOutParams", "Cap", "Checks", "Converge", "DataParams",
    "Escalation", "Optimizer", "Params",
    "ReportParams", "RunConfig", "RunSpec", "Schedule", "Strict", "Subset", "TrainParams", "TuneParams",
    "format_error", "known_datasets", "load_params", "parse_params", "resolve_run", "runs_of",
]
