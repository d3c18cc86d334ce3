"""The model registry: which run each alias picks (pure), idempotent registration on a real SQLite
store, and end to end: a tiny run trained, attacked and reported, then loaded back through
``mlflow.pyfunc.load_model("models:/batchout-mnist@best-robust")``.

Usage: ``.venv/bin/pytest tests/test_registry.py`` (``-m "not slow"`` skips the end-to-end part)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import torch
from conftest import tiny_params, write_mnist_raw
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from torch import nn

from batchout import tracking
from batchout.config import Params, parse_params
from batchout.io import eps_key
from batchout.paths import Paths
from batchout.reporting.groups import RunRecord
from batchout.reporting.registry_pick import BEST_ROBUST, TUNED, Pick, pick, registered_name

EPS = 0.1
NAME = "batchout-registry-test"


def rec(name: str, robust: float | None, clean: float, *, flagged: bool = False, run_id: str | None = "auto",
        dataset: str = "mnist") -> RunRecord:
    worst = {} if robust is None else {eps_key(EPS): robust}
    checks = {"monotone_ok": not flagged, "suspected_gradient_masking": flagged}
    train = {"test_acc": clean, "mlflow_run_id": f"id-{name}" if run_id == "auto" else run_id}
    return RunRecord(name, dataset, "lenet", name.split("-")[2], "x", train, {"robust_acc": {"worst": worst},
                                                                            "checks": checks})


# ---------------------------------------------------------------- which run gets which alias (pure)
def test_best_robust_ranks_worst_case_then_clean_then_order():
    records = [rec("mnist-lenet-standard-s0", 0.50, 0.99), rec("mnist-lenet-batchout-s0", 0.60, 0.97),
               rec("mnist-lenet-batchout-s1", 0.60, 0.98), rec("mnist-lenet-batchout-s2", 0.60, 0.98)]
    chosen = pick(records, {"mnist": EPS}, tuned_arms=())["mnist"]
    # 0.60 beats 0.50 whatever the clean accuracy; s1 and s2 tie on both: the first one wins
    assert chosen[BEST_ROBUST] == Pick("mnist-lenet-batchout-s1", "id-mnist-lenet-batchout-s1", EPS, 0.60, 0.98)
    assert chosen[TUNED] is None  # no tuned arm configured


def test_flagged_and_unregistrable_runs_are_never_picked():
    records = [rec("mnist-lenet-adversarial-s0", 0.95, 0.99, flagged=True),  # masked: its 0.95 is not trusted
               rec("mnist-lenet-standard-s1", 0.90, 0.99, run_id=None),  # no MLflow run id to register
               rec("mnist-lenet-standard-s2", None, 0.99),  # not attacked at the headline eps
               rec("mnist-lenet-standard-s0", 0.20, 0.98)]
    assert pick(records, {"mnist": EPS}, ())["mnist"][BEST_ROBUST].run == "mnist-lenet-standard-s0"
    assert pick(records[:3], {"mnist": EPS}, ())["mnist"] == {BEST_ROBUST: None, TUNED: None}


def test_tuned_alias_picks_among_tuned_arms_per_data_set():
    records = [rec("mnist-lenet-batchout-s0", 0.70, 0.98), rec("mnist-lenet-batchout_tuned-s0", 0.40, 0.97),
               rec("mnist-lenet-batchout_tuned-s1", 0.50, 0.96), rec("cifar3-lenet-batchout_tuned-s0", 0.30, 0.70,
                                                                        dataset="cifar3")]
    tuned = {"mnist-lenet-batchout_tuned", "cifar3-lenet-batchout_tuned"}
    chosen = pick(records, {"mnist": EPS, "cifar3": EPS}, tuned)
    assert chosen["mnist"][BEST_ROBUST].run == "mnist-lenet-batchout-s0"
    assert chosen["mnist"][TUNED].run == "mnist-lenet-batchout_tuned-s1"
    assert chosen["cifar3"][BEST_ROBUST].run == chosen["cifar3"][TUNED].run == "cifar3-lenet-batchout_tuned-s0"
    assert set(pick(records, {"cifar3": EPS}, tuned)) == {"cifar3"}  # no headline eps: no alias to move
    assert registered_name("cifar3") == "batchout-cifar3"


# ---------------------------------------------------------------- registering (a real SQLite store)
class TinyNet(nn.Module):
    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def _trained(name: str, seed: int, times: int = 1) -> str:
    with tracking.start_run("registry-test", name) as log:
        for _ in range(times):  # a re-scored run logs its (same) model again
            log.log_model(TinyNet(seed))
    return log.run_id


def _aliased(client: MlflowClient, alias: str) -> str | None:
    try:
        return client.get_model_version_by_alias(NAME, alias).run_id
    except MlflowException:
        return None


def test_registration_is_idempotent_and_aliases_move(client, monkeypatch):
    a, b = _trained("a", 0, times=2), _trained("b", 1)
    first = tracking.register(a, NAME, [BEST_ROBUST], tags={"run": "a"})
    assert first == {"name": NAME, "version": 1, "run_id": a, "aliases": [BEST_ROBUST], "created": True}
    assert tracking.register(a, NAME, [BEST_ROBUST])["created"] is False  # a `dvc repro` of the report
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 1
    newest = max(client.search_logged_models([client.get_run(a).info.experiment_id], f"source_run_id = '{a}'"),
                 key=lambda m: m.creation_timestamp)
    version = client.get_model_version(NAME, "1")
    assert version.source == f"models:/{newest.model_id}" and version.tags == {"run": "a"}
    assert json.loads(newest.tags["mlflow.modelVersions"]) == [{"name": NAME, "version": 1}]

    rows = tracking.set_aliases(NAME, {BEST_ROBUST: {"run_id": b, "run": "b"}, TUNED: {"run_id": a, "run": "a"}})
    assert [(r["alias"], r["version"], r["run"]) for r in rows] == [(BEST_ROBUST, 2, "b"), (TUNED, 1, "a")]
    assert (_aliased(client, BEST_ROBUST), _aliased(client, TUNED)) == (b, a)  # moved; a keeps @tuned
    tracking.set_aliases(NAME, {BEST_ROBUST: {"run_id": b, "run": "b"}, TUNED: None})
    assert (_aliased(client, BEST_ROBUST), _aliased(client, TUNED)) == (b, None)  # nobody qualifies: dropped
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 2

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    served = mlflow.pyfunc.load_model(tracking.model_uri(NAME, BEST_ROBUST))
    x = np.random.default_rng(0).random((5, 4), dtype=np.float32)
    np.testing.assert_allclose(served.predict(x), TinyNet(1)(torch.from_numpy(x)).detach().numpy(), atol=1e-6)


def test_runs_the_store_cannot_register_are_skipped(client):
    no_model = _trained("no-model", 0, times=0)
    rows = tracking.set_aliases("batchout-nowhere", {BEST_ROBUST: {"run_id": "0" * 32, "run": "ghost"},
                                                     TUNED: {"run_id": no_model, "run": "no-model"}})
    assert "not found in this store" in rows[0]["skipped"] and "version" not in rows[0]
    assert "no logged model named 'model'" in rows[1]["skipped"]
    assert client.search_registered_models("name = 'batchout-nowhere'") == []  # nothing half-created


# ---------------------------------------------------------------- end to end: train, attack, report, load
RUN = "mnist-lenet-standard-s0"


@dataclass
class Project:
    root: Path
    params: Params
    train: dict[str, Any]
    report: dict[str, Any]

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.root}/mlruns/mlflow.db"


@pytest.fixture(scope="module")
def project(tmp_path_factory, one_thread) -> Project:
    """One tiny run (2 epochs on 400 synthetic digits) trained, attacked (FGSM at 2 eps on 50 images)
    and reported in a fresh store, with system metrics sampled every 0.2 s (the run lasts ~1-2 s)."""
    from batchout.stages import attack, report, train
    from batchout.stages.prepare import run as prepare

    root = tmp_path_factory.mktemp("registered").resolve()
    params = parse_params(tiny_params(runs=(RUN,), attack_subset=50, eps=[0.1, 0.3], checks_subset=20,
                                      attacks={"fgsm": {}}))
    write_mnist_raw(root / "data" / "raw")
    paths = Paths(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("BATCHOUT_DATA_MIRROR", raising=False)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlruns/mlflow.db")
        mp.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
        try:
            prepare(params.data, "mnist", paths)
            trained = train.run(params, RUN, paths)[RUN]
            attack.run(params, RUN, paths)
            yield Project(root, params, trained, report.run(params, paths))
        finally:
            mlflow.set_tracking_uri(None)


@pytest.mark.slow  # ~20 s: a fresh store's migrations, then train, attack and report on 2 cores
def test_report_registers_the_run_and_it_reproduces_its_test_accuracy(project, monkeypatch):
    from batchout.data.loader import load_split

    best, tuned = project.report["registry"]["mnist"]
    assert best["alias"] == BEST_ROBUST and best["run"] == RUN and best["version"] == 1
    assert best["run_id"] == project.train["mlflow_run_id"]
    assert tuned == {"alias": TUNED, "name": "batchout-mnist", "run": None}  # no tuned arm in these params
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    tracking.configure(project.root)  # the env var (the project's store) wins over the root
    model = mlflow.pyfunc.load_model("models:/batchout-mnist@best-robust")
    x, y = load_split(Paths(project.root).prepared("mnist"), "test")
    logits = model.predict(x.numpy().astype(np.float32) / 255)  # [0, 1] pixels, N x C x H x W
    assert logits.shape == (len(y), 10) and logits.dtype == np.float32
    logged = MlflowClient(project.uri).get_run(best["run_id"]).data.metrics["test_acc"]
    assert float((logits.argmax(1) == y.numpy()).mean()) == pytest.approx(logged, abs=1e-6)


@pytest.mark.slow
def test_trained_run_has_dataset_inputs_and_system_metrics(project):
    from batchout.data.loader import load_meta
    from batchout.tracking.datasets import split_digest

    meta = load_meta(Paths(project.root).prepared("mnist"))
    run = MlflowClient(project.uri).get_run(project.train["mlflow_run_id"])
    inputs = {json.loads(i.dataset.profile)["split"]: i.dataset for i in run.inputs.dataset_inputs}
    assert sorted(inputs) == ["test", "train", "val"]
    for split, ds in inputs.items():
        profile = json.loads(ds.profile)
        assert ds.name == "mnist" and ds.digest == split_digest(meta, split)
        assert profile["examples"] == meta["counts"][split] and profile["sha256"][f"x_{split}.npy"] == \
            meta["sha256"][f"x_{split}.npy"]
        assert json.loads(ds.source) == {"uri": "data/prepared/mnist"}
    assert "data_sha256" not in run.data.tags  # the inputs replace the old tag
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(run.data.metrics)


@pytest.mark.slow
def test_rerunning_the_report_adds_no_version(project, monkeypatch):
    from batchout.stages import report

    monkeypatch.setenv("MLFLOW_TRACKING_URI", project.uri)
    again = report.run(project.params, Paths(project.root))
    assert again["registry"] == project.report["registry"]
    assert len(MlflowClient(project.uri).search_model_versions("name = 'batchout-mnist'")) == 1
