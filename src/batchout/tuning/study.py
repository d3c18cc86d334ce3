"""The search over BatchOut's k and n: sampler, pruner, trial loop, best result and plots.

Usage: ``study = open_study(name, storage_spec(None, Path("tune/optuna.journal")), params.tune)``;
``optimize(study, params.tune, trial_fn, quota=6, total=6)`` (shows progress: trials, best so far);
``summarize(study, params.tune)``

``trial_fn(ctx: TrialContext) -> (clean_acc, robust_acc)`` trains one configuration; ``ctx.report``
after each epoch raises :data:`TrialPruned` when the pruner stops it. A study ends with exactly
``n_trials`` finished trials however many workers start together, and a killed search reruns (one
worker) to the same trials, values and best k, n; only trial numbers differ (a retry gets a new one:
HyperbandPruner, bracketing by number, is exact only without retries). Many machines: docs/recipes.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.pruners import BasePruner, HyperbandPruner, MedianPruner, NopPruner
from optuna.samplers import BaseSampler, TPESampler
from optuna.study import MaxTrialsCallback, Study
from optuna.trial import FrozenTrial, Trial, TrialState

from batchout.config import TuneParams
from batchout.errors import BatchoutError
from batchout.progress import track
from batchout.tuning.storage import OPENED, has_heartbeat, keep_alive, open_storage, stamp_worker
from batchout.tuning.trials import write_trials

log = logging.getLogger(__name__)
TrialPruned = optuna.TrialPruned
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
CLAIMED = (*FINISHED, TrialState.RUNNING)  # what counts toward n_trials
PARETO_CLEAN_SLACK = 0.02  # pareto pick: within 2 accuracy points of the best clean accuracy
RUNNING_STRIDE = 100_003  # seed step per earlier RUNNING trial; above any finished-trial count


def startup_trials(n_trials: int) -> int:
    """Random trials before TPE/the pruner kick in: a third of the budget, 1 to 5 of them (Optuna's
    defaults of 10 and 5 would leave a 6-trial study purely random and unpruned)."""
    return max(1, min(5, n_trials // 3))


class TrialSeededSampler(BaseSampler):
    """TPE rebuilt before each trial with seed ``sampler_seed + finished trials + RUNNING_STRIDE *
    running trials numbered below it``: TPE seeded once would replay its first draws after a kill;
    this way the i-th finished trial's k, n depend only on the trials finished before it (FAIL ones
    are invisible to TPE, so a trial that failed by itself is proposed again on rerun), and workers
    asking at the same moment still get different seeds."""

    def __init__(self, tune: TuneParams) -> None:
        self._tune, self._tpe = tune, TPESampler()

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        stamp_worker(study, trial.number)  # study.ask() just stored it RUNNING: from now on a kill is detectable
        earlier = sum(t.number < trial.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        seed = self._tune.sampler_seed + finished_count(study) + RUNNING_STRIDE * earlier
        self._tpe = TPESampler(seed=seed, n_startup_trials=startup_trials(self._tune.n_trials), multivariate=True,
                               constant_liar=True)  # constant_liar: TPE avoids points other workers are running

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, Any]:
        return self._tpe.infer_relative_search_space(study, trial)

    def sample_relative(self, study: Study, trial: FrozenTrial, space: dict[str, Any]) -> dict[str, Any]:
        return self._tpe.sample_relative(study, trial, space)

    def sample_independent(self, study: Study, trial: FrozenTrial, name: str, distribution: Any) -> Any:
        return self._tpe.sample_independent(study, trial, name, distribution)


def make_pruner(tune: TuneParams) -> BasePruner:
    if tune.objective == "pareto" or tune.pruner == "none":  # Optuna cannot prune multi-objective studies
        return NopPruner()
    if tune.pruner == "hyperband":
        return HyperbandPruner(min_resource=1, max_resource=tune.epochs, reduction_factor=3)
    return MedianPruner(n_startup_trials=startup_trials(tune.n_trials), n_warmup_steps=0)


def open_study(name: str, spec: str, tune: TuneParams, *, pruner: BasePruner | None = None) -> Study:
    """Create the study, or load it with every trial kept when it exists (resume). The stage's study
    names fingerprint ``tune.objective``, so a loaded study always has the wanted directions."""
    storage = open_storage(spec)
    study = optuna.create_study(storage=storage, study_name=name, load_if_exists=True,
                                directions=["maximize"] * (2 if tune.objective == "pareto" else 1),
                                pruner=pruner or make_pruner(tune), sampler=TrialSeededSampler(tune))
    OPENED[study] = storage
    return study


def finished_count(study: Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def split_quota(remaining: int, n_workers: int) -> list[int]:
    """Trials per worker, summing to ``remaining`` exactly, so N workers never overshoot."""
    base, extra = divmod(max(remaining, 0), n_workers)
    return [base + (i < extra) for i in range(n_workers)]


@dataclass
class TrialContext:
    """What one trial's training sees: its number, k and n, and a per-epoch report hook."""

    number: int
    k: float
    n: float
    single_objective: bool
    _trial: Trial = field(repr=False)

    def report(self, epoch: int, value: float, *, can_prune: bool = True) -> None:
        """Record the epoch's value (not for pareto: Optuna rejects it); raise :data:`TrialPruned` when the
        pruner stops the trial, unless ``can_prune=False`` (the last epoch: a trained trial stays COMPLETE)."""
        if self.single_objective:
            self._trial.report(float(value), epoch)
            if can_prune and self._trial.should_prune():
                raise TrialPruned(f"trial {self.number} pruned after epoch {epoch} (value {value:.4f})")

    def set_attrs(self, **attrs: Any) -> None:
        for key, value in attrs.items():
            self._trial.set_user_attr(key, value)

    def mark_masked(self, masked: bool) -> None:
        """Whether the trial's robust accuracy is only an upper bound (``masked``: its attack did not converge,
        or gradient-free Square broke what the gradient attack could not). A masked trial is infeasible for
        TPE (Optuna's constraint ``masked`` > 0), so the sampler does not steer toward gradient masking
        however high its bound, and :func:`summarize` never picks it while an unmasked trial completed."""
        self.set_attrs(masked=masked)
        self._trial.set_constraint("masked", 1.0 if masked else 0.0)


