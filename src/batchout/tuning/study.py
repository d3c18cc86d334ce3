"""Optuna plumbing for the search over BatchOut's k and n: the only module that imports optuna.

Usage: ``study = open_study(name, storage_spec(None, Path("tune/optuna.journal")), params.tune)``;
``optimize(study, params.tune, trial_fn, quota=6, total=6)``; ``summarize(study, params.tune)``

``trial_fn(ctx: TrialContext) -> (clean_acc, robust_acc)`` trains one configuration; it calls
``ctx.report(epoch, value)`` after every epoch, which raises :data:`TrialPruned` when the pruner
stops the trial. Callers never touch optuna objects.

Storage. By default a journal file (``JournalStorage(JournalFileBackend(path))``): it appends
records under a file lock, so several local worker processes can share it safely. SQLite would
serialise every writer and fail with "database is locked" under concurrent workers, so it is
not the default. Any SQLAlchemy URL (``postgresql://user:password@host:5432/optuna``) opens an
``RDBStorage`` with heartbeats, for workers on many machines.

Dead workers. ``RDBStorage`` records a heartbeat every ``HEARTBEAT_INTERVAL_S`` and Optuna fails a
trial whose heartbeat is older than ``GRACE_PERIOD_S``, re-queueing it (same k, n) up to
``MAX_RETRY`` times. The journal storage has no heartbeat support in Optuna 5, so this module
writes its own (a user attribute refreshed by a thread while the trial runs) and
:func:`fail_stale_trials`, called when a study is (re)opened, fails and re-queues RUNNING trials
whose last heartbeat is older than the grace period. Every trial also records its worker
(``host~pid~start``) the moment it is created, so a trial whose worker on this host is gone
(SIGKILL, OOM killer, power cut of a local run) is failed and re-queued at once, without waiting.
The journal file is locked with ``flock``, which the kernel drops when its holder dies (Optuna's
default symlink lock would stall the next run for 30 s), and a last line cut short by a dying
writer is trimmed when the journal is reopened.

Determinism. The sampler is reseeded before every trial with ``sampler_seed + 1000 * worker +
finished trials``, and failed trials are invisible to TPE and to the pruners, so with one worker
the k, n proposed for the i-th finished trial depend only on the i trials finished before it:
a search killed any number of times and rerun ends with the same trials, values and best result
as an uninterrupted one (trial numbers differ: a retried trial gets a new number). A trial that
fails by itself (an exception) is proposed again on rerun for the same reason; change the
search space or the seed to move on. HyperbandPruner assigns brackets by trial number, so it is
exact only without retries.

Pruning. Single-objective studies report one value per epoch and prune with MedianPruner (default),
HyperbandPruner, or none. Multi-objective ("pareto") studies cannot be pruned: Optuna's
``Trial.report`` raises NotImplementedError for them, so reports are skipped there.

Many machines (one study, workers everywhere; recipe in docs/recipes.md):
  1. Create a PostgreSQL database reachable from every machine; install its driver
     (``pip install "psycopg[binary]"``) on each.
  2. Give every machine the same code, params.yaml and prepared data (``dvc pull``), and the same
     MLflow server: ``export MLFLOW_TRACKING_URI=http://mlflow-host:5000``.
  3. On each machine run ``python -m pipeline.tune --storage postgresql+psycopg://user:pw@db-host/optuna
     --n-workers N`` (or set ``tune.storage``). Finished and running trials both count toward
     ``tune.n_trials``, and a trial numbered past that count fails unrun (user attr ``surplus``), so
     the study ends with exactly n_trials finished trials however many workers start together. A
     later-numbered trial that starts while an earlier one runs gets a different sampler seed, so
     simultaneous workers never propose the same k, n. A machine that starts after the end only
     rewrites ``tune/best.yaml`` and the plots. Rerunning anywhere resumes the same study.
"""

from __future__ import annotations

import logging
import multiprocessing
import warnings
from collections.abc import Callable, Sequence
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
from batchout.io import process_token
from batchout.tuning.storage import WORKER_KEY, has_heartbeat, keep_alive, open_storage

