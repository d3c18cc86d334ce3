"""Tune stage: Optuna search over BatchOut's k and n, one short training run per trial.

Usage: ``best = run(params, Paths(), n_workers=2)`` writes ``tune/best.yaml`` and ``tune/plots/*.png``

A trial trains ``tune.model`` on ``tune.dataset`` (a seeded ``tune.train_subset`` of its training images,
or all) for ``tune.epochs`` epochs with the train section's
optimizer, schedule, batch size, augmentation and device, and scores it on a seeded subset of
``tune.val_subset`` validation examples: clean accuracy, and robust accuracy at L-infinity
``tune.attack_eps`` under ``tune.attack`` (an AutoAttack cascade, by default APGD-CE then gradient-free
Square) escalated until a doubled round breaks at most ``tune.converge.tolerance`` points
(``batchout.evaluation.converge``). A weak gradient attack rewards gradient masking, and a search
selects for what it rewards. A trial whose escalation reached ``tune.converge.cap`` while points still
fell, or in which gradient-free Square broke more than the tolerance of points the gradient attack left
robust (:func:`masked`), is scored by that upper bound and marked ``masked`` (MLflow tag,
``tune/plots/trials.csv``): the sampler treats it as infeasible and the pick never chooses it while an
unmasked trial completed (``batchout.tuning``).

Per-epoch value for pruning: the objective itself (robust, clean or mix) when the attack is cheap,
i.e. its first round costs at most a training epoch's passes (``val_subset`` x :func:`first_round_passes`
<= 2 x the training images); otherwise the clean validation accuracy, which is free (the training loop
computes it anyway). The final epoch's evaluation is the trial's value.

Resume: the study is named ``<tune.study_name>-<fingerprint>``, the fingerprint covering every
setting that changes what a trial measures (tune section except n_trials/storage/study_name, the
train settings used, the data checksums). Rerunning with the same settings continues the study and
runs only ``n_trials`` minus its finished (complete or pruned) trials; changing any of them starts
a fresh study instead of mixing incomparable trials. Storage: batchout.tuning.storage; many
machines: docs/recipes.md.

MLflow: experiment ``tune-<dataset>``, a parent run named ``tune.study_name`` (resumed on rerun),
one nested child run per trial (k, n, per-epoch values, final accuracies, state), plots and
best.yaml as artifacts of the parent. After a kill, the rerun marks the dead trials' child runs
and an orphaned parent KILLED, so no run stays RUNNING; the dead trials are retried (see
batchout.tuning: a killed search reruns to the same best k and n as an uninterrupted one).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from batchout import tracking, tuning
from batchout.attacks.autoattack import checked
from batchout.config import BatchOutParams, Params, RunConfig
from batchout.config.tuned import write_tune_result
from batchout.data.loader import load_meta, load_split, seeded_subset
from batchout.device import channels_last, resolve_device, seed_everything
from batchout.errors import BatchoutError
from batchout.evaluation.converge import Evaluation, converged
from batchout.evaluation.passes import PassCounter
from batchout.io import atomic_dir
from batchout.models.build import build_model
from batchout.paths import Paths
from batchout.training.loop import Split, TrainState, fit

PARENT_KEY = "mlflow_parent_run_id"  # study attribute: the parent run to resume


def trial_config(params: Params, k: float, n: float, name: str = "tune-trial") -> RunConfig:
    """The training run of one trial: tune's data set/model/method/seed/epochs, the train section's
    optimizer, schedule, batch sizes, augmentation and device, and this trial's k and n."""
    tune, train = params.tune, params.train
    return RunConfig(
        name=name, arm=name, dataset=tune.dataset, model=tune.model, method=tune.method, seed=tune.seed,
        model_kwargs=tune.model_kwargs, epochs=tune.epochs, batch_size=train.batch_size,
        eval_batch_size=train.eval_batch_size, device=train.device,
        deterministic=False,  # train.deterministic is not a tune dependency in dvc.yaml; CPU is exact anyway
        optimizer=train.optimizer, schedule=train.schedule, augment=train.augment,
        batchout=BatchOutParams(k=k, n=n, layers=tune.layers), adversarial=train.adversarial,
    )


