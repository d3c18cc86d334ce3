"""The prepare stage end to end on tiny generated raw data: splits, subsets, determinism, corrupt
inputs, the loader and the CLI (where raw data comes from: test_sources.py). No network.

Usage: ``.venv/bin/pytest tests/test_prepare.py -q``
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from raw_data import (
    CIFAR,
    MNIST_TEST,
    MNIST_TRAIN,
    params,
    snapshot,
    write_image_folder,
    write_mnist,
)
from typer.testing import CliRunner

from batchout.config import Subset
from batchout.data import prepare
from batchout.data.loader import load_meta, load_split
from batchout.errors import BatchoutError
from batchout.paths import Paths
from batchout.stages import prepare as stage

pytestmark = pytest.mark.usefixtures("offline")  # no network, no mirror unless a test sets one


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