def objective_value(tune: TuneParams, clean: float, robust: float) -> float | tuple[float, float]:
    mix = tune.mix_weight * robust + (1.0 - tune.mix_weight) * clean
    return {"robust": robust, "clean": clean, "mix": mix}.get(tune.objective, (clean, robust))


def suggest(trial: Trial, tune: TuneParams) -> tuple[float, float]:
    k = trial.suggest_float("k", tune.k.low, tune.k.high, log=tune.k.log)
    return k, trial.suggest_float("n", tune.n.low, tune.n.high, log=tune.n.log)


class SurplusTrial(Exception):
    """Raised before training: lower-numbered trials already claim all n_trials."""


def optimize(study: Study, tune: TuneParams, trial_fn: Callable[[TrialContext], tuple[float, float]], *,
             quota: int, total: int) -> None:
    """Run up to ``quota`` trials here, stopping once the study holds ``total`` claimed ones (all workers)."""

    def objective(trial: Trial) -> float | tuple[float, float]:
        # Workers starting together each see room for one more trial; trials are numbered atomically,
        # so failing those numbered past ``total`` claimed ones keeps the study from overshooting.
        if sum(t.number < trial.number for t in study.get_trials(deepcopy=False, states=CLAIMED)) >= total:
            raise SurplusTrial(f"trial {trial.number}: {total} trials already claimed; not run")
        ctx = TrialContext(trial.number, *suggest(trial, tune), tune.objective != "pareto", trial)
        with nullcontext() if has_heartbeat(study) else keep_alive(trial):
            clean, robust = trial_fn(ctx)
        ctx.set_attrs(clean_acc=float(clean), robust_acc=float(robust))
        return objective_value(tune, clean, robust)

    # Optuna's stop after each trial, counting running ones: else a worker would go on asking and
    # leave one surplus FAIL record per ask once the other workers have claimed the rest.
    stop = MaxTrialsCallback(total, states=CLAIMED)
    with track(f"tune {study.study_name}", total, "trial", completed=finished_count(study)) as task:

        def shown(study: Study, trial: FrozenTrial) -> None:  # counts every worker's finished trials
            task.advance(finished_count(study) - task.completed, **best_so_far(study))

        study.optimize(objective, n_trials=max(quota, 0), callbacks=[shown, stop], catch=(SurplusTrial,))


