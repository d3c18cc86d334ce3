"""Where raw data comes from: a registry of data sets and the lookup raw_dir -> mirror -> download.

Usage: ``raw = load_raw(params.data, "cifar3", Path("."))``; add a data set with one ``REGISTRY`` entry.

Lookup order: (1) ``data.raw_dir`` in torchvision's own layouts; (2) the read-only folder named by
``BATCHOUT_DATA_MIRROR`` (same layouts, or archives), copied or extracted into raw_dir after a
check against its ``SHA256SUMS``; (3) torchvision's official download into raw_dir. Within each
place a data set's layouts are tried in order (for CIFAR: the exact python batches first).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from batchout.config import DataParams, known_datasets
from batchout.data import formats
from batchout.data.transfer import copy_files, copy_folder, extract
from batchout.errors import BatchoutError
from batchout.io import atomic_dir
from batchout.names import DATASETS, check_listed
from batchout.paths import MIRROR_ENV

Split = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Layout:
    """One on-disk layout of a data set: how to recognise it, where it sits, how to read it."""

    kind: str  # recorded in meta.json as source.kind
    folder: str  # its place under raw_dir (torchvision's own layout)
    looks_for: str  # for error messages, relative to raw_dir
    mirror_folders: tuple[str, ...]  # where it may sit in a mirror
    archives: tuple[str, ...]  # mirror archives that extract to ``folder``
    complete: Callable[[Path], bool]
    read: Callable[[Path, str, tuple[str, ...]], tuple[Split, tuple[str, ...]]]  # -> (x, y), raw classes


@dataclass(frozen=True)
class Source:
    name: str
    classes: tuple[str, ...]  # kept classes, in label order (a prefix or subset of the raw classes)
    layouts: tuple[Layout, ...]  # preferred first
    download: str | None  # torchvision.datasets class that downloads ``layouts[0]``


@dataclass(frozen=True)
class RawData:
    train: Split
    test: Split
    classes: tuple[str, ...]
    kind: str
    where: Path


def _read_mnist(folder: Path, split: str, classes: tuple[str, ...]) -> tuple[Split, tuple[str, ...]]:
    return formats.read_mnist_split(folder, split), formats.MNIST_CLASSES


def _read_cifar(folder: Path, split: str, classes: tuple[str, ...]) -> tuple[Split, tuple[str, ...]]:
    names = formats.read_cifar_classes(folder)
    return formats.read_cifar_split(folder, split, len(names)), names


def _read_folder(folder: Path, split: str, classes: tuple[str, ...]) -> tuple[Split, tuple[str, ...]]:
    return formats.read_image_folder(folder / split, classes), classes  # only the kept class folders


MNIST_IDX = Layout(
    kind="mnist-idx",
    folder="MNIST/raw",
    looks_for="MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]",
    mirror_folders=("MNIST/raw", "mnist/MNIST/raw"),
    archives=(),
    complete=formats.mnist_complete,
    read=_read_mnist,
)
CIFAR_PYTHON = Layout(
    kind="cifar-python",
    folder="cifar-10-batches-py",
    looks_for="cifar-10-batches-py/{data_batch_1..5,test_batch}",
    mirror_folders=("cifar-10-batches-py",),
    archives=("cifar-10-python.tar.gz",),  # the official archive
    complete=formats.cifar_complete,
    read=_read_cifar,
)
CIFAR_FOLDER = Layout(
    kind="image-folder",
    folder="cifar10",
    looks_for="cifar10/{train,test}/<class>/*",
    mirror_folders=("cifar10",),
    archives=("cifar10-imagefolder.tar.gz",),
    complete=formats.folder_complete,
    read=_read_folder,
)

REGISTRY: dict[str, Source] = {
    "mnist": Source("mnist", formats.MNIST_CLASSES, (MNIST_IDX,), "MNIST"),
    "cifar10": Source("cifar10", formats.CIFAR10_CLASSES, (CIFAR_PYTHON, CIFAR_FOLDER), "CIFAR10"),
    "cifar3": Source("cifar3", formats.CIFAR10_CLASSES[:3], (CIFAR_PYTHON, CIFAR_FOLDER), "CIFAR10"),
}
for _name in REGISTRY:
    check_listed("data set", _name, DATASETS)


def mirror_entry(src: Source, mirror: Path) -> tuple[Layout, str, bool] | None:
    """What the mirror offers for ``src``, in the order it is used: (layout, path relative to the
    mirror, whether it is an archive); None when the mirror has nothing for it."""
    for layout in src.layouts:
        for rel in layout.mirror_folders:
            if layout.complete(mirror / rel):
                return layout, rel, False
        for name in layout.archives:
            if (mirror / name).is_file():
                return layout, name, True
    return None


def _from_mirror(src: Source, mirror: Path, raw_dir: Path) -> Layout | None:
    entry = mirror_entry(src, mirror)
    if entry is None:
        return None
    layout, rel, archive = entry
    if archive:
        extract(mirror / rel, Path(layout.folder).name, raw_dir / layout.folder)
    else:
        copy_folder(mirror, rel, raw_dir / layout.folder)
    return layout


# ----------------------------------------------------------------------------- download
def download(dataset_class: str, folder: str, raw_dir: Path) -> None:
    """torchvision's official download (needs internet), staged in a temporary folder so a failed
    download leaves nothing behind; then ``folder`` is moved into ``raw_dir``."""
    import torchvision

    with tempfile.TemporaryDirectory(prefix="batchout-download-") as tmp:
        getattr(torchvision.datasets, dataset_class)(tmp, train=True, download=True)
        with atomic_dir(raw_dir / folder) as dest:
            copy_files(Path(tmp) / folder, dest)


def _try_download(src: Source, raw_dir: Path) -> tuple[Layout | None, str]:
    if src.download is None:
        return None, "no official download"
    layout = src.layouts[0]
    try:
        download(src.download, layout.folder, raw_dir)
    except Exception as err:  # noqa: BLE001 - any network/server failure means "not available offline"
        return None, f"the official download failed ({type(err).__name__}: {' '.join(str(err).split())[:200]})"
    return (layout, "") if layout.complete(raw_dir / layout.folder) else (None, "the download was incomplete")


# ----------------------------------------------------------------------------- lookup
def _find(src: Source, raw_dir: Path) -> Layout:
    for layout in src.layouts:
        if layout.complete(raw_dir / layout.folder):
            return layout
    mirror_env = os.environ.get(MIRROR_ENV)
    mirror = Path(mirror_env) if mirror_env else None
    if mirror is not None and mirror.is_dir():
        layout = _from_mirror(src, mirror, raw_dir)
        if layout is not None:
            return layout
    layout, why = _try_download(src, raw_dir)
    if layout is not None:
        return layout
    wanted = " or ".join(lay.looks_for for lay in src.layouts)
    raise BatchoutError(
        f"{src.name}: raw data not found: looked in raw_dir {raw_dir} for {wanted}; "
        f"{_mirror_note(src, mirror_env)}; {why}. "
        f"Set {MIRROR_ENV} to a folder holding these files, or put them in {raw_dir}"
    )


def _mirror_note(src: Source, mirror_env: str | None) -> str:
    if not mirror_env:
        return f"{MIRROR_ENV} is not set"
    if not Path(mirror_env).is_dir():
        return f"{MIRROR_ENV}={mirror_env} is not a folder"
    archives = ", ".join(a for lay in src.layouts for a in lay.archives) or "none"
    return f"not in {MIRROR_ENV}={mirror_env} either (archives also accepted there: {archives})"


def _keep(split: Split, raw_classes: tuple[str, ...], classes: tuple[str, ...], where: Path) -> Split:
    """Keep the examples of ``classes`` and relabel them 0..len(classes)-1 in that order."""
    missing = [c for c in classes if c not in raw_classes]
    if missing:
        raise BatchoutError(f"{where}: classes {missing} not found; the data has {', '.join(raw_classes)}")
    if tuple(raw_classes) == tuple(classes):
        return split
    new_label = np.full(len(raw_classes), -1, dtype=np.int64)
    for i, c in enumerate(classes):
        new_label[raw_classes.index(c)] = i
    x, y = split
    y = new_label[y]
    keep = y >= 0
    return x[keep], y[keep]


def _user_source(name: str, folder: str, root: Path) -> Source:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):  # it becomes a folder name under data/prepared
        raise BatchoutError(f"data.image_folders: name {name!r} not allowed; use letters, digits, '_', '-', '.'")
    path = Path(folder) if Path(folder).is_absolute() else root / folder
    if not formats.folder_complete(path):
        raise BatchoutError(f"data.image_folders.{name}: folder {path} must hold train/<class>/* and test/<class>/*")
    classes = tuple(formats.list_classes(path / "train"))
    test_classes = tuple(formats.list_classes(path / "test"))
    if not classes or classes != test_classes:
        raise BatchoutError(
            f"data.image_folders.{name}: train classes {list(classes)} and test classes "
            f"{list(test_classes)} must be the same non-empty set of folders"
        )
    layout = Layout(
        "image-folder", str(path), f"{path}/{{train,test}}/<class>/*", (), (), formats.folder_complete, _read_folder
    )
    return Source(name, classes, (layout,), None)


def resolve(data: DataParams, name: str, root: Path) -> Source:
    """The registry entry for ``name`` (built-in or one of ``data.image_folders``)."""
    if name in data.image_folders:
        return _user_source(name, data.image_folders[name], root)
    if name not in REGISTRY:
        raise BatchoutError(f"dataset: unknown value {name!r}; allowed: {', '.join(known_datasets(data))}")
    return REGISTRY[name]


def raw_dir_of(data: DataParams, root: Path) -> Path:
    return Path(data.raw_dir) if Path(data.raw_dir).is_absolute() else root / data.raw_dir


def load_raw(data: DataParams, name: str, root: Path) -> RawData:
    """Find (copying or downloading if needed) and read the raw train and test splits of ``name``."""
    src = resolve(data, name, root)
    raw_dir = raw_dir_of(data, root)
    if name in data.image_folders:
        layout = src.layouts[0]
        folder = Path(layout.folder)
        formats.verify_under(folder, "")  # a SHA256SUMS inside the user's folder, if any
    else:
        layout = _find(src, raw_dir)
        folder = raw_dir / layout.folder
        formats.verify_under(raw_dir, layout.folder)  # a SHA256SUMS at the top of raw_dir, if any
    splits = {}
    for split in ("train", "test"):
        xy, raw_classes = layout.read(folder, split, src.classes)
        splits[split] = _keep(xy, raw_classes, src.classes, folder)
    return RawData(splits["train"], splits["test"], src.classes, layout.kind, folder)
