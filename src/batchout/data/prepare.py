"""Raw train/test -> seeded stratified train/val/test splits, and the prepared folder that holds them
(.npy files plus meta.json).

Usage: ``splits = make_splits(load_raw(data, "mnist", root), data)``;
``write_prepared(Paths().prepared("mnist"), splits, describe("mnist", raw, splits, data, root))``

The validation split is carved from train first (``data.val_fraction``), then ``data.subset``
keeps a stratified subset of each split, so changing a subset size never moves examples between
train and val. Every choice uses its own seeded stream: same params -> byte-identical files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from batchout.config import DataParams
from batchout.data.loader import META_FORMAT, SPLITS, write_meta
from batchout.data.sources import RawData, Split
from batchout.data.transfer import usual_mode
from batchout.errors import BatchoutError
from batchout.io import atomic_dir, sha256_file

# Independent random streams per choice, so that one choice never shifts another.
_STREAM = {"val": 0, "subset.train": 1, "subset.val": 2, "subset.test": 3}


def allocate(class_counts: np.ndarray, m: int) -> np.ndarray:
    """Split ``m`` picks over classes in proportion to ``class_counts`` (largest remainder, ties to the
    lower class index): each class gets its exact share rounded down or up, and the total is ``m``."""
    counts = np.asarray(class_counts, dtype=np.int64)
    exact = counts * (m / counts.sum())
    base = np.minimum(np.floor(exact).astype(np.int64), counts)
    order = np.argsort(-(exact - base), kind="stable")
    base[order[: m - int(base.sum())]] += 1
    return base


def stratified_pick(y: np.ndarray, m: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``m`` examples of ``y`` drawn per class in proportion, in a seeded random order."""
    per_class = allocate(np.bincount(y, minlength=num_classes), m)
    picked = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in enumerate(per_class)]
    return rng.permutation(np.concatenate(picked).astype(np.int64))


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAM[stream]])


def split_train_val(y: np.ndarray, num_classes: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified (train indices, val indices) of the source train split."""
    n_val = int(np.floor(len(y) * val_fraction + 0.5))
    if not 0 < n_val < len(y):
        raise BatchoutError(
            f"data.val_fraction: {val_fraction} of {len(y)} train examples gives {n_val} validation "
            f"examples; need at least 1 in each of train and val"
        )
    val = stratified_pick(y, n_val, num_classes, _rng(seed, "val"))
    rest = np.setdiff1d(np.arange(len(y)), val)  # sorted; shuffled below with the train subset stream
    return rest, val


def _subset(xy: Split, size: int | None, num_classes: int, seed: int, split: str) -> Split:
    """Keep ``size`` examples (null or more than there are: all), stratified, in a seeded order."""
    x, y = xy
    m = len(y) if size is None else min(size, len(y))
    idx = stratified_pick(y, m, num_classes, _rng(seed, f"subset.{split}"))
    return np.ascontiguousarray(x[idx]), np.ascontiguousarray(y[idx])


def _same_channels(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grayscale next to colour (user folders): repeat the gray channel, as PIL's L -> RGB does."""
    if a.shape[1] == 1 and b.shape[1] == 3:
        a = np.repeat(a, 3, axis=1)
    elif b.shape[1] == 1 and a.shape[1] == 3:
        b = np.repeat(b, 3, axis=1)
    return a, b


def make_splits(raw: RawData, data: DataParams) -> dict[str, Split]:
    """train/val/test from the raw train/test splits, per ``data.val_fraction``, ``seed`` and ``subset``."""
    (x_tr, y_tr), (x_te, y_te) = raw.train, raw.test
    if len(y_tr) == 0 or len(y_te) == 0:
        raise BatchoutError(f"{raw.where}: {len(y_tr)} train and {len(y_te)} test images; both must be non-empty")
    x_tr, x_te = _same_channels(x_tr, x_te)
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise BatchoutError(f"{raw.where}: train images are {x_tr.shape[1:]} but test images {x_te.shape[1:]}")
    k = len(raw.classes)
    train_idx, val_idx = split_train_val(y_tr, k, data.val_fraction, data.seed)
    full = {"train": (x_tr[train_idx], y_tr[train_idx]), "val": (x_tr[val_idx], y_tr[val_idx]), "test": (x_te, y_te)}
    sizes = {"train": data.subset.train, "val": data.subset.val, "test": data.subset.test}
    return {s: _subset(full[s], sizes[s], k, data.seed, s) for s in SPLITS}


def channel_stats(x: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) std of uint8 N x C x H x W images, in [0, 1] units.

    Exact: integer sums over a 256-bin histogram, so no float32 drift and no float copy of the data."""
    values = np.arange(256, dtype=np.int64)
    means, stds = [], []
    for c in range(x.shape[1]):
        hist = np.bincount(x[:, c].ravel(), minlength=256).astype(np.int64)
        n = int(hist.sum())
        mean = float((hist * values).sum()) / n
        var = float((hist * values * values).sum()) / n - mean * mean
        means.append(mean / 255.0)
        stds.append(float(np.sqrt(max(var, 0.0))) / 255.0)
    return means, stds


def _where(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:  # outside the repository: keep the absolute path
        return path.resolve().as_posix()


def describe(name: str, raw: RawData, splits: dict[str, Split], data: DataParams, root: Path) -> dict[str, Any]:
    """meta.json without the checksums (added once the files are written)."""
    k = len(raw.classes)
    mean, std = channel_stats(splits["train"][0])
    return {
        "format": META_FORMAT,
        "name": name,
        "classes": list(raw.classes),
        "num_classes": k,
        "shape": list(splits["train"][0].shape[1:]),
        "counts": {s: len(splits[s][1]) for s in SPLITS},
        "class_counts": {s: np.bincount(splits[s][1], minlength=k).tolist() for s in SPLITS},
        "source_counts": {"train": len(raw.train[1]), "test": len(raw.test[1])},
        "source": {"kind": raw.kind, "where": _where(raw.where, root)},
        "split": {"val_fraction": data.val_fraction, "seed": data.seed, "subset": data.subset.model_dump()},
        "mean": mean,
        "std": std,
    }


def write_prepared(out: Path, splits: dict[str, Split], meta: dict[str, Any]) -> dict[str, Any]:
    """Write the six .npy files and meta.json (with their sha256) as one atomic folder."""
    meta = dict(meta, sha256={})
    with atomic_dir(out) as tmp:
        usual_mode(tmp)
        for split in SPLITS:
            x, y = splits[split]
            for stem, array in (("x", x.astype(np.uint8, copy=False)), ("y", y.astype(np.int64, copy=False))):
                fname = f"{stem}_{split}.npy"
                np.save(tmp / fname, np.ascontiguousarray(array), allow_pickle=False)
                meta["sha256"][fname] = sha256_file(tmp / fname)
        # a plain write: the folder swap is what makes the whole output atomic
        write_meta(tmp, meta)
    return meta
