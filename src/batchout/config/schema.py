"""The params.yaml schema: one pydantic model per section, ``extra="forbid"`` everywhere.

Usage: ``Params.model_validate(doc)`` (``batchout.config.load_params`` reads the file and words the errors)

Field types shared by the sections (pixel budgets, registry names) are in ``batchout.config.types``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from batchout.config.types import (
    MethodName,
    ModelName,
    PixelFloat,
    Strict,
    check_device,
    registered,
)
from batchout.errors import choice_msg
from batchout.paths import run_name, split_run


# ----------------------------------------------------------------------------- data
class Subset(Strict):
    """Examples kept per split after the validation split; null keeps all (seeded, stratified)."""

    train: int | None = Field(None, ge=1)
    val: int | None = Field(None, ge=1)
    test: int | None = Field(None, ge=1)


class DataParams(Strict):
    datasets: list[str] = Field(default_factory=lambda: list(registered("dataset")), min_length=1)
    raw_dir: str = "data/raw"
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    seed: int = 0
    subset: Subset = Subset()
    # Your own data sets: name -> folder holding train/<class>/* and test/<class>/* images.
    image_folders: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_datasets(self) -> DataParams:
        allowed = known_datasets(self)
        for i, name in enumerate(self.datasets):
            if name not in allowed:
                raise ValueError(choice_msg(f"datasets.{i}", name, allowed))
        return self


def known_datasets(data: DataParams) -> tuple[str, ...]:
    return registered("dataset") + tuple(data.image_folders)


# ----------------------------------------------------------------------------- train
class Optimizer(Strict):
    """SGD with momentum; lr is per batch of ``train.batch_size`` examples."""

    lr: float = Field(0.05, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    nesterov: bool = True


class Schedule(Strict):
    """LR schedule. Warm-up is linear from 0 over ``warmup_epochs``; milestones are fractions of
    the whole run (0.5 = halfway), so changing ``epochs`` never decays too early by accident."""

    name: Literal["multistep", "cosine", "onecycle", "constant"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0.0)
    milestones: list[Annotated[float, Field(gt=0.0, lt=1.0)]] = Field(default_factory=lambda: [0.5, 0.75])
    gamma: float = Field(0.1, gt=0.0, le=1.0)


class Augment(Strict):
    """On-device batch augmentation: random crop after zero padding (pixels) and horizontal flip."""

    crop_padding: int = Field(0, ge=0, le=16)
    flip: bool = False


NValue = Annotated[float, Field(ge=0.0, le=1.0)] | tuple[
    Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]
]


class BatchOutParams(Strict):
    """BatchOut strength. ``n`` is one number, a ``[low, high]`` range drawn uniformly per sample,
    or a map site -> number/range. ``layers`` null uses the model's default placement."""

    k: float = Field(0.5, ge=0.0, le=1.0)
    n: NValue | dict[str, NValue] = 0.1
    layers: list[str] | None = None
    from_tune: bool = False

    @model_validator(mode="after")
    def _ranges_ordered(self) -> BatchOutParams:
        items = self.n.items() if isinstance(self.n, dict) else [("n", self.n)]
        for key, v in items:
            if isinstance(v, tuple) and v[0] > v[1]:
                raise ValueError(f"n{'' if key == 'n' else '.' + key}: range low {v[0]} > high {v[1]}")
        return self


class Adversarial(Strict):
    """Adversarial training: ``fgsm`` is Goodfellow et al. 2015 (a ``fraction`` of each batch
    replaced by FGSM examples), ``pgd`` is Madry et al. 2018 (``steps`` of size ``step_size``)."""

    attack: Literal["fgsm", "pgd"] = "fgsm"
    eps: PixelFloat = 0.3
    fraction: float = Field(0.5, gt=0.0, le=1.0)
    steps: int = Field(7, ge=1)
    step_size: PixelFloat | None = None  # null: 2.5 * eps / steps


class RunSpec(Strict):
    """One arm of the study: a (data set, model, method) trained once per seed. Fields left null
    take the section-wide value. Each seed is a run named ``<arm>-s<seed>`` (``batchout.paths``)."""

    dataset: str
    model: ModelName
    method: MethodName
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    epochs: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0.0)
    augment: Augment | None = None
    batchout: BatchOutParams | None = None
    adv_eps: PixelFloat | None = None

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds) or min(seeds) < 0:
            raise ValueError(f"got {seeds}; allowed: distinct integers >= 0")
        return seeds


