"""Shared fixtures: the real params.yaml shrunk to tiny sizes, and the offline data mirror.

Usage: a test takes ``tiny_params`` or ``mirror`` as an argument.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from batchout.config import Params, load_params

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _single_thread_determinism():
    torch.manual_seed(0)
    yield


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture
def real_params() -> Params:
    return load_params(REPO / "params.yaml")


@pytest.fixture
def mirror() -> Path:
    """The read-only offline mirror named by BATCHOUT_DATA_MIRROR; tests needing it skip without it."""
    value = os.environ.get("BATCHOUT_DATA_MIRROR")
    if not value or not Path(value).is_dir():
        pytest.skip("BATCHOUT_DATA_MIRROR is not set to an existing folder")
    return Path(value)


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable 28x28 'digits': class c is a bright bar at row 2 + 2c, plus noise (uint8)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, size=n).astype(np.uint8)
    x = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
    for c in range(10):
        rows = 2 + 2 * c
        x[y == c, rows : rows + 2, 4:24] = 230
    return x, y


def write_mnist_raw(raw_dir: Path, n_train: int = 600, n_test: int = 200) -> None:
    """A raw folder in torchvision's MNIST/raw IDX layout, with synthetic digits."""
    from batchout.data.formats import write_idx

    folder = raw_dir / "MNIST" / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        x, y = synthetic_digits(n, seed)
        write_idx(folder / f"{split}-images-idx3-ubyte", x)
        write_idx(folder / f"{split}-labels-idx1-ubyte", y)


@pytest.fixture
def tiny_project(tmp_path, monkeypatch, real_params):
    """The real params.yaml shrunk (2 epochs, tiny synthetic MNIST, CPU), a prepared data set and
    an MLflow store, all under tmp_path. Returns (params, paths)."""
    from batchout.config import Subset
    from batchout.paths import Paths
    from batchout.stages.prepare import run as prepare

    monkeypatch.delenv("BATCHOUT_DATA_MIRROR", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    (tmp_path / "mlruns").mkdir()
    write_mnist_raw(tmp_path / "data" / "raw")
    runs = {k: v for k, v in real_params.train.runs.items() if v.dataset == "mnist" and k.endswith("-s0")}
    params = real_params.model_copy(update={
        "data": real_params.data.model_copy(
            update={"datasets": ["mnist"], "subset": Subset(train=400, val=100, test=200)}),
        "train": real_params.train.model_copy(update={"epochs": 2, "batch_size": 32, "device": "cpu",
                                                      "runs": runs, "tuned_runs": {}}),
        "attack": real_params.attack.model_copy(update={"subset": 100, "device": "cpu"}),
    })
    params = type(params).model_validate(params.model_dump())  # re-validate the shrunk copy
    paths = Paths(tmp_path)
    prepare(params.data, "mnist", paths)
    return params, paths


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: thread hand-offs cost more than the arithmetic, worse on a busy 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
