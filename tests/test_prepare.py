"""The prepare stage end to end on tiny generated raw data: sources and their order, splits, subsets,
determinism, corrupt inputs, the loader and the CLI. Nothing here touches the network.

Usage: ``.venv/bin/pytest tests/test_prepare.py -q``
"""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import write_mnist_idx
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from batchout.config import DataParams, Subset
from batchout.data import formats, prepare, sources
from batchout.data.loader import SPLITS, load_meta, load_split
from batchout.errors import BatchoutError
from batchout.paths import Paths
from batchout.stages import prepare as stage

CIFAR = formats.CIFAR10_CLASSES


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """No mirror unless a test sets one; the official download is replaced by a recorder that fails."""
    monkeypatch.delenv(sources.MIRROR_ENV, raising=False)
    calls: list[tuple] = []

    def no_network(*args):
        calls.append(args)
        raise OSError("offline in tests")

    monkeypatch.setattr(sources, "download", no_network)
    return calls


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


@pytest.fixture
def mnist_raw(tmp_path: Path) -> Path:
    write_mnist(tmp_path / "data/raw/MNIST/raw", MNIST_TRAIN, MNIST_TEST)
    return tmp_path


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
def test_stratified_val_split_and_subsets(tmp_path: Path) -> None:
    write_mnist(tmp_path / "data/raw/MNIST/raw", [40, 30, 20, 10, 50, 25, 35, 15, 45, 30], [10] * 10)
    data = params(val_fraction=0.25, seed=3, subset=Subset(train=100, val=None, test=37))
    meta = stage.run(data, "mnist", Paths(tmp_path))
    full = np.array([40, 30, 20, 10, 50, 25, 35, 15, 45, 30])
    val = np.array(meta["class_counts"]["val"])
    assert val.sum() == 75 and np.all(np.abs(val - 0.25 * full) <= 1)
    left = full - val
    train = np.array(meta["class_counts"]["train"])
    assert train.sum() == 100 and np.all(np.abs(train - 100 * left / left.sum()) <= 1)
    test = np.array(meta["class_counts"]["test"])
    assert test.sum() == 37 and np.all(np.abs(test - 3.7) <= 1)
    _, y = load_split(tmp_path / "data/prepared/mnist", "train")
    assert np.bincount(y.numpy(), minlength=10).tolist() == train.tolist()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 60), min_size=1, max_size=12).filter(lambda c: sum(c) > 0), st.floats(0, 1))
def test_allocate_is_proportional_within_one(counts: list[int], frac: float) -> None:
    counts_a = np.array(counts)
    m = int(frac * counts_a.sum())
    got = prepare.allocate(counts_a, m)
    assert got.sum() == m and np.all(got >= 0) and np.all(got <= counts_a)
    assert np.all(np.abs(got - m * counts_a / counts_a.sum()) < 1)


def test_subset_larger_than_split_keeps_all_and_tiny_val_is_refused(mnist_raw: Path) -> None:
    meta = stage.run(params(subset=Subset(test=1000)), "mnist", Paths(mnist_raw))
    assert meta["counts"]["test"] == 20
    with pytest.raises(BatchoutError, match="data.val_fraction: 0.001 of 50 train examples gives 0"):
        stage.run(params(val_fraction=0.001), "mnist", Paths(mnist_raw))