class TrainParams(Strict):
    device: str = "auto"
    deterministic: bool = False
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(1000, ge=1)
    optimizer: Optimizer = Optimizer()
    schedule: Schedule = Schedule()
    augment: Augment = Augment()
    batchout: BatchOutParams = BatchOutParams()
    adversarial: Adversarial = Adversarial()
    runs: dict[str, RunSpec] = Field(default_factory=dict)  # arm name -> arm; one DVC stage per arm
    # Arms whose BatchOut k and n come from the tune stage (tune/best.yaml): dvc.yaml makes only
    # these depend on it, so tuning never retrains the other models.
    tuned_runs: dict[str, RunSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _device(self) -> TrainParams:
        check_device(self.device, "device")
        for name in set(self.runs) & set(self.tuned_runs):
            raise ValueError(f"tuned_runs.{name}: the name is also in train.runs; names must be unique")
        for name in self.all_runs():
            if split_run(name) is not None:
                section = "tuned_runs" if name in self.tuned_runs else "runs"
                raise ValueError(f"{section}.{name}: an arm name must not end in -s<N> (each seed's run "
                                 f"is named <arm>-s<seed>); allowed: e.g. {split_run(name)[0]}")
        for name, spec in self.runs.items():
            if (spec.batchout or self.batchout).from_tune:
                raise ValueError(f"runs.{name}: batchout.from_tune needs the run under train.tuned_runs")
        for name, spec in self.tuned_runs.items():
            if spec.method not in ("batchout", "batchout_final"):
                raise ValueError(f"tuned_runs.{name}.method: {spec.method!r} has no k/n to tune; "
                                 "allowed: batchout, batchout_final")
        return self

    def all_runs(self) -> dict[str, RunSpec]:
        """Every arm (train.runs, then train.tuned_runs) by name."""
        return {**self.runs, **self.tuned_runs}

    def run_names(self, arm: str | None = None) -> list[str]:
        """Every seed's run name (``<arm>-s<seed>``), of one arm or of all, in params order."""
        arms = self.all_runs() if arm is None else {arm: self.all_runs()[arm]}
        return [run_name(a, seed) for a, spec in arms.items() for seed in spec.seeds]


# ----------------------------------------------------------------------------- attack
class Checks(Strict):
    """Sanity checks (Carlini et al. 2019, "On Evaluating Adversarial Robustness")."""

    subset: int = Field(100, ge=1)  # examples for the independent per-eps monotonicity check
    tolerance: float = Field(0.03, ge=0.0, le=1.0)  # accuracy slack (fraction) before a check fails
    large_eps_max_acc: float = Field(0.1, ge=0.0, le=1.0)  # accuracy allowed at the largest budget
    large_eps: dict[str, PixelFloat] = Field(default_factory=lambda: {"mnist": 0.5, "cifar10": 0.25, "cifar3": 0.25})
    # Square's budget in the black-box check when the grid has no square of its own (queries per
    # example; AutoAttack's 5000 where the profile can afford it).
    square_queries: int = Field(1000, ge=1)


class Cap(Strict):
    """The most an escalation round may spend per member (the standard AutoAttack budget by default):
    steps, targets and Square queries double up to these; then restarts double up to ``restarts``."""

    steps: int = Field(100, ge=1)
    n_targets: int = Field(9, ge=1)
    n_queries: int = Field(5000, ge=1)
    restarts: int = Field(4, ge=1)


class Escalation(Strict):
    """Attack until converged: re-attack the points still robust at double the budget while a round breaks
    more than ``tolerance`` test points (``batchout.evaluation.converge``)."""

    tolerance: int = Field(1, ge=0)  # test points a doubled round may still break and count as converged
    cap: Cap = Cap()


class Converge(Escalation):
    # the attack of attack.attacks that is escalated (default: the ensemble, when the grid has one); null:
    # none (every verdict is then an upper bound)
    attack: str | None = "autoattack"


class AttackParams(Strict):
    device: str = "auto"
    batch_size: int = Field(500, ge=1)
    subset: int | None = Field(500, ge=1)  # test examples attacked (seeded choice); null: all
    seed: int = 0
    eps: dict[str, list[PixelFloat]] = Field(default_factory=lambda: {"mnist": [0.1, 0.2, 0.3, 0.4, 0.5], **{
        ds: [v / 255 for v in (1, 2, 3, 4, 5, 8)] for ds in ("cifar10", "cifar3")}})
    # name (batchout.names.ATTACKS) -> constructor settings, checked by batchout.attacks.registry.check_settings
    attacks: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"fgsm": {}, "pgd": {}})
    checks: Checks = Checks()
    converge: Converge = Converge()

    @model_validator(mode="after")
    def _names(self) -> AttackParams:
        check_device(self.device, "device")
        for name in self.attacks:
            if name not in registered("attack"):
                raise ValueError(choice_msg(f"attacks.{name}", name, registered("attack")))
        # named in params.yaml, the escalated attack must be in the grid; left at its default, a grid without
        # an ensemble escalates nothing (its worst case then rests on no convergence check: upper bounds)
        named = "attack" in self.converge.model_fields_set
        if named and self.converge.attack is not None and self.converge.attack not in self.attacks:
            raise ValueError(choice_msg("converge.attack", self.converge.attack, (*self.attacks, "null")))
        if not named and self.converge.attack not in self.attacks:
            # resolved to null here, so that a dumped Params (a stage's params.yaml, MLflow) reads back the
            # same; the model is frozen, and this is its construction
            object.__setattr__(self, "converge", self.converge.model_copy(update={"attack": None}))
        return self


