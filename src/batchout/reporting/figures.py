"""The report's figures beside the robustness curves (``plots``): clean / adversarial image pairs,
training curves and the tuning landscape, as PNG files (matplotlib, headless, written atomically).

Usage: ``plot_pairs([("lenet standard", pairs)], ["0", ..., "9"], Path("examples_mnist.png"), "mnist")``;
``plot_training({"lenet standard": [rows_s0, rows_s1]}, path, "mnist")``; ``plot_landscape(trials, path, "tune")``

Numbers in, files out: the report stage reads the files these draw from.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator

from batchout.reporting.plots import plt, save  # plots selects the headless backend before pyplot loads

WRONG, RIGHT, TRUTH = "#c62828", "black", "#666666"
PAIR_GAP = 0.25  # blank between two pairs, in image widths
PAIR_INCH, LABEL_INCH = 1.45, 0.5  # width of one pair; height of a row's labels above and below its images


@dataclass(frozen=True)
class Pairs:
    """One model's image pairs at one eps: images N x C x H x W (uint8, or float in [0, 1])."""

    x_clean: np.ndarray
    x_adv: np.ndarray
    y: np.ndarray
    pred_clean: np.ndarray
    pred_adv: np.ndarray


def _rgb(x: np.ndarray) -> np.ndarray:
    """N x C x H x W pixels -> N x H x W x 3 floats in [0, 1] (grey images repeated to three channels)."""
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    x = np.repeat(x, 3, axis=1) if x.shape[1] == 1 else x[:, :3]
    return np.clip(x.transpose(0, 2, 3, 1), 0.0, 1.0)


def _name(classes: Sequence[str], label: int) -> str:
    return classes[label] if 0 <= label < len(classes) else str(label)


def _pair_row(ax: plt.Axes, p: Pairs, classes: Sequence[str], label: str) -> None:
    """One model: N pairs side by side in one image, each tile titled with its prediction (red when
    wrong), the true class under each pair."""
    clean, adv = _rgb(p.x_clean), _rgb(p.x_adv)
    h, w = clean.shape[1:3]
    step = 2 * w + round(PAIR_GAP * w)
    strip = np.ones((h, step * len(clean) - round(PAIR_GAP * w), 3), np.float32)
    for i in range(len(clean)):
        strip[:, i * step:i * step + w], strip[:, i * step + w:i * step + 2 * w] = clean[i], adv[i]
        for j, pred in enumerate((p.pred_clean[i], p.pred_adv[i])):
            ax.text(i * step + (j + 0.5) * w, -0.5, _name(classes, int(pred)), ha="center", va="bottom",
                    fontsize=6.5, color=WRONG if pred != p.y[i] else RIGHT)
        ax.text(i * step + w, h, f"true {_name(classes, int(p.y[i]))}", ha="center", va="top", fontsize=6,
                color=TRUTH)
    ax.imshow(strip, interpolation="nearest")
    ax.set_axis_off()
    ax.text(-w * 0.15, h / 2, label, ha="right", va="center", fontsize=8)


def plot_pairs(rows: Sequence[tuple[str, Pairs]], classes: Sequence[str], path: Path, title: str) -> None:
    """One row per model (``rows``: (label, pairs)): clean | adversarial image pairs."""
    n = max(len(p.y) for _, p in rows)
    h, w = rows[0][1].x_clean.shape[2:4]
    image_h = PAIR_INCH / (2 + PAIR_GAP) * h / w  # inches, at the pair width
    fig, axes = plt.subplots(len(rows), 1, figsize=(PAIR_INCH * n + 1.8, (image_h + LABEL_INCH) * len(rows) + 0.4),
                             squeeze=False)
    for ax, (label, pairs) in zip(axes[:, 0], rows, strict=True):
        _pair_row(ax, pairs, classes, label)
    fig.suptitle(title, fontsize=10)
    save(fig, path)


def plot_training(curves: dict[str, list[list[dict[str, float]]]], path: Path, title: str) -> None:
    """Validation accuracy (left) and train loss (right) vs epoch: per group (key), a thin line per
    seed's run and a thick one for the mean over seeds (up to the shortest run)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for i, (label, runs) in enumerate(curves.items()):
        color = f"C{i % 10}"
        n = min(len(rows) for rows in runs)
        for ax, key in zip(axes, ("val_acc", "train_loss"), strict=True):
            for rows in runs:
                ax.plot([r["epoch"] for r in rows], [r[key] for r in rows], color=color, lw=0.7, alpha=0.45)
            mean = [statistics.fmean(rows[j][key] for rows in runs) for j in range(n)]
            ax.plot([r["epoch"] for r in runs[0][:n]], mean, color=color, lw=2, marker="o", ms=3, label=label)
    axes[0].set(xlabel="epoch", ylabel="validation accuracy", title=f"{title}: validation accuracy")
    axes[1].set(xlabel="epoch", ylabel="train loss", title=f"{title}: train loss")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
    axes[0].legend(fontsize=8)
    save(fig, path)


def plot_landscape(trials: Sequence[dict[str, float | str]], path: Path, title: str, value_name: str,
                   log: tuple[bool, bool] = (False, False)) -> None:
    """k vs n of every trial: complete ones colored by ``value`` (``value_name``), pruned ones as grey
    crosses, the best one ringed; ``log``: log scale on (k, n)."""
    fig, ax = plt.subplots(figsize=(5.8, 4.2))
    done = [t for t in trials if t["state"] == "complete"]
    pruned = [t for t in trials if t["state"] != "complete"]
    if pruned:
        ax.scatter([t["k"] for t in pruned], [t["n"] for t in pruned], marker="x", color="grey", label="pruned")
    dots = ax.scatter([t["k"] for t in done], [t["n"] for t in done], c=[t["value"] for t in done], cmap="viridis",
                      s=45, edgecolors="black", linewidths=0.4, label="complete")
    fig.colorbar(dots, ax=ax, label=value_name)
    best = [t for t in trials if t["best"]]
    ax.scatter([t["k"] for t in best], [t["n"] for t in best], s=260, facecolors="none", edgecolors=WRONG,
               linewidths=1.8, label="best")
    ax.set(xlabel="k (fraction of the batch perturbed)", ylabel="n (step toward the partner sample)",
           xscale="log" if log[0] else "linear", yscale="log" if log[1] else "linear", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, path)
