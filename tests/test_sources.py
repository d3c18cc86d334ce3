"""Where raw data comes from, in order: raw_dir, the read-only mirror (verified, copied or extracted,
never modified), the official download; CIFAR3 from CIFAR-10; user image folders. Nothing here
touches the network.

Usage: ``.venv/bin/pytest tests/test_sources.py -q``
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from raw_data import (
    CIFAR,
    MNIST_TEST,
    MNIST_TRAIN,
    image_ids,
    params,
    sha256sums,
    snapshot,
    write_cifar_python,
    write_image_folder,
    write_mnist,
)

from batchout.data import formats, sources
from batchout.data.loader import SPLITS, load_meta, load_split
from batchout.errors import BatchoutError
from batchout.paths import Paths
from batchout.stages import prepare as stage

pytestmark = pytest.mark.usefixtures("offline")  # no network, no mirror unless a test sets one


# ----------------------------------------------------------------------------- sources
def test_mnist_from_raw_dir(mnist_raw: Path, offline: list) -> None:
    meta = stage.run(params(), "mnist", Paths(mnist_raw))
    assert meta["source"] == {"kind": "mnist-idx", "where": "data/raw/MNIST/raw"}
    assert meta["source_counts"] == {"train": 50, "test": 20} and meta["shape"] == [1, 28, 28]
    assert meta["counts"] == {"train": 40, "val": 10, "test": 20} and meta["classes"] == list("0123456789")
    out = mnist_raw / "data/prepared/mnist"
    xs = {s: load_split(out, s) for s in SPLITS}
    train_ids, val_ids = image_ids(xs["train"][0].numpy()), image_ids(xs["val"][0].numpy())
    assert sorted(np.concatenate([train_ids, val_ids]).tolist()) == list(range(50))  # disjoint, complete
    labels = np.repeat(np.arange(10), MNIST_TRAIN)
    np.testing.assert_array_equal(xs["train"][1].numpy(), labels[train_ids])
    assert load_meta(out) == meta and not offline


def test_mirror_gz_is_verified_and_copied_and_left_untouched(tmp_path: Path, monkeypatch, offline: list) -> None:
    mirror = tmp_path / "mirror"
    write_mnist(mirror / "mnist/MNIST/raw", MNIST_TRAIN, MNIST_TEST, gz=True)
    sha256sums(mirror, [f"mnist/MNIST/raw/{n}.gz" for pair in formats.MNIST_FILES.values() for n in pair])
    before = snapshot(mirror)
    monkeypatch.setenv(sources.MIRROR_ENV, str(mirror))
    root = tmp_path / "repo"
    meta = stage.run(params(), "mnist", Paths(root))
    assert meta["source_counts"] == {"train": 50, "test": 20}
    assert sorted(p.name for p in (root / "data/raw/MNIST/raw").iterdir()) == sorted(
        f"{n}.gz" for pair in formats.MNIST_FILES.values() for n in pair
    )
    assert snapshot(mirror) == before and not offline


def test_mirror_checksum_mismatch_is_refused_before_writing(tmp_path: Path, monkeypatch) -> None:
    mirror = tmp_path / "mirror"
    write_mnist(mirror / "MNIST/raw", MNIST_TRAIN, MNIST_TEST)
    sha256sums(mirror, ["MNIST/raw/train-images-idx3-ubyte"])
    (mirror / "MNIST/raw/train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x00")
    monkeypatch.setenv(sources.MIRROR_ENV, str(mirror))
    with pytest.raises(BatchoutError, match=r"train-images-idx3-ubyte: sha256 does not match .*SHA256SUMS"):
        stage.run(params(), "mnist", Paths(tmp_path / "repo"))
    assert not (tmp_path / "repo").exists()


def test_mirror_image_folder_archive_gives_cifar3_then_cifar10(tmp_path: Path, monkeypatch, offline: list) -> None:
    staging, mirror = tmp_path / "staging", tmp_path / "mirror"
    write_image_folder(staging / "cifar10", {c: (i % 3 + 3, 2) for i, c in enumerate(CIFAR)})
    mirror.mkdir()
    with tarfile.open(mirror / "cifar10-imagefolder.tar.gz", "w:gz") as tar:
        tar.add(staging / "cifar10", arcname="cifar10")
    sha256sums(mirror, ["cifar10-imagefolder.tar.gz"])
    monkeypatch.setenv(sources.MIRROR_ENV, str(mirror))
    root = tmp_path / "repo"
    meta = stage.run(params(), "cifar3", Paths(root))
    assert meta["classes"] == ["airplane", "automobile", "bird"] and meta["num_classes"] == 3
    assert meta["source"] == {"kind": "image-folder", "where": "data/raw/cifar10"}
    assert meta["source_counts"] == {"train": 3 + 4 + 5, "test": 6} and meta["shape"] == [3, 8, 8]
    assert set(load_split(root / "data/prepared/cifar3", "train")[1].tolist()) == {0, 1, 2}
    monkeypatch.delenv(sources.MIRROR_ENV)  # cifar10 now comes from the extracted copy in raw_dir
    meta10 = stage.run(params(), "cifar10", Paths(root))
    assert meta10["source_counts"] == {"train": 4 * 3 + 3 * 4 + 3 * 5, "test": 20} and not offline


def test_raw_dir_wins_over_mirror(tmp_path: Path, monkeypatch) -> None:
    write_mnist(tmp_path / "mirror/MNIST/raw", MNIST_TRAIN, MNIST_TEST, tag=2)
    write_mnist(tmp_path / "repo/data/raw/MNIST/raw", MNIST_TRAIN, MNIST_TEST, tag=1)
    monkeypatch.setenv(sources.MIRROR_ENV, str(tmp_path / "mirror"))
    stage.run(params(), "mnist", Paths(tmp_path / "repo"))
    x, _ = load_split(tmp_path / "repo/data/prepared/mnist", "test")
    assert set(x.reshape(len(x), -1)[:, 2].tolist()) == {1}  # the raw_dir copy's tag


def test_cifar_exact_batches_preferred_and_cifar3_mapping(tmp_path: Path) -> None:
    write_cifar_python(tmp_path / "data/raw/cifar-10-batches-py", per_class_train=5, per_class_test=2)
    write_image_folder(tmp_path / "data/raw/cifar10", {c: (1, 1) for c in CIFAR})
    meta = stage.run(params(), "cifar3", Paths(tmp_path))
    assert meta["source"]["kind"] == "cifar-python" and meta["classes"] == list(CIFAR[:3])
    assert meta["source_counts"] == {"train": 15, "test": 6} and meta["shape"] == [3, 32, 32]
    out = tmp_path / "data/prepared/cifar3"
    x, y = load_split(out, "test")
    # test ids 0..5 are classes 0,0,1,1,2,2 in the raw test batch: labels follow the images
    np.testing.assert_array_equal(y.numpy(), image_ids(x.numpy()) // 2)


def test_offline_with_nothing_is_one_line_and_writes_nothing(tmp_path: Path, offline: list) -> None:
    with pytest.raises(BatchoutError) as err:
        stage.run(params(), "cifar10", Paths(tmp_path))
    msg = str(err.value)
    assert msg.startswith("cifar10: raw data not found: looked in raw_dir ")
    for part in (
        "cifar-10-batches-py/",
        "cifar10/{train,test}",
        "BATCHOUT_DATA_MIRROR is not set",
        "official download failed (OSError: offline in tests)",
        "Set BATCHOUT_DATA_MIRROR",
    ):
        assert part in msg
    assert list(tmp_path.iterdir()) == []
    assert offline == [("CIFAR10", "cifar-10-batches-py", tmp_path / "data/raw")]


def test_download_path_fills_raw_dir(tmp_path: Path, monkeypatch) -> None:
    def fake_download(dataset_class: str, folder: str, raw_dir: Path) -> None:
        write_mnist(raw_dir / folder, MNIST_TRAIN, MNIST_TEST)

    monkeypatch.setattr(sources, "download", fake_download)
    assert stage.run(params(), "mnist", Paths(tmp_path))["source"]["where"] == "data/raw/MNIST/raw"


def test_user_image_folder_grayscale(tmp_path: Path) -> None:
    folder = tmp_path / "shapes"
    for split, n in (("train", 5), ("test", 2)):
        for cls in ("square", "circle"):
            (folder / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((6, 6), 40 * i, np.uint8)).save(folder / split / cls / f"{i}.png")
    meta = stage.run(params(image_folders={"shapes": "shapes"}), "shapes", Paths(tmp_path))
    assert meta["classes"] == ["circle", "square"] and meta["shape"] == [1, 6, 6]
    assert meta["counts"] == {"train": 8, "val": 2, "test": 4} and meta["source"]["where"] == "shapes"


# ----------------------------------------------------------------------------- splits and subsets