# ----------------------------------------------------------------------------- report
class ReportParams(Strict):
    title: str = "BatchOut robustness study"
    # Family-wise error rate of the report's comparisons (Holm over all of them): a difference is
    # called "higher"/"lower" only when its Holm-adjusted p is at most alpha.
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    # The eps the report's answer quotes, per data set; a data set left out gets the eps where the
    # baseline's worst-case accuracy is furthest from 0 and from its clean accuracy.
    headline_eps: dict[str, PixelFloat] = Field(default_factory=dict)


# ----------------------------------------------------------------------------- tune
class SearchRange(Strict):
    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> SearchRange:
        if self.low > self.high:
            raise ValueError(f"low {self.low} > high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0, got {self.low}")
        return self


class TuneParams(Strict):
    """Optuna search over BatchOut's k and n for one data set and model; the rest of the training
    settings (optimizer, schedule, batch size) come from the train section. ``pruner`` applies to
    single-objective studies only: Optuna cannot prune multi-objective ones, so ``pareto`` never prunes."""

    dataset: str = "mnist"
    model: ModelName = "lenet"
    method: Literal["batchout", "batchout_final"] = "batchout"
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    layers: list[str] | None = None  # null: the model's default placement
    seed: int = 0
    n_trials: int = Field(6, ge=1)
    epochs: int = Field(2, ge=1)
    k: SearchRange = SearchRange(low=0.1, high=1.0)
    n: SearchRange = SearchRange(low=0.01, high=0.5, log=True)
    objective: Literal["robust", "clean", "mix", "pareto"] = "robust"
    mix_weight: float = Field(0.5, ge=0.0, le=1.0)  # weight of robust accuracy in "mix"
    attack_eps: PixelFloat = 0.1
    # The objective's robust accuracy: this AutoAttack cascade (members' settings, or false to leave one
    # out), escalated on the validation points until a doubled round breaks at most converge.tolerance of
    # them. Gradient-free Square in it sees through masked gradients, which a PGD-only objective rewards.
    attack: dict[str, Any] = Field(default_factory=lambda: {
        "apgd_ce": {"steps": 5}, "apgd_t": False, "fab_t": False, "square": {"n_queries": 50}})
    converge: Escalation = Escalation(tolerance=2, cap=Cap(steps=40, n_queries=400, restarts=1))
    val_subset: int = Field(500, ge=1)
    train_subset: int | None = Field(None, ge=1)  # training images per trial (seeded choice); null: all
    pruner: Literal["median", "hyperband", "none"] = "median"
    sampler_seed: int = 0
    storage: str | None = None  # null: a local journal file under tune/
    study_name: str = "batchout-k-n"

    @model_validator(mode="after")
    def _bounds(self) -> TuneParams:
        if not (0.0 < self.k.low and self.k.high <= 1.0):
            raise ValueError(f"k: range must lie in (0, 1], got [{self.k.low}, {self.k.high}]")
        if not (0.0 <= self.n.low and self.n.high <= 1.0):
            raise ValueError(f"n: range must lie in [0, 1], got [{self.n.low}, {self.n.high}]")
        return self


# ----------------------------------------------------------------------------- whole file
class Params(Strict):
    data: DataParams = Field(default_factory=lambda: DataParams())
    train: TrainParams = Field(default_factory=lambda: TrainParams())
    attack: AttackParams = Field(default_factory=lambda: AttackParams())
    tune: TuneParams = Field(default_factory=lambda: TuneParams())
    report: ReportParams = Field(default_factory=lambda: ReportParams())

    @model_validator(mode="after")
    def _cross_refs(self) -> Params:
        allowed = known_datasets(self.data)
        for name, run in self.train.runs.items():
            if run.dataset not in allowed:
                raise ValueError(choice_msg(f"train.runs.{name}.dataset", run.dataset, allowed))
        for name, run in self.train.tuned_runs.items():
            if run.dataset not in allowed:
                raise ValueError(choice_msg(f"train.tuned_runs.{name}.dataset", run.dataset, allowed))
        if self.tune.dataset not in allowed:
            raise ValueError(choice_msg("tune.dataset", self.tune.dataset, allowed))
        return self