def best_so_far(study: Study) -> dict[str, Any]:
    """Progress fields: the best value and its k, n (pareto: the size of the front); none before
    the first complete trial."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return {}
    if len(study.directions) > 1:
        return {"front": len(_front(eligible(study)))}
    best = _best(eligible(study))
    return {"best": best.value, "k": best.params["k"], "n": best.params["n"]}


def _best(trials: Sequence[FrozenTrial]) -> FrozenTrial:
    return max(trials, key=lambda t: (t.value, -t.number))  # ties: the earlier trial, as Optuna's best_trial


def pareto_pick(points: Sequence[tuple[float, float]], slack: float = PARETO_CLEAN_SLACK) -> int:
    """Index of the (clean, robust) point with the best robust accuracy among those within ``slack``
    of the best clean accuracy (ties: higher clean, then the earlier point)."""
    if not points:
        raise BatchoutError("tune: the Pareto front is empty; no trial completed")
    ok = [i for i, (c, _) in enumerate(points) if c >= max(c for c, _ in points) - slack - 1e-12]
    return max(ok, key=lambda i: (points[i][1], points[i][0], -i))


def _row(t: FrozenTrial) -> dict[str, Any]:
    return {"trial": t.number, "k": float(t.params["k"]), "n": float(t.params["n"]),
            **{key: float(t.user_attrs.get(key, float("nan"))) for key in ("clean_acc", "robust_acc")}}


def eligible(study: Study) -> list[FrozenTrial]:
    """The complete trials the pick may choose: those not ``masked`` (an upper bound is no score to pick by),
    or every complete trial when all of them are masked (best.yaml then says so)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return [t for t in complete if not t.user_attrs.get("masked")] or complete


def summarize(study: Study, tune: TuneParams) -> dict[str, Any]:
    """The content of ``tune/best.yaml``: best k, n, value, objective, trial counts (+ front). A masked
    trial is never picked while an unmasked one completed."""
    complete, pruned = (len(study.get_trials(deepcopy=False, states=(s,))) for s in FINISHED)
    if complete == 0:
        raise BatchoutError(f"tune: study {study.study_name!r} has no complete trial; rerun to continue it")
    trials = eligible(study)
    if tune.objective == "pareto":
        front = sorted(_front(trials), key=lambda t: t.number)
        best = front[pareto_pick([(t.values[0], t.values[1]) for t in front])]
        value, extra = best.values[1], {"front": [_row(t) for t in front]}  # the pick's robust accuracy
    else:
        best = _best(trials)
        value, extra = best.value, {}
    masked = {"masked": True} if best.user_attrs.get("masked") else {}
    return {**_row(best), "value": float(value), "objective": tune.objective, "study": study.study_name,
            "finished_trials": complete + pruned, "complete_trials": complete, "pruned_trials": pruned, **masked,
            **extra}


def _front(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The (clean, robust) Pareto front of ``trials``: none dominated by another (both maximised)."""
    def dominated(t: FrozenTrial) -> bool:
        return any(all(o >= v for o, v in zip(u.values, t.values, strict=True)) and u.values != t.values
                   for u in trials)
    return [t for t in trials if not dominated(t)]


def save_plots(study: Study, tune: TuneParams, out_dir: Path) -> list[Path]:
    """Write the study's plots as PNGs into ``out_dir`` (returned; a plot that cannot be drawn is skipped),
    and its trials as ``trials.csv`` (``batchout.tuning.trials``)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vm  # no plotly needed

    # Pareto studies: single-target plots show robust accuracy, negated for the importances since
    # Optuna 5's default evaluator (PED-ANOVA) assumes an explicit target is minimised.
    tgt = {"target": lambda t: t.values[1], "target_name": "robust accuracy"} if tune.objective == "pareto" else {}
    neg = {**tgt, "target": lambda t: -t.values[1]} if tgt else {}
    plots = {"optimization_history": lambda: vm.plot_optimization_history(study, **tgt),
             "slice_k_n": lambda: vm.plot_slice(study, params=["k", "n"], **tgt)}
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= 2:  # fewer: nothing to compare
        plots["contour_k_n"] = lambda: vm.plot_contour(study, params=["k", "n"], **tgt)
        plots["param_importances"] = lambda: vm.plot_param_importances(study, **neg)
    if tgt:
        plots["pareto_front"] = lambda: vm.plot_pareto_front(study, target_names=["clean accuracy", "robust accuracy"])
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, draw in plots.items():
        try:
            ax = draw()
        except (ValueError, RuntimeError, ArithmeticError) as err:  # e.g. importances of constant values
            log.warning("tune plot %s skipped: %s", stem, err)
            continue
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
        fig.set_size_inches(max(fig.get_figwidth(), 6.4), max(fig.get_figheight(), 4.8))
        fig.savefig(out_dir / f"{stem}.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(out_dir / f"{stem}.png")
    best = summarize(study, tune)["trial"] if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) else None
    write_trials(study, tune.objective, best, out_dir / "trials.csv")
    return written
