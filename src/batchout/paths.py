"""Where every stage reads and writes, relative to the repository root.

Usage: ``p = Paths(root); p.prepared("mnist") / "meta.json"``; ``sqlite_db("sqlite:////abs/mlflow.db")``

Also the names that several modules (and ``batchout doctor``) must agree on: the data mirror's
environment variable, the default Optuna journal, and how a SQLite store URI maps to files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MIRROR_ENV = "BATCHOUT_DATA_MIRROR"  # an offline folder of raw data sets (with SHA256SUMS)
SQLITE_PREFIX = "sqlite:///"
_RUN = re.compile(r"^(?P<arm>.+)-s(?P<seed>\d+)$")


def run_name(arm: str, seed: int) -> str:
    """One seed's run of an arm (``train.runs.<arm>``): ``mnist-lenet-standard`` -> ``mnist-lenet-standard-s0``."""
    return f"{arm}-s{seed}"


def split_run(name: str) -> tuple[str, int] | None:
    """``(arm, seed)`` of a run name, or None when ``name`` has no ``-s<seed>`` suffix (an arm)."""
    m = _RUN.match(name)
    return (m["arm"], int(m["seed"])) if m else None


def arm_of(run: str) -> str:
    """The arm a run belongs to (``mnist-lenet-standard-s0`` -> ``mnist-lenet-standard``); an arm name is its own."""
    parts = split_run(run)
    return parts[0] if parts else run


def sqlite_db(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (query string dropped); None for any other URI."""
    if not uri.startswith(SQLITE_PREFIX):
        return None
    return Path(uri[len(SQLITE_PREFIX):].split("?", 1)[0])


def artifacts_beside(uri: str) -> str | None:
    """``file://`` URI of the ``artifacts`` folder beside a SQLite store; None for a server (it decides)."""
    db = sqlite_db(uri)
    return (db.parent / "artifacts").resolve().as_uri() if db is not None else None


@dataclass(frozen=True)
class Paths:
    root: Path = Path(".")

    @property
    def params_valid(self) -> Path:
        """The validate stage's marker: params.yaml passed the schema check (every stage depends on it)."""
        return self.root / "data" / "params.valid"

    @property
    def attacks_valid(self) -> Path:
        """The validate_attacks stage's marker: every attack's settings build (the attack stages depend on it)."""
        return self.root / "data" / "attacks.valid"

    # Per-run files sit in one folder per arm: the arm's DVC stage declares that folder as its output.
    def prepared(self, dataset: str) -> Path:
        return self.root / "data" / "prepared" / dataset

    def model_dir(self, run: str) -> Path:
        return self.root / "models" / arm_of(run) / run

    def checkpoint(self, run: str) -> Path:
        return self.root / "checkpoints" / run / "last.pt"

    def train_metrics(self, run: str) -> Path:
        return self.root / "results" / "train" / arm_of(run) / f"{run}.json"

    def train_curve(self, run: str) -> Path:
        return self.root / "plots" / "train" / arm_of(run) / f"{run}.csv"

    def attack_metrics(self, run: str) -> Path:
        return self.root / "results" / "attack" / arm_of(run) / f"{run}.json"

    def run_metrics(self, run: str) -> Path:
        """The run's few headline numbers (DVC metrics, tracked in git), written by the report stage."""
        return self.metrics / f"{run}.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    def attack_curve(self, run: str) -> Path:
        return self.root / "plots" / "attack" / arm_of(run) / f"{run}.csv"

    def adv_examples(self, run: str) -> Path:
        """The attack stage's few clean / adversarial image pairs for the report's picture grid."""
        return self.root / "examples" / arm_of(run) / f"{run}.npz"

    @property
    def tune_dir(self) -> Path:
        return self.root / "tune"

    @property
    def tune_best(self) -> Path:
        return self.tune_dir / "best.yaml"

    @property
    def tune_journal(self) -> Path:
        """The default Optuna storage (``tune.storage: null``): a journal file."""
        return self.tune_dir / "optuna.journal"

    @property
    def tune_trials(self) -> Path:
        """Every finished trial's k, n and objective value, for the report's tuning landscape."""
        return self.tune_dir / "plots" / "trials.csv"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def mlruns(self) -> Path:
        return self.root / "mlruns"

    @property
    def mlflow_db(self) -> Path:
        """The default MLflow store (no ``MLFLOW_TRACKING_URI``); artifacts go beside it."""
        return self.mlruns / "mlflow.db"
