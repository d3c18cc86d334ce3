"""Figures as PNG files (matplotlib, headless), written atomically.

Usage: ``plot_training_curves(history, Path("curves.png"), title="mnist-lenet-standard-s0")``
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

from batchout.io import atomic_path  # noqa: E402


def save(fig: Any, path: Path) -> None:
    """Write ``fig`` as a PNG (110 dpi) and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_training_curves(history: list[dict[str, float]], path: Path, title: str) -> None:
    """Loss (left) and train/val accuracy (right) per epoch."""
    epochs = [h["epoch"] for h in history]
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax_l.plot(epochs, [h["train_loss"] for h in history], marker="o")
    ax_l.set(xlabel="epoch", ylabel="train loss", title=title)
    ax_a.plot(epochs, [h["train_acc_running"] for h in history], marker="o", label="train (running)")
    ax_a.plot(epochs, [h["val_acc"] for h in history], marker="s", label="validation")
    ax_a.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1))
    ax_a.legend()
    save(fig, path)


def plot_robustness(curves: dict[str, dict[str, list[float]]], path: Path, title: str) -> None:
    """Robust accuracy vs eps; ``curves[label] = {"eps": [...], "acc": [...], "std": [...]?, "lo": [...]?,
    "hi": [...]?}``: a shaded band from ``lo`` to ``hi`` where given, else error bars of ``std``."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for label, c in curves.items():
        if c.get("lo"):
            (line,) = ax.plot(c["eps"], c["acc"], marker="o", label=label)
            ax.fill_between(c["eps"], c["lo"], c["hi"], color=line.get_color(), alpha=0.2, linewidth=0)
        elif c.get("std"):
            ax.errorbar(c["eps"], c["acc"], yerr=c["std"], marker="o", capsize=3, label=label)
        else:
            ax.plot(c["eps"], c["acc"], marker="o", label=label)
    ax.set(xlabel="eps (L-inf, [0,1] pixels)", ylabel="accuracy", ylim=(0, 1), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, path)
