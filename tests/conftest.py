"""Shared test helpers: the real params.yaml shrunk to tiny sizes (``tiny_params``, the
``tiny_project`` fixture), synthetic MNIST (``synthetic_digits``, ``write_mnist_raw``), the offline
data mirror, one thread for tiny tensors, and MLflow stores that later test modules never log into
(``own_store``, ``repo_store``; the ``store`` and ``client`` fixtures).

Usage: a test takes ``tiny_project``, ``mirror`` or ``one_thread`` as an argument; helper modules
and tests import the rest (``from conftest import tiny_params, write_mnist_raw``; tests/ is on
sys.path under pytest).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from batchout.config import Params, load_params, parse_params
from batchout.paths import run_name, split_run

REPO = Path(__file__).resolve().parents[1]
TINY_SUBSET = {"train": 400, "val": 100, "test": 200}


def tiny_params(*, runs: Iterable[str] | None = None, subset: dict[str, int] = TINY_SUBSET, epochs: int = 2,
                eval_batch_size: int | None = None, attack_subset: int = 100, eps: list[float] | None = None,
                attacks: dict[str, dict] | None = None, checks_subset: int | None = None,
                tune: dict[str, Any] | None = None, source: Path = REPO / "params.yaml") -> dict[str, Any]:
    """The real params.yaml document shrunk for tests, so that they follow its other settings.

    Always: MNIST only with ``subset`` images per split, ``epochs`` epochs of batch 32 on the CPU,
    no tuned runs, attacks on the CPU on ``attack_subset`` test images. ``runs`` names the runs
    kept, ``<arm>-s<seed>`` (default: seed 0 of every MNIST arm); each kept arm keeps only those
    seeds. The rest is left as in params.yaml unless given:
    ``eval_batch_size``, the MNIST ``eps`` list (the only data set left), the ``attacks`` grid (without
    params.yaml's escalated attack, attack.converge.attack falls back to its default: nothing escalated), the
    sanity checks' subset (``checks_subset``) and ``tune`` settings (merged into the section).
    Returns the YAML document (a dict); ``parse_params`` turns it into Params.
    """
    doc = yaml.safe_load(source.read_text())
    doc["data"].update(datasets=["mnist"], subset=dict(subset))
    train = doc["train"]
    if runs is None:
        runs = [run_name(arm, 0) for arm, v in train["runs"].items() if v["dataset"] == "mnist"]
    wanted: dict[str, list[int]] = {}
    for run in runs:
        arm, seed = split_run(run) or (run, -1)
        if arm not in train["runs"]:  # an arm renamed in params.yaml must not silently shrink a test
            raise KeyError(f"{run}: arm {arm!r} not in {source.name}: {sorted(train['runs'])}")
        wanted.setdefault(arm, []).append(seed)
    kept = {k: {**v, "seeds": wanted[k]} for k, v in train["runs"].items() if k in wanted}  # params.yaml's order
    train.update(epochs=epochs, batch_size=32, device="cpu", tuned_runs={}, runs=kept)
    if eval_batch_size is not None:
        train["eval_batch_size"] = eval_batch_size
    attack = doc["attack"]
    attack.update(device="cpu", subset=attack_subset)
    if eps is not None:
        attack["eps"] = {"mnist": list(eps)}
    if attacks is not None:
        attack["attacks"] = attacks
        if attack.get("converge", {}).get("attack") not in (None, *attacks):
            # params.yaml names its ensemble as the escalated attack; a grid without it escalates nothing
            del attack["converge"]["attack"]
    if checks_subset is not None:
        attack["checks"]["subset"] = checks_subset
    doc["tune"].update(tune or {})
    return doc


def converge_doc(eps: Iterable[float], acc: Iterable[float], n: int, *, converged: bool | Iterable[bool] = True,
                 factor: int = 2, tolerance: int = 1) -> dict[str, Any]:
    """An attack record's ``converge`` entry (``batchout.evaluation.record``): at each eps the worst case
    ``acc`` after ``log2(factor)`` escalation rounds, converged (or not, per eps), n attacked points."""
    eps = list(eps)
    flags = [converged] * len(eps) if isinstance(converged, bool) else list(converged)
    rounds = factor.bit_length()  # round 0 and one per doubling
    per_eps = {}
    for e, a, ok in zip(eps, acc, flags, strict=True):
        left = round(a * n)
        per_eps[f"eps_{e:.4f}"] = {
            "converged": ok, "factor": factor, "budget": f"budget {factor}x", "settings": None, "acc": a,
            "passes": {"forward": 100 * n * rounds, "backward": 50 * n * rounds},
            "rounds": [{"budget": f"budget {2 ** i}x", "attacked": left, "broken": 0 if ok or i == 0 else 3,
                        "acc": a, "passes": {"forward": 100 * n, "backward": 50 * n}} for i in range(rounds)]}
    return {"attack": "autoattack", "tolerance": tolerance,
            "cap": {"steps": 100, "n_targets": 9, "n_queries": 5000, "restarts": 4}, "eps": per_eps}


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


def write_mnist_idx(folder: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                    gz: bool = False) -> None:
    """Images and labels as MNIST IDX files (torchvision's raw names, ``.gz`` with ``gz``) in ``folder``."""
    from batchout.data.formats import MNIST_FILES, write_idx

    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    for split, (x, y) in (("train", train), ("test", test)):
        images, labels = MNIST_FILES[split]
        write_idx(folder / f"{images}{ext}", x)
        write_idx(folder / f"{labels}{ext}", y)


def write_mnist_raw(raw_dir: Path, n_train: int = 600, n_test: int = 200) -> None:
    """A raw folder in torchvision's MNIST/raw IDX layout, with synthetic digits."""
    write_mnist_idx(raw_dir / "MNIST" / "raw", synthetic_digits(n_train, 1), synthetic_digits(n_test, 2))


@pytest.fixture
def tiny_project(tmp_path, monkeypatch):
    """``tiny_params()`` (2 epochs on 400 synthetic MNIST digits, CPU), a prepared data set and an
    MLflow store, all under tmp_path. Returns (params, paths)."""
    from batchout.paths import Paths
    from batchout.stages.prepare import run as prepare

    monkeypatch.delenv("BATCHOUT_DATA_MIRROR", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    (tmp_path / "mlruns").mkdir()
    write_mnist_raw(tmp_path / "data" / "raw")
    params = parse_params(tiny_params())
    paths = Paths(tmp_path)
    prepare(params.data, "mnist", paths)
    return params, paths


@pytest.fixture(scope="session")
def e2e_project(tmp_path_factory):
    """One tiny project reproduced end to end by ``dvc repro`` (standard, BatchOut and FGSM-trained MNIST runs,
    FGSM and an escalated AutoAttack cascade), shared by the tests that only read its outputs or undo what
    they change (tests/test_views.py, tests/test_dvc_rerun.py): one repro instead of one per module. A test
    that changes it for good works on ``dvc_project.copy_project`` of it."""
    from dvc_project import E2E_ATTACKS, E2E_CONVERGE, E2E_RUNS, make_project, project_params

    params = project_params(E2E_RUNS, attacks=E2E_ATTACKS, converge=E2E_CONVERGE)
    proj = make_project(tmp_path_factory.mktemp("e2e") / "repo", runs=E2E_RUNS, params=params)
    proj.dvc("repro", timeout=900)
    return proj


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: thread hand-offs cost more than the arithmetic, worse on a busy 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """No mirror unless a test sets one; the official download is replaced by a recorder that fails."""
    from batchout.data import sources

    monkeypatch.delenv(sources.MIRROR_ENV, raising=False)
    calls: list[tuple] = []

    def no_network(*args):
        calls.append(args)
        raise OSError("offline in tests")

    monkeypatch.setattr(sources, "download", no_network)
    return calls


@pytest.fixture
def mnist_raw(tmp_path: Path) -> Path:
    from raw_data import MNIST_TEST, MNIST_TRAIN, write_mnist

    write_mnist(tmp_path / "data/raw/MNIST/raw", MNIST_TRAIN, MNIST_TEST)
    return tmp_path


@contextlib.contextmanager
def own_store(root: Path) -> Iterator[None]:
    """Stages run in-process on a project at ``root``: its own SQLite store (``root/mlruns``), no data
    mirror; MLflow's URI is reset on exit so later test modules do not log into it."""
    import mlflow

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("BATCHOUT_DATA_MIRROR", raising=False)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlruns/mlflow.db")
        try:
            yield
        finally:
            mlflow.set_tracking_uri(None)


@contextlib.contextmanager
def repo_store(root: Path) -> Iterator[SimpleNamespace]:
    """The project's default store under ``root`` (no MLFLOW_TRACKING_URI), configured: ``.root``, ``.uri``."""
    import mlflow

    from batchout import tracking

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        try:
            yield SimpleNamespace(root=root, uri=tracking.configure(root))
        finally:
            mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Iterator[SimpleNamespace]:
    """The default SQLite store of a fresh project folder, one per test module (its first use runs
    MLflow's migrations, a few seconds): ``.root``, ``.uri``."""
    with repo_store(tmp_path_factory.mktemp("repo")) as made:
        yield made


@pytest.fixture
def client(store, monkeypatch):
    """An ``MlflowClient`` on the module's ``store``, MLflow configured to log there."""
    from mlflow import MlflowClient

    from batchout import tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.configure(store.root) == store.uri  # another test may have pointed MLflow elsewhere
    return MlflowClient(store.uri)
