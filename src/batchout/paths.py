"""Where every stage reads and writes, relative to the repository root.

Usage: ``p = Paths(root); p.prepared("mnist") / "meta.json"``
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    root: Path = Path(".")

    def prepared(self, dataset: str) -> Path:
        return self.root / "data" / "prepared" / dataset

    def model_dir(self, run: str) -> Path:
        return self.root / "models" / run

    def checkpoint(self, run: str) -> Path:
        return self.root / "checkpoints" / run / "last.pt"

    def train_metrics(self, run: str) -> Path:
        return self.root / "metrics" / "train" / f"{run}.json"

    def train_curve(self, run: str) -> Path:
        return self.root / "plots" / "train" / f"{run}.csv"

    def attack_metrics(self, run: str) -> Path:
        return self.root / "metrics" / "attack" / f"{run}.json"

    def attack_curve(self, run: str) -> Path:
        return self.root / "plots" / "attack" / f"{run}.csv"

    @property
    def tune_dir(self) -> Path:
        return self.root / "tune"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def mlruns(self) -> Path:
        return self.root / "mlruns"
