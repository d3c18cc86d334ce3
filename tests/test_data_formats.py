"""Raw format readers on tiny files written in the real formats: IDX, CIFAR pickles, ImageFolder, SHA256SUMS.

Usage: ``.venv/bin/pytest tests/test_data_formats.py -q``
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from batchout.data import formats
from batchout.errors import BatchoutError


def _idx_bytes(a: np.ndarray) -> bytes:
    # written by hand from the format description (not via the module's writer)
    return struct.pack(">HBB", 0, 0x08, a.ndim) + struct.pack(f">{a.ndim}i", *a.shape) + a.astype(np.uint8).tobytes()


def _message_naming(err: pytest.ExceptionInfo, name: str) -> str:
    msg = str(err.value)
    assert name in msg
    return msg


# ----------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_plain_and_gz(tmp_path: Path, gz: bool) -> None:
    a = np.random.default_rng(0).integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    path = tmp_path / ("images.gz" if gz else "images")
    path.write_bytes(gzip.compress(_idx_bytes(a)) if gz else _idx_bytes(a))
    np.testing.assert_array_equal(formats.read_idx(path), a)


def test_write_idx_round_trips_and_matches_handwritten_bytes(tmp_path: Path) -> None:
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    formats.write_idx(tmp_path / "a", a)
    assert (tmp_path / "a").read_bytes() == _idx_bytes(a)
    formats.write_idx(tmp_path / "a.gz", a)
    np.testing.assert_array_equal(formats.read_idx(tmp_path / "a.gz"), a)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_idx_is_refused(tmp_path: Path, gz: bool) -> None:
    raw = _idx_bytes(np.zeros((5, 28, 28), dtype=np.uint8))
    path = tmp_path / ("train-images-idx3-ubyte.gz" if gz else "train-images-idx3-ubyte")
    if gz:  # a gzip stream cut short
        path.write_bytes(gzip.compress(raw)[:-20])
    else:  # a whole stream with the last image cut short
        path.write_bytes(raw[:-100])
    with pytest.raises(BatchoutError) as err:
        formats.read_idx(path)
    _message_naming(err, path.name)


def test_idx_bad_magic_and_type(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(BatchoutError, match="bad magic"):
        formats.read_idx(tmp_path / "x")
    (tmp_path / "y").write_bytes(b"\x00\x00\x0d\x01" + struct.pack(">i", 1) + b"\x00" * 4)
    with pytest.raises(BatchoutError, match="0x0d not supported"):
        formats.read_idx(tmp_path / "y")


def test_mnist_split_mixes_gz_and_plain_and_checks_labels(tmp_path: Path) -> None:
    x = np.random.default_rng(1).integers(0, 256, size=(6, 28, 28), dtype=np.uint8)
    y = np.array([0, 1, 2, 9, 9, 3], dtype=np.uint8)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(x))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(y)))
    xs, ys = formats.read_mnist_split(tmp_path, "test")
    assert xs.shape == (6, 1, 28, 28) and ys.dtype == np.int64
    np.testing.assert_array_equal(xs[:, 0], x)
    np.testing.assert_array_equal(ys, y)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(np.array([0, 1, 2, 3, 4]))))
    with pytest.raises(BatchoutError, match="expected \\(6,\\)"):
        formats.read_mnist_split(tmp_path, "test")
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(y + 1)))
    with pytest.raises(BatchoutError, match="label 10 out of range"):
        formats.read_mnist_split(tmp_path, "test")


# ----------------------------------------------------------------------------- CIFAR pickles
def _dump(path: Path, obj: object, protocol: int = 4) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def test_cifar_batch_is_chw(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    hwc = rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    rows = hwc.transpose(0, 3, 1, 2).reshape(4, -1)  # documented layout: 1024 R, then G, then B
    path = _dump(tmp_path / "data_batch_1", {"data": rows, "labels": [3, 1, 4, 1], "batch_label": "b"})
    x, y = formats.read_cifar_batch(path)
    assert x.shape == (4, 3, 32, 32) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[2, 0], hwc[2, :, :, 0])  # red plane
    np.testing.assert_array_equal(x[3, 2], hwc[3, :, :, 2])  # blue plane
    assert y.tolist() == [3, 1, 4, 1] and y.dtype == np.int64


def test_cifar_python2_style_bytes_keys(tmp_path: Path) -> None:
    rows = np.full((2, 3072), 7, dtype=np.uint8)
    path = _dump(tmp_path / "test_batch", {b"data": rows, b"labels": [0, 9]}, protocol=2)
    x, y = formats.read_cifar_batch(path)
    assert int(x.sum()) == 7 * 2 * 3072 and y.tolist() == [0, 9]


def test_write_cifar_batch_round_trips(tmp_path: Path) -> None:
    x = np.random.default_rng(3).integers(0, 256, size=(3, 3, 32, 32), dtype=np.uint8)
    formats.write_cifar_batch(tmp_path / "b", x, np.array([2, 0, 1]))
    xr, yr = formats.read_cifar_batch(tmp_path / "b")
    np.testing.assert_array_equal(xr, x)
    assert yr.tolist() == [2, 0, 1]


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize(
    "content, expect",
    [
        (lambda: pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]})[:-30], "not a readable"),
        (lambda: b"this is not a pickle at all", "not a readable"),
        (lambda: pickle.dumps({"images": np.zeros((2, 3072), np.uint8)}), "expected 'data' and 'labels'"),
        (lambda: pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}), "uint8 N x 3072"),
        (lambda: pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}), "1 labels for 2"),
        (lambda: pickle.dumps([1, 2, 3]), "expected a pickled dict"),
        (lambda: pickle.dumps({"data": _Evil(), "labels": []}), "builtins.print is not allowed"),
    ],
)
def test_bad_cifar_pickles_are_refused(tmp_path: Path, content, expect: str, capsys) -> None:
    path = tmp_path / "data_batch_3"
    path.write_bytes(content())
    with pytest.raises(BatchoutError) as err:
        formats.read_cifar_batch(path)
    assert expect in _message_naming(err, "data_batch_3")
    assert "pwned" not in capsys.readouterr().out  # the refused global never ran


def test_cifar_label_names_and_out_of_range_labels(tmp_path: Path) -> None:
    _dump(tmp_path / "batches.meta", {"label_names": ["a", "b"], "num_vis": 3072})
    assert formats.read_cifar_classes(tmp_path) == ("a", "b")
    rows = np.zeros((2, 3072), dtype=np.uint8)
    _dump(tmp_path / "test_batch", {"data": rows, "labels": [0, 2]})
    with pytest.raises(BatchoutError, match="test_batch: label 2 out of range; allowed: 0..1"):
        formats.read_cifar_split(tmp_path, "test", 2)


# ----------------------------------------------------------------------------- ImageFolder
def _tree(root: Path, spec: dict[str, list[np.ndarray]], ext: str) -> None:
    for cls, images in spec.items():
        (root / cls).mkdir(parents=True)
        for i, a in enumerate(images):
            Image.fromarray(a).save(root / cls / f"{i:04d}{ext}", quality=95)


def test_image_folder_png_is_exact_and_sorted(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    spec = {c: [rng.integers(0, 256, (5, 6, 3), dtype=np.uint8) for _ in range(n)] for c, n in [("b", 2), ("a", 3)]}
    _tree(tmp_path, spec, ".png")
    (tmp_path / "a" / "notes.txt").write_text("not an image, and not an image extension either")
    assert formats.list_classes(tmp_path) == ["a", "b"]
    x, y = formats.read_image_folder(tmp_path, ["a", "b"])
    assert x.shape == (5, 3, 5, 6) and y.tolist() == [0, 0, 0, 1, 1]
    np.testing.assert_array_equal(x[3], spec["b"][0].transpose(2, 0, 1))


def test_image_folder_jpeg_close_and_grayscale_one_channel(tmp_path: Path) -> None:
    smooth = np.tile(np.linspace(0, 250, 16, dtype=np.uint8), (16, 1))
    _tree(tmp_path / "rgb", {"c": [np.stack([smooth] * 3, axis=-1)]}, ".jpg")
    x, _ = formats.read_image_folder(tmp_path / "rgb", ["c"])
    assert x.shape == (1, 3, 16, 16)
    assert np.abs(x[0, 1].astype(int) - smooth).max() <= 8  # lossy, but close
    _tree(tmp_path / "gray", {"c": [smooth, smooth[::-1]]}, ".png")
    x, _ = formats.read_image_folder(tmp_path / "gray", ["c"])
    assert x.shape == (2, 1, 16, 16)
    np.testing.assert_array_equal(x[1, 0], smooth[::-1])


def test_image_folder_refuses_non_images_and_mixed_sizes(tmp_path: Path) -> None:
    _tree(tmp_path, {"c": [np.zeros((8, 8, 3), np.uint8)]}, ".jpg")
    (tmp_path / "c" / "0001.jpg").write_bytes(b"<html>not found</html>")
    with pytest.raises(BatchoutError) as err:
        formats.read_image_folder(tmp_path, ["c"])
    _message_naming(err, "0001.jpg")
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(tmp_path / "c" / "0001.jpg")
    with pytest.raises(BatchoutError, match="0001.jpg: image size 8x9; all images must be 8x8"):
        formats.read_image_folder(tmp_path, ["c"])
    with pytest.raises(BatchoutError, match="class folder 'd' missing"):
        formats.read_image_folder(tmp_path, ["c", "d"])


# ----------------------------------------------------------------------------- SHA256SUMS
def test_verify_under_checks_listed_files_only(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.gz").write_bytes(b"payload")
    (tmp_path / "other").write_bytes(b"x")
    good = hashlib.sha256(b"payload").hexdigest()
    (tmp_path / "SHA256SUMS").write_text(f"{good}  d/f.gz\n{'0' * 64}  other\n{'1' * 64}  d/gone\n")
    assert formats.read_sums(tmp_path)["d/f.gz"] == good
    formats.verify_under(tmp_path, "d")  # f.gz matches; d/gone is listed but absent: skipped
    with pytest.raises(BatchoutError) as err:
        formats.verify_under(tmp_path, "other")
    _message_naming(err, "other")
    (tmp_path / "d" / "f.gz").write_bytes(b"tampered")
    with pytest.raises(BatchoutError, match="f.gz: sha256 does not match"):
        formats.verify_under(tmp_path, "d")