def test_same_params_byte_identical_other_seed_differs(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        write_mnist(tmp_path / name / "data/raw/MNIST/raw", MNIST_TRAIN, MNIST_TEST)
    metas = [stage.run(params(seed=s), "mnist", Paths(tmp_path / n)) for n, s in (("a", 1), ("b", 1), ("c", 2))]
    a, b, c = (snapshot(tmp_path / n / "data/prepared/mnist") for n in ("a", "b", "c"))
    assert a == b and len(a) == 7
    assert metas[0]["sha256"]["x_train.npy"] != metas[2]["sha256"]["x_train.npy"]
    assert a["x_test.npy"] != c["x_test.npy"] and a["meta.json"] != c["meta.json"]


def test_channel_stats_match_numpy() -> None:
    x = np.random.default_rng(0).integers(0, 256, size=(9, 3, 5, 4), dtype=np.uint8)
    mean, std = prepare.channel_stats(x)
    f = x.astype(np.float64) / 255
    np.testing.assert_allclose(mean, f.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, f.std(axis=(0, 2, 3)), rtol=1e-9)


# ----------------------------------------------------------------------------- bad input and the loader
def test_unknown_dataset_names_allowed_values(tmp_path: Path) -> None:
    with pytest.raises(BatchoutError, match=r"^dataset: unknown value 'svhn'; allowed: mnist, cifar10, cifar3, mine$"):
        stage.run(params(image_folders={"mine": "x"}), "svhn", Paths(tmp_path))


def test_truncated_idx_and_non_image_jpg_write_nothing(tmp_path: Path) -> None:
    raw = tmp_path / "data/raw/MNIST/raw"
    write_mnist(raw, MNIST_TRAIN, MNIST_TEST)
    path = raw / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(BatchoutError, match="t10k-images-idx3-ubyte: truncated"):
        stage.run(params(), "mnist", Paths(tmp_path))
    write_image_folder(tmp_path / "data/raw/cifar10", {c: (2, 1) for c in CIFAR})
    (tmp_path / "data/raw/cifar10/train/bird/1.jpg").write_text("oops")
    with pytest.raises(BatchoutError, match=r"bird/1.jpg: not a readable image"):
        stage.run(params(), "cifar3", Paths(tmp_path))
    assert not (tmp_path / "data/prepared").exists()


def test_failed_rerun_keeps_the_previous_output_whole(mnist_raw: Path, monkeypatch) -> None:
    stage.run(params(), "mnist", Paths(mnist_raw))
    out = mnist_raw / "data/prepared/mnist"
    before = snapshot(out)
    calls = []

    def dying_save(path, array, allow_pickle=False):  # the stage is killed after the first file
        calls.append(path)
        if len(calls) > 1:
            raise KeyboardInterrupt
        with open(path, "wb") as f:
            np.lib.format.write_array(f, array)

    monkeypatch.setattr(prepare.np, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        stage.run(params(seed=9), "mnist", Paths(mnist_raw))
    assert snapshot(out) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["mnist"]  # no temporary folder left


def test_loader_refuses_tampered_and_missing_files(mnist_raw: Path) -> None:
    out = mnist_raw / "data/prepared/mnist"
    with pytest.raises(BatchoutError, match=r"run `dvc repro prepare@mnist` \(or `batchout prepare mnist`\)"):
        load_meta(out)
    stage.run(params(), "mnist", Paths(mnist_raw))
    x, y = load_split(out, "val")
    assert x.dtype.is_floating_point is False and str(x.dtype) == "torch.uint8" and str(y.dtype) == "torch.int64"
    assert tuple(x.shape) == (10, 1, 28, 28)
    raw = bytearray((out / "x_val.npy").read_bytes())
    raw[-1] ^= 0xFF
    (out / "x_val.npy").write_bytes(bytes(raw))
    with pytest.raises(BatchoutError, match=r"x_val.npy: sha256 does not match meta.json"):
        load_split(out, "val")
    assert int(load_split(out, "val", verify=False)[0].reshape(-1)[-1]) == int(x.reshape(-1)[-1]) ^ 0xFF
    (out / "y_test.npy").unlink()
    with pytest.raises(BatchoutError, match="y_test.npy missing"):
        load_split(out, "test")
    with pytest.raises(BatchoutError, match="split: unknown value 'dev'; allowed: train, val, test"):
        load_split(out, "dev")


# ----------------------------------------------------------------------------- CLI
def test_cli_help_unknown_dataset_and_success(mnist_raw: Path, repo_root: Path, monkeypatch) -> None:
    from pipeline.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["prepare", "--help"])
    assert result.exit_code == 0 and "Prepare a data set" in result.output and "dataset" in result.output
    monkeypatch.chdir(mnist_raw)
    result = runner.invoke(app, ["prepare", "svhn", "--params", str(repo_root / "params.yaml")])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: dataset: unknown value 'svhn'; allowed: mnist, cifar10, cifar3"
    assert not (mnist_raw / "data/prepared").exists()
    (mnist_raw / "params.yaml").write_text("data: {val_fraction: 0.2, subset: {train: 12}}\n")
    result = runner.invoke(app, ["prepare", "mnist"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "mnist: train 12, val 10, test 20 (of 50/20, mnist-idx from data/raw/MNIST/raw) -> data/prepared/mnist"
    )