def subset_of(split: Split, size: int | None, seed: int) -> Split:
    """A seeded choice of ``size`` examples of ``split`` (all of them when it is smaller, or ``size`` is None)."""
    if size is None or size >= len(split):
        return split
    idx = seeded_subset(len(split), size, seed).to(split.y.device)
    return Split(split.x[idx], split.y[idx])


def masked(ev: Evaluation, tolerance: int) -> bool:
    """Whether the trial's robust accuracy is only an upper bound: the escalation reached its cap while points
    still fell, or gradient-free Square broke more than ``tolerance`` points the gradient attacks before it
    in the cascade left robust (Carlini et al. 2019: a black-box attack beating the white-box ones means the
    gradients mislead, so the white-box number says nothing and Square's alone is a weak bound)."""
    if not ev.escalations or not ev.escalations[0].converged:
        return True
    return ev.parts("autoattack", 0).get("square", 0) > tolerance


def robust_each_epoch(params: Params, n_train: int) -> bool:
    """Whether the per-epoch pruning value is the objective itself (see the module docstring)."""
    tune = params.tune
    if tune.objective in ("clean", "pareto"):  # clean needs no attack; pareto never prunes
        return False
    return tune.val_subset * first_round_passes(tune.attack) <= 2 * n_train


def first_round_passes(attack: dict[str, Any]) -> int:
    """Forward+backward passes per robust validation point of the objective's first round (APGD: a forward
    and a backward per step, restart and target; Square: a forward per query; FAB-T: a forward and a
    backward per step and target): what the pruning rule weighs against a training epoch's 2 passes per image."""
    budget = checked(torch.nn.Identity(), attack, "tune.attack").budget()
    total = 0
    for name, cfg in budget.items():
        if cfg is False:
            continue
        runs = cfg.get("restarts", 1) * (cfg.get("n_targets", 1) if name in ("apgd_t", "fab_t") else 1)
        total += cfg["n_queries"] if name == "square" else 2 * cfg["steps"] * runs
    return total


# Bump when what a trial measures changes for the same settings, so an existing study of the old
# measurement is not resumed as if comparable. 2: robust accuracy scored in eval mode (was train mode);
# 3: a converged APGD-CE + Square estimate (was a 5-step PGD, which rewards gradient masking).
MEASUREMENT = 3


def study_name(params: Params, data_sha: dict[str, str]) -> str:
    tune = params.tune.model_dump(mode="json", exclude={"n_trials", "storage", "study_name"})
    train = params.train.model_dump(mode="json", include={"batch_size", "optimizer", "schedule", "augment"})
    blob = json.dumps({"tune": tune, "train": train, "data": data_sha, "measurement": MEASUREMENT}, sort_keys=True)
    return f"{params.tune.study_name}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def child_run_name(study: str, number: int) -> str:
    return f"{study}-trial-{number}"


def experiment(params: Params) -> str:
    return f"tune-{params.tune.dataset}"


