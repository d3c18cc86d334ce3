"""``tune/best.yaml``, the tune stage's answer: its schema, its writer and its reader.

Usage: ``write_tune_result(paths.tune_best, summary)``; ``best = read_tune_result(paths.tune_best); best.k``

The tuned training runs read k and n from here, so a hand-edited or damaged file is refused in one
line naming the file and the key, like a bad params.yaml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from batchout.config.load import format_error
from batchout.config.schema import Strict
from batchout.errors import BatchoutError
from batchout.io import write_yaml


class FrontPoint(Strict):
    """One Pareto-optimal trial (``tune.objective: pareto``)."""

    trial: int
    k: float = Field(gt=0.0, le=1.0)
    n: float = Field(ge=0.0, le=1.0)
    clean_acc: float
    robust_acc: float


class TuneResult(FrontPoint):
    """The best trial (or the Pareto pick) and how the search went."""

    value: float  # the objective's value of that trial (robust accuracy for a Pareto pick)
    objective: str
    study: str
    finished_trials: int = Field(ge=1)
    complete_trials: int = Field(ge=1)
    pruned_trials: int = Field(ge=0)
    # true when every complete trial was masked (its robust accuracy an upper bound), so the pick is one
    masked: bool | None = None
    front: list[FrontPoint] | None = None


def write_tune_result(path: Path, summary: dict[str, Any]) -> TuneResult:
    """Validate ``summary`` and write it atomically (a bad summary is a bug: it raises, writes nothing)."""
    result = TuneResult.model_validate(summary)
    write_yaml(path, result.model_dump(mode="json", exclude_none=True))
    return result


def read_tune_result(path: Path) -> TuneResult:
    redo = "rerun `dvc repro tune`"
    if not Path(path).is_file():
        raise BatchoutError(f"train.tuned_runs needs {path}, which is missing; {redo} first")
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        raise BatchoutError(f"{path}: not valid YAML; {redo}") from None
    if not isinstance(doc, dict):
        raise BatchoutError(f"{path}: expected a mapping of the best trial's values; {redo}")
    try:
        return TuneResult.model_validate(doc)
    except ValidationError as err:
        raise BatchoutError(f"{path}: {format_error(err, TuneResult)}; {redo}") from None
