"""One training run's resolved settings: the train section's defaults merged with the run's overrides.

Usage: ``cfg = resolve_run(params.train, "mnist-lenet-standard-s0"); cfg.optimizer.lr``;
``runs_of(params.train, "mnist-lenet-standard")`` -> that arm's run names, one per seed
"""

from __future__ import annotations

from typing import Any

from batchout.config.schema import (
    Adversarial,
    Augment,
    BatchOutParams,
    Optimizer,
    Schedule,
    Strict,
    TrainParams,
)
from batchout.errors import BatchoutError, choice_msg
from batchout.paths import split_run


class RunConfig(Strict):
    """Everything one training run needs, section defaults merged with the run's overrides.

    This is what is logged to MLflow and stored beside the weights."""

    name: str
    arm: str
    dataset: str
    model: str
    method: str
    seed: int
    model_kwargs: dict[str, Any]
    epochs: int
    batch_size: int
    eval_batch_size: int
    device: str
    deterministic: bool
    optimizer: Optimizer
    schedule: Schedule
    augment: Augment
    batchout: BatchOutParams
    adversarial: Adversarial


def runs_of(train: TrainParams, name: str) -> list[str]:
    """The run names an argument stands for: every seed of an arm, or the one run named."""
    if name in train.all_runs():
        return train.run_names(name)
    if name in train.run_names():
        return [name]
    raise BatchoutError(choice_msg("run", name, tuple(train.all_runs()) + tuple(train.run_names())))


def resolve_run(train: TrainParams, name: str, tuned: dict[str, float] | None = None) -> RunConfig:
    """Merge the arm of run ``name`` (``<arm>-s<seed>``, from ``train.runs`` or ``train.tuned_runs``)
    over the section defaults; for a tuned arm, ``tuned`` (k, n from the tune stage) replaces
    BatchOut's k and n."""
    parts = split_run(name)
    arms = train.all_runs()
    if parts is None or parts[0] not in arms or parts[1] not in arms[parts[0]].seeds:
        raise BatchoutError(choice_msg("run", name, tuple(train.run_names())))
    arm, seed = parts
    spec = arms[arm]
    batchout = spec.batchout or train.batchout
    if arm in train.tuned_runs:
        if tuned is None:
            raise BatchoutError(f"train.tuned_runs.{arm}: needs the tune result (k, n); run `dvc repro tune`")
        batchout = batchout.model_copy(update={"k": tuned["k"], "n": tuned["n"], "from_tune": True})
    adversarial = train.adversarial
    if spec.adv_eps is not None:
        adversarial = adversarial.model_copy(update={"eps": spec.adv_eps})
    optimizer = train.optimizer if spec.lr is None else train.optimizer.model_copy(update={"lr": spec.lr})
    return RunConfig(
        name=name,
        arm=arm,
        dataset=spec.dataset,
        model=spec.model,
        method=spec.method,
        seed=seed,
        model_kwargs=spec.model_kwargs,
        epochs=spec.epochs or train.epochs,
        batch_size=train.batch_size,
        eval_batch_size=train.eval_batch_size,
        device=train.device,
        deterministic=train.deterministic,
        optimizer=optimizer,
        schedule=train.schedule,
        augment=spec.augment or train.augment,
        batchout=batchout,
        adversarial=adversarial,
    )