@dataclass
class TrialRunner:
    """Trains and scores one trial; one per worker process, holding that worker's data."""

    params: Params
    meta: dict[str, Any]
    train: Split
    val: Split
    device: torch.device
    study: str
    parent_run_id: str

    def evaluate(self, model: torch.nn.Module) -> tuple[float, float, bool]:
        """Clean accuracy, the converged robust accuracy, and whether that is an upper bound (``masked``)."""
        t = self.params.tune
        counter = PassCounter(model)
        # built here, not by name: the tune stage depends (in dvc.yaml) on the ensemble's code, not every attack's
        attack = checked(counter, t.attack, "tune.attack")
        # one eps per call: the trial's training and the tune task already show progress
        ev = converged(model, counter, self.val.x, self.val.y, {"autoattack": attack}, [t.attack_eps],
                       self.params.train.eval_batch_size, self.device, escalate_attack="autoattack",
                       tolerance=t.converge.tolerance, cap=t.converge.cap.model_dump(), progress=None)
        return ev.grid.clean_acc, ev.worst_acc()[0], masked(ev, t.converge.tolerance)

    def _hook(self, ctx: tuning.TrialContext, model: torch.nn.Module, log: tracking.RunLogger,
              last: dict[str, float]) -> Any:
        """After each epoch: score, log the epoch's values, report to the pruner (may raise)."""
        tune = self.params.tune
        each = robust_each_epoch(self.params, len(self.train))

        def on_epoch(epoch: int, metrics: dict[str, float], state: TrainState) -> None:
            row = {"val_clean_acc": metrics["val_acc"], "train_loss": metrics["train_loss"]}
            value = metrics["val_acc"]
            if each:
                last["clean"], last["robust"], last["masked"] = self.evaluate(model)
                last["epoch"] = epoch
                row |= {"val_clean_acc": last["clean"], "val_robust_acc": last["robust"]}
                value = tuning.objective_value(tune, last["clean"], last["robust"])
            log.log_epoch(epoch, {**row, "intermediate_value": value})
            ctx.report(epoch, value, can_prune=epoch < tune.epochs)

        return on_epoch

    def _finish(self, model: torch.nn.Module, log: tracking.RunLogger, last: dict[str, float]) -> None:
        tune = self.params.tune
        if last.get("epoch") != tune.epochs:  # not scored after the last epoch yet
            last["clean"], last["robust"], last["masked"] = self.evaluate(model)
        value = tuning.objective_value(tune, last["clean"], last["robust"])
        values = {"value_clean": value[0], "value_robust": value[1]} if isinstance(value, tuple) else {
            "value": value}
        log.log_metrics({"clean_acc": last["clean"], "robust_acc": last["robust"], **values})
        log.set_tags({"optuna.state": "COMPLETE", "pruned": "false", "masked": str(last["masked"]).lower()})

    def __call__(self, ctx: tuning.TrialContext) -> tuple[float, float]:
        cfg = trial_config(self.params, ctx.k, ctx.n, child_run_name(self.study, ctx.number))
        seed_everything(cfg.seed, cfg.deterministic, self.device)
        model = channels_last(build_model(cfg, self.meta).to(self.device))
        last: dict[str, float] = {}
        tags = {**tracking.run_tags(), "optuna.study": self.study, "optuna.trial": ctx.number}
        pruned: tuning.TrialPruned | None = None
        with tracking.start_run(experiment(self.params), cfg.name, parent_run_id=self.parent_run_id,
                                tags=tags) as log:
            ctx.set_attrs(mlflow_run_id=log.run_id)
            log.log_params({"k": ctx.k, "n": ctx.n, "trial": ctx.number, "epochs": cfg.epochs})
            try:
                fit(model, self.train, self.val, cfg, self.device, on_epoch=self._hook(ctx, model, log, last))
            except tuning.TrialPruned as exc:
                pruned = exc
                log.set_tags({"optuna.state": "PRUNED", "pruned": "true"})
            else:
                self._finish(model, log, last)
                ctx.mark_masked(last["masked"])
        if pruned is not None:  # raised outside the run, so MLflow closes it FINISHED, not FAILED
            raise pruned
        return last["clean"], last["robust"]


def make_runner(params: Params, paths: Paths, study: str, parent_run_id: str) -> TrialRunner:
    device = resolve_device(params.train.device)
    folder = paths.prepared(params.tune.dataset)
    meta = load_meta(folder)
    train = Split(*[t.to(device) for t in load_split(folder, "train")])
    train = subset_of(train, params.tune.train_subset, params.tune.seed)  # a search may train on fewer images
    val = Split(*[t.to(device) for t in load_split(folder, "val")])
    val = subset_of(val, params.tune.val_subset, params.tune.seed)
    return TrialRunner(params, meta, train, val, device, study, parent_run_id)


def _worker(params: Params, paths: Paths, spec: str, name: str, quota: int, total: int, parent_run_id: str,
            threads: int) -> None:
    """Entry point of one spawned worker process: reopen the study and run its share of trials."""
    torch.set_num_threads(threads)  # N workers share the cores instead of each taking them all
    os.environ.setdefault("BATCHOUT_PROGRESS", "plain")  # rich bars of N workers would overwrite each other
    tracking.configure(tracking.repo_root(paths.root))
    study = tuning.open_study(name, spec, params.tune)
    tuning.optimize(study, params.tune, make_runner(params, paths, name, parent_run_id), quota=quota, total=total)


