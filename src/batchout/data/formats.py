"""Readers (and tiny writers) for the raw formats: MNIST IDX, CIFAR-10 python pickles, ImageFolder trees.

Usage: ``x = read_idx(path)``; ``x, y = read_cifar_batch(path)``; ``x, y = read_image_folder(root, classes)``

Every reader returns numpy arrays (images uint8 N x C x H x W, labels int64) and turns a bad file
into a one-line :class:`BatchoutError` that names the file.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from batchout.errors import BatchoutError
from batchout.io import sha256_file

# torchvision's ImageFolder extensions; other files (README, .DS_Store) are ignored.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SUMS_FILE = "SHA256SUMS"
_IDX_UINT8 = 0x08  # the only IDX element type the MNIST files use


# ----------------------------------------------------------------------------- IDX
def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise BatchoutError(f"{path}: cannot read ({type(err).__name__}: {err}); the file is corrupt") from None


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (``.gz`` or not) as a uint8 array of its declared shape; magic and size checked."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise BatchoutError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    if raw[2] != _IDX_UINT8:
        raise BatchoutError(f"{path}: IDX element type 0x{raw[2]:02x} not supported; allowed: 0x08 (uint8)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise BatchoutError(f"{path}: truncated IDX header ({len(raw)} bytes, {ndim} dimensions)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise BatchoutError(
            f"{path}: truncated or padded IDX file: shape {dims} needs {expected} data bytes, found {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as IDX (gzip-compressed when ``path`` ends in ``.gz``); for fixtures."""
    path = Path(path)
    a = np.ascontiguousarray(array, dtype=np.uint8)
    data = bytes([0, 0, _IDX_UINT8, a.ndim]) + np.asarray(a.shape, dtype=">i4").tobytes() + a.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 keeps the .gz bytes reproducible
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