# Heartbeats, retries and multi-worker sampling are "experimental" in Optuna; we use them on purpose.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

log = logging.getLogger(__name__)

TrialPruned = optuna.TrialPruned
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
PARETO_CLEAN_SLACK = 0.02  # pareto pick: within 2 accuracy points of the best clean accuracy
SURPLUS_KEY = "surplus"  # user attr of a trial failed unrun: the study already had n_trials claimed
RUNNING_STRIDE = 100_003  # seed step per earlier RUNNING trial; above any finished-trial count
TrialFn = Callable[["TrialContext"], tuple[float, float]]


# ---------------------------------------------------------------- sampler, pruner, study
def startup_trials(n_trials: int) -> int:
    """Random trials before TPE/the pruner kick in: a third of the budget, 1 to 5 of them (Optuna's
    defaults of 10 and 5 would leave a 6-trial study purely random and unpruned)."""
    return max(1, min(5, n_trials // 3))


def make_tpe(tune: TuneParams, seed: int) -> TPESampler:
    """``constant_liar`` keeps parallel workers from proposing the point another worker is running."""
    return TPESampler(seed=seed, n_startup_trials=startup_trials(tune.n_trials), multivariate=True,
                      constant_liar=True)


class TrialSeededSampler(BaseSampler):
    """TPE reseeded before each trial with ``base + finished trials`` (see Determinism above);
    it also stamps the new trial with its worker, before any training starts."""

    def __init__(self, tune: TuneParams, base_seed: int) -> None:
        self._tune = tune
        self.base_seed = base_seed
        self._tpe = make_tpe(tune, base_seed)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        # Called by study.ask() right after the trial is stored as RUNNING: the earliest moment to
        # record who runs it. The storage API is public; Study only keeps it in a private slot.
        study._storage.set_trial_user_attr(trial._trial_id, WORKER_KEY, process_token())
        # Two machines asking at the same moment see the same finished count; the later-numbered
        # trial also sees the earlier one RUNNING, so its seed (hence its random k, n) differs.
        seed = self.base_seed + finished_count(study) + RUNNING_STRIDE * _running_before(study, trial.number)
        self._tpe = make_tpe(self._tune, seed)
        self._tpe.before_trial(study, trial)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, Any]:
        return self._tpe.infer_relative_search_space(study, trial)

    def sample_relative(self, study: Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        return self._tpe.sample_relative(study, trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: Any) -> Any:
        return self._tpe.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        self._tpe.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:  # Optuna calls this in forked workers; our seeds are set per trial
        pass


def make_sampler(tune: TuneParams, worker: int = 0) -> TrialSeededSampler:
    """Seeded TPE; each worker gets its own seed (``sampler_seed + 1000 * worker``): equal seeds
    would make parallel workers propose the same points."""
    return TrialSeededSampler(tune, tune.sampler_seed + 1000 * worker)


def make_pruner(tune: TuneParams) -> BasePruner:
    if tune.objective == "pareto" or tune.pruner == "none":  # multi-objective studies cannot prune
        return NopPruner()
    if tune.pruner == "hyperband":
        return HyperbandPruner(min_resource=1, max_resource=tune.epochs, reduction_factor=3)
    return MedianPruner(n_startup_trials=startup_trials(tune.n_trials), n_warmup_steps=0)


def directions(tune: TuneParams) -> list[str]:
    """``pareto`` maximises (clean, robust) accuracy; every other objective is one maximised number."""
    return ["maximize", "maximize"] if tune.objective == "pareto" else ["maximize"]


def open_study(name: str, spec: str, tune: TuneParams, *, worker: int = 0,
               pruner: BasePruner | None = None) -> Study:
    """Create the study, or load it with every trial kept when it exists (resume)."""
    study = optuna.create_study(storage=open_storage(spec), study_name=name, load_if_exists=True,
                                directions=directions(tune), pruner=pruner or make_pruner(tune),
                                sampler=make_sampler(tune))
    wanted = [d.upper() for d in directions(tune)]
    if [d.name for d in study.directions] != wanted:
        raise BatchoutError(f"tune.study_name: study {name!r} in this storage optimises "
                            f"{len(study.directions)} objective(s), tune.objective {tune.objective!r} needs "
                            f"{len(wanted)}; choose another study_name")
    study.sampler = make_sampler(tune, worker)
    return study


def finished_count(study: Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def split_quota(remaining: int, n_workers: int) -> list[int]:
    """Trials per worker, summing to ``remaining`` exactly, so N workers never overshoot."""
    base, extra = divmod(max(remaining, 0), n_workers)
    return [base + (i < extra) for i in range(n_workers)]


# ---------------------------------------------------------------- objective
@dataclass
class TrialContext:
    """What one trial's training sees: its number, k and n, and a per-epoch report hook."""

    number: int
    k: float
    n: float
    single_objective: bool
    _trial: Trial = field(repr=False)

    def report(self, epoch: int, value: float, *, can_prune: bool = True) -> None:
        """Record the epoch's value; raise :data:`TrialPruned` when the pruner stops the trial.
        Skipped for pareto studies (Optuna cannot prune multi-objective studies). Pass
        ``can_prune=False`` after the last epoch: a finished trial is worth keeping as COMPLETE."""
        if not self.single_objective:
            return
        self._trial.report(float(value), epoch)
        if can_prune and self._trial.should_prune():
            raise TrialPruned(f"trial {self.number} pruned after epoch {epoch} (value {value:.4f})")

    def set_attrs(self, **attrs: Any) -> None:
        for key, value in attrs.items():
            self._trial.set_user_attr(key, value)


def objective_value(tune: TuneParams, clean: float, robust: float) -> float | tuple[float, float]:
    if tune.objective == "robust":
        return robust
    if tune.objective == "clean":
        return clean
    if tune.objective == "mix":
        return tune.mix_weight * robust + (1.0 - tune.mix_weight) * clean
    return clean, robust


def suggest(trial: Trial, tune: TuneParams) -> tuple[float, float]:
    k = trial.suggest_float("k", tune.k.low, tune.k.high, log=tune.k.log)
    n = trial.suggest_float("n", tune.n.low, tune.n.high, log=tune.n.log)
    return k, n


class SurplusTrial(Exception):
    """Raised before training: lower-numbered trials already claim all n_trials."""


def _running_before(study: Study, number: int) -> int:
    return sum(t.number < number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def _claimed_before(study: Study, number: int) -> int:
    """Trials numbered below ``number`` that count toward n_trials: finished or running (numbers are
    assigned atomically by the storage, so two workers never both see room for the last slot)."""
    return sum(t.number < number for t in study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING)))


def make_objective(tune: TuneParams, trial_fn: TrialFn, heartbeat: bool, total: int) -> Callable[[Trial], Any]:
    def objective(trial: Trial) -> float | tuple[float, float]:
        if _claimed_before(trial.study, trial.number) >= total:
            trial.set_user_attr(SURPLUS_KEY, True)
            trial.study.stop()
            raise SurplusTrial(f"trial {trial.number}: {total} trials already claimed; not run")
        k, n = suggest(trial, tune)
        ctx = TrialContext(trial.number, k, n, tune.objective != "pareto", trial)
        with keep_alive(trial, heartbeat):
            clean, robust = trial_fn(ctx)
        ctx.set_attrs(clean_acc=float(clean), robust_acc=float(robust))
        return objective_value(tune, clean, robust)

    return objective


def optimize(study: Study, tune: TuneParams, trial_fn: TrialFn, *, quota: int, total: int) -> None:
    """Run up to ``quota`` trials here, stopping early once the study holds ``total`` finished ones
    (other workers count too)."""
    if quota <= 0:
        return
    # Running trials count too, so workers on other machines never start more than ``total``.
    stop_at_total = MaxTrialsCallback(total, states=(*FINISHED, TrialState.RUNNING))
    objective = make_objective(tune, trial_fn, heartbeat=not has_heartbeat(study), total=total)
    study.optimize(objective, n_trials=quota, callbacks=[stop_at_total], catch=(SurplusTrial,))


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


# ---------------------------------------------------------------- results
def pareto_pick(points: Sequence[tuple[float, float]], slack: float = PARETO_CLEAN_SLACK) -> int:
    """Index of the (clean, robust) point with the best robust accuracy among those within ``slack``
    of the best clean accuracy (ties: higher clean, then the earlier point)."""
    if not points:
        raise BatchoutError("tune: the Pareto front is empty; no trial completed")
    best_clean = max(c for c, _ in points)
    ok = [i for i, (c, _) in enumerate(points) if c >= best_clean - slack - 1e-12]
    return max(ok, key=lambda i: (points[i][1], points[i][0], -i))


def _row(t: FrozenTrial) -> dict[str, Any]:
    return {"trial": t.number, "k": float(t.params["k"]), "n": float(t.params["n"]),
            "clean_acc": float(t.user_attrs.get("clean_acc", float("nan"))),
            "robust_acc": float(t.user_attrs.get("robust_acc", float("nan")))}


def summarize(study: Study, tune: TuneParams) -> dict[str, Any]:
    """The content of ``tune/best.yaml``: best k, n, value, objective, trial counts (+ front)."""
    trials = study.get_trials(deepcopy=False)
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in FINISHED}
    if counts["complete"] == 0:
        raise BatchoutError(f"tune: study {study.study_name!r} has no complete trial; rerun to continue it")
    front: list[dict[str, Any]] = []
    if tune.objective == "pareto":
        front_trials = sorted(study.best_trials, key=lambda t: t.number)
        best = front_trials[pareto_pick([(t.values[0], t.values[1]) for t in front_trials])]
        value = float(best.values[1])  # the pick's robust accuracy
        front = [_row(t) for t in front_trials]
    else:
        best = study.best_trial
        value = float(best.value)
    out = {**_row(best), "value": value, "objective": tune.objective, "study": study.study_name,
           "finished_trials": counts["complete"] + counts["pruned"], "complete_trials": counts["complete"],
           "pruned_trials": counts["pruned"]}
    if front:
        out["front"] = front
    return out


# ---------------------------------------------------------------- plots
def _plots(study: Study, tune: TuneParams) -> dict[str, Callable[[], Any]]:
    """File stem -> a call drawing it with optuna.visualization.matplotlib (plotly is not needed)."""
    import optuna.visualization.matplotlib as vm

    multi = tune.objective == "pareto"
    # Pareto studies have two values; the single-target plots show the robust accuracy.
    tgt: dict[str, Any] = {"target": (lambda t: t.values[1]), "target_name": "robust accuracy"} if multi else {}
    plots: dict[str, Callable[[], Any]] = {
        "optimization_history": lambda: vm.plot_optimization_history(study, **tgt),
        "slice_k_n": lambda: vm.plot_slice(study, params=["k", "n"], **tgt),
    }
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= 2:  # fewer: nothing to compare
        plots["contour_k_n"] = lambda: vm.plot_contour(study, params=["k", "n"], **tgt)
        # Optuna 5's default importance evaluator (PED-ANOVA) assumes an explicit target is minimised.
        neg = {"target": (lambda t: -t.values[1]), "target_name": "robust accuracy"} if multi else {}
        plots["param_importances"] = lambda: vm.plot_param_importances(study, **neg)
    if multi:
        plots["pareto_front"] = lambda: vm.plot_pareto_front(
            study, target_names=["clean accuracy", "robust accuracy"])
    return plots


def save_plots(study: Study, tune: TuneParams, out_dir: Path) -> list[Path]:
    """Write the study's plots as PNGs into ``out_dir``; a plot that cannot be drawn is skipped."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, draw in _plots(study, tune).items():
        try:
            ax = draw()
        except (ValueError, RuntimeError, ArithmeticError) as err:  # e.g. importances of constant values
            log.warning("tune plot %s skipped: %s", stem, err)
            continue
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
        fig.set_size_inches(max(fig.get_figwidth(), 6.4), max(fig.get_figheight(), 4.8))
        path = out_dir / f"{stem}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written