def run_processes(target: Callable[..., None], args: Sequence[tuple[Any, ...]]) -> list[int]:
    """Start one spawned process per argument tuple, wait for all, return their exit codes.
    Spawn (not fork): a forked child would inherit torch's thread pools and open storage handles."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=a, name=f"tune-worker-{i}") for i, a in enumerate(args)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return [p.exitcode if p.exitcode is not None else -1 for p in procs]


def _search(params: Params, paths: Paths, study: Any, spec: str, quotas: list[int], total: int,
            parent_run_id: str) -> None:
    name = study.study_name
    if sum(q > 0 for q in quotas) <= 1:
        runner = make_runner(params, paths, name, parent_run_id)
        tuning.optimize(study, params.tune, runner, quota=sum(quotas), total=total)
        return
    threads = max(1, (os.cpu_count() or 1) // len(quotas))
    jobs = [(params, paths, spec, name, q, total, parent_run_id, threads) for q in quotas if q > 0]
    codes = run_processes(_worker, jobs)
    bad = [(i, c) for i, c in enumerate(codes) if c != 0]
    if bad:
        raise BatchoutError(f"tune: worker {bad[0][0]} exited with code {bad[0][1]} (its error is printed above); "
                            "rerun the same command to resume the study")


def _finish(params: Params, paths: Paths, study: Any, log: tracking.RunLogger) -> dict[str, Any]:
    best = write_tune_result(paths.tune_best, tuning.summarize(study, params.tune)).model_dump(exclude_none=True)
    with atomic_dir(paths.tune_dir / "plots") as tmp:
        tuning.save_plots(study, params.tune, tmp)
    log.log_metrics({"best_value": best["value"], "best_k": best["k"], "best_n": best["n"],
                     "finished_trials": best["finished_trials"], "pruned_trials": best["pruned_trials"]})
    log.log_artifact(paths.tune_best)
    log.log_artifact(paths.tune_dir / "plots", "plots")
    return best


def run(params: Params, paths: Paths, *, storage: str | None = None, n_workers: int = 1,
        n_trials: int | None = None) -> dict[str, Any]:
    tune = params.tune
    total = tune.n_trials if n_trials is None else n_trials
    if total < 1 or n_workers < 1:
        raise BatchoutError(f"tune: n_trials={total}, n_workers={n_workers}; allowed: integers >= 1")
    tracking.configure(tracking.repo_root(paths.root))  # fails fast on an unreachable server
    meta = load_meta(paths.prepared(tune.dataset))
    spec = tuning.storage_spec(storage or tune.storage, paths.tune_journal)
    study = tuning.open_study(study_name(params, meta["sha256"]), spec, tune)
    for number in tuning.fail_stale_trials(study):  # its worker died: close its MLflow run too
        tracking.mark_stale_runs(experiment(params), child_run_name(study.study_name, number), None)
    quotas = tuning.split_quota(total - tuning.finished_count(study), n_workers)
    resume = study.user_attrs.get(PARENT_KEY)
    # A run killed before it recorded its parent run in the study left that parent RUNNING.
    tracking.mark_stale_runs(experiment(params), tune.study_name, keep_run_id=resume)
    tags = {**tracking.run_tags(paths.root), "optuna.study": study.study_name, "optuna.objective": tune.objective}
    with tracking.start_run(experiment(params), tune.study_name, resume_run_id=resume, tags=tags) as log:
        if log.run_id != resume:
            study.set_user_attr(PARENT_KEY, log.run_id)
            log.log_params({**tracking.flatten(tune.model_dump(mode="json", exclude={"n_trials", "storage"})),
                            "study": study.study_name})
        log.log_metrics({"n_trials": total, "n_workers": n_workers})
        _search(params, paths, study, spec, quotas, total, log.run_id)
        return _finish(params, paths, study, log)