# ----------------------------------------------------------------------------- CIFAR pickles
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Refuses every global except what a pickled numpy array needs, so a crafted file cannot run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # bytes pickled by Python 3 at protocol < 3
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        if module == "numpy.core.multiarray":  # old name, kept as a shim in numpy 2
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            # latin1: the official batches were pickled by Python 2 (numpy's documented choice)
            obj = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as err:
        raise BatchoutError(f"{path}: not a readable CIFAR pickle ({type(err).__name__}: {err})") from None
    if not isinstance(obj, dict):
        raise BatchoutError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: dict with ``data`` uint8 N x 3072 (CHW order) and ``labels``."""
    path = Path(path)
    d = _unpickle(path)
    if "data" not in d or "labels" not in d:
        raise BatchoutError(f"{path}: CIFAR batch keys {sorted(map(str, d))}; expected 'data' and 'labels'")
    x, y = d["data"], np.asarray(d["labels"], dtype=np.int64)
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise BatchoutError(f"{path}: 'data' must be uint8 N x 3072, got {got}")
    if y.shape != (len(x),):
        raise BatchoutError(f"{path}: {len(y)} labels for {len(x)} images")
    return x.reshape(-1, 3, 32, 32), y


def read_cifar_label_names(path: str | Path) -> list[str]:
    """``label_names`` of a ``batches.meta`` file."""
    path = Path(path)
    names = _unpickle(path).get("label_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BatchoutError(f"{path}: expected 'label_names', a list of strings")
    return names


def write_cifar_batch(path: str | Path, x: np.ndarray, labels: np.ndarray) -> None:
    """Write images (uint8 N x 3 x 32 x 32) as a CIFAR-10 python batch; for fixtures."""
    path = Path(path)
    data = np.ascontiguousarray(x, dtype=np.uint8).reshape(len(x), -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({"batch_label": path.name, "labels": [int(v) for v in labels], "data": data}, f, protocol=4)


# ----------------------------------------------------------------------------- ImageFolder
def list_classes(split_dir: str | Path) -> list[str]:
    """Class names of an ImageFolder split: its sub-folders, sorted (torchvision's convention)."""
    return sorted(p.name for p in Path(split_dir).iterdir() if p.is_dir() and not p.name.startswith("."))


def list_images(split_dir: Path, classes: list[str] | tuple[str, ...]) -> tuple[list[Path], np.ndarray]:
    """Image files of the given classes (sorted by class, then file name) and their labels."""
    files: list[Path] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        folder = split_dir / cls
        if not folder.is_dir():
            raise BatchoutError(f"{split_dir}: class folder {cls!r} missing; expected one folder per class")
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        files += found
        labels += [label] * len(found)
    return files, np.asarray(labels, dtype=np.int64)


def _decode(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "RGB"):
                im = im.convert("RGB")
            return np.asarray(im)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise BatchoutError(f"{path}: not a readable image ({type(err).__name__}: {err})") from None


def read_images(files: list[Path]) -> np.ndarray:
    """Decode images of one size into uint8 N x C x H x W (C=1 when every image is grayscale, else 3)."""
    if not files:
        return np.zeros((0, 3, 0, 0), dtype=np.uint8)
    first = _decode(files[0])
    h, w = first.shape[:2]
    out = np.empty((len(files), h, w, 3), dtype=np.uint8)  # HWC while filling: what PIL hands back
    gray = True
    for i, path in enumerate(files):
        a = first if i == 0 else _decode(path)
        if a.shape[:2] != (h, w):
            raise BatchoutError(f"{path}: image size {a.shape[1]}x{a.shape[0]}; all images must be {w}x{h}")
        gray = gray and a.ndim == 2
        out[i] = a[..., None] if a.ndim == 2 else a
    chw = out[..., :1] if gray else out
    return np.ascontiguousarray(chw.transpose(0, 3, 1, 2))


def read_image_folder(split_dir: str | Path, classes: list[str] | tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """One ImageFolder split (``<split_dir>/<class>/*``) as (uint8 N x C x H x W, int64 labels)."""
    files, labels = list_images(Path(split_dir), classes)
    return read_images(files), labels


# ----------------------------------------------------------------------------- whole layouts
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MNIST_CLASSES = tuple(str(d) for d in range(10))


def idx_file(folder: Path, base: str) -> Path | None:
    """``base`` in ``folder``, extracted or ``.gz`` (torchvision keeps both; the extracted one is faster)."""
    for candidate in (folder / base, folder / f"{base}.gz"):
        if candidate.is_file():
            return candidate
    return None


def mnist_complete(folder: Path) -> bool:
    return all(idx_file(folder, b) for pair in MNIST_FILES.values() for b in pair)


def cifar_complete(folder: Path) -> bool:
    return all((folder / b).is_file() for names in CIFAR_BATCHES.values() for b in names)


def folder_complete(folder: Path) -> bool:
    return (folder / "train").is_dir() and (folder / "test").is_dir()


def _check_labels(path: Path, y: np.ndarray, num_classes: int) -> np.ndarray:
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise BatchoutError(f"{path}: label {int(y.max())} out of range; allowed: 0..{num_classes - 1}")
    return y


def read_mnist_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST ``train`` or ``test`` from torchvision's ``MNIST/raw`` folder: (uint8 N x 1 x 28 x 28, int64)."""
    img_base, lbl_base = MNIST_FILES[split]
    img_path, lbl_path = idx_file(folder, img_base), idx_file(folder, lbl_base)
    if img_path is None or lbl_path is None:
        raise BatchoutError(f"{folder}: {img_base}[.gz] or {lbl_base}[.gz] missing")
    x, y = read_idx(img_path), read_idx(lbl_path).astype(np.int64)
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise BatchoutError(f"{img_path}: image shape {x.shape}; expected N x 28 x 28")
    if y.shape != (len(x),):
        raise BatchoutError(f"{lbl_path}: label shape {y.shape}; expected ({len(x)},) to match {img_path.name}")
    return x[:, None], _check_labels(lbl_path, y, len(MNIST_CLASSES))


def read_cifar_classes(folder: Path) -> tuple[str, ...]:
    """Class names from ``batches.meta`` when present, else CIFAR-10's documented order."""
    meta = folder / "batches.meta"
    return tuple(read_cifar_label_names(meta)) if meta.is_file() else CIFAR10_CLASSES


def read_cifar_split(folder: Path, split: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 ``train`` (data_batch_1..5) or ``test`` (test_batch) from ``cifar-10-batches-py``."""
    parts = [read_cifar_batch(folder / name) for name in CIFAR_BATCHES[split]]
    for name, (_, y) in zip(CIFAR_BATCHES[split], parts, strict=True):
        _check_labels(folder / name, y, num_classes)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# ----------------------------------------------------------------------------- checksums
def read_sums(root: Path) -> dict[str, str]:
    """``SHA256SUMS`` in ``root`` (``sha256sum`` output) as relative path -> hex digest; {} if absent."""
    path = root / SUMS_FILE
    if not path.is_file():
        return {}
    sums = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        digest, _, name = line.strip().partition(" ")
        if digest and name:
            sums[name.strip().lstrip("*").removeprefix("./")] = digest.lower()
    return sums


def verify_under(root: Path, rel: str) -> None:
    """Check every file listed in ``root/SHA256SUMS`` at or under ``rel``; a mismatch is refused."""
    for name, digest in read_sums(root).items():
        if rel and name != rel and not name.startswith(rel.rstrip("/") + "/"):
            continue
        path = root / name
        if path.is_file() and sha256_file(path) != digest:
            raise BatchoutError(f"{path}: sha256 does not match {root / SUMS_FILE}; the file is corrupt, replace it")
