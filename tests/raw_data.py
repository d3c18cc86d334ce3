"""Tiny raw data sets in their real on-disk formats (MNIST IDX, CIFAR python batches, image folders,
mirror SHA256SUMS), with traceable images, for the prepare and sources tests (their fixtures
``offline`` and ``mnist_raw`` are in conftest.py).

Usage: ``from raw_data import write_mnist, params`` (tests/ is on sys.path under pytest)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from conftest import write_mnist_idx
from PIL import Image

from batchout.config import DataParams
from batchout.data import formats

CIFAR = formats.CIFAR10_CLASSES


def params(**kw) -> DataParams:
    kw.setdefault("val_fraction", 0.2)
    return DataParams(**kw)


# ----------------------------------------------------------------------------- fixtures in real formats
def tagged_images(per_class: list[int], shape: tuple[int, ...], tag: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random images whose first pixels carry (index mod 256, index // 256, tag), so each is traceable."""
    y = np.repeat(np.arange(len(per_class)), per_class)
    x = np.random.default_rng(seed).integers(0, 256, size=(len(y), *shape), dtype=np.uint8)
    flat = x.reshape(len(y), -1)
    flat[:, 0], flat[:, 1], flat[:, 2] = np.arange(len(y)) % 256, np.arange(len(y)) // 256, tag
    return x, y


def image_ids(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(len(x), -1).astype(np.int64)
    return flat[:, 0] + 256 * flat[:, 1]


def write_mnist(folder: Path, train: list[int], test: list[int], gz: bool = False, tag: int = 0) -> None:
    """Traceable images, ``train``/``test`` of each class, as MNIST IDX files in ``folder``."""
    write_mnist_idx(folder, tagged_images(train, (28, 28), tag, seed=5), tagged_images(test, (28, 28), tag, seed=4), gz)


def write_cifar_python(folder: Path, per_class_train: int, per_class_test: int) -> None:
    x, y = tagged_images([per_class_train] * 10, (3, 32, 32), 0, seed=5)
    order = np.random.default_rng(5).permutation(len(y))  # the real batches mix classes
    for i, part in enumerate(np.array_split(order, 5)):
        formats.write_cifar_batch(folder / f"data_batch_{i + 1}", x[part], y[part])
    xt, yt = tagged_images([per_class_test] * 10, (3, 32, 32), 1, seed=6)
    formats.write_cifar_batch(folder / "test_batch", xt, yt)


def write_image_folder(root: Path, per_class: dict[str, tuple[int, int]], ext: str = ".jpg", size: int = 8) -> None:
    rng = np.random.default_rng(7)
    for cls, counts in per_class.items():
        for split, n in zip(("train", "test"), counts, strict=True):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(image).save(root / split / cls / f"{i}{ext}")


def sha256sums(root: Path, names: list[str]) -> None:
    lines = [f"{hashlib.sha256((root / n).read_bytes()).hexdigest()}  {n}" for n in names]
    (root / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def snapshot(root: Path) -> dict[str, str]:
    files = (p for p in root.rglob("*") if p.is_file())
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


MNIST_TRAIN, MNIST_TEST = [6, 5, 4, 5, 6, 7, 5, 4, 6, 2], [2] * 10  # imbalanced on purpose
