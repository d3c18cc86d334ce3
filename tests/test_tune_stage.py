"""The real tune stage (training, PGD scoring, MLflow, worker processes) on a tiny generated
prepared data set, and its helpers.

Usage: ``.venv/bin/pytest tests/test_tune_stage.py`` (add ``-m 'not slow'`` to skip the worker processes)
"""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
import torch
import yaml
from mlflow import MlflowClient
from optuna.pruners import BasePruner
from tune_toy import make_params

from batchout import tracking, tuning
from batchout.data.prepare import channel_stats, write_prepared
from batchout.errors import BatchoutError
from batchout.paths import Paths
from batchout.stages import tune as stage
from batchout.training.loop import Split


# ---------------------------------------------------------------- stage helpers
def test_trial_config_needs_no_train_run():
    params = make_params(method="batchout_final", layers=["fc1"], seed=7, epochs=3)
    assert params.train.runs == {} and params.train.tuned_runs == {}
    cfg = stage.trial_config(params, 0.3, 0.05)
    assert (cfg.dataset, cfg.model, cfg.method, cfg.seed, cfg.epochs) == ("toy", "lenet", "batchout_final", 7, 3)
    assert (cfg.batchout.k, cfg.batchout.n, cfg.batchout.layers) == (0.3, 0.05, ["fc1"])
    assert cfg.batch_size == 32 and cfg.optimizer == params.train.optimizer and cfg.device == "cpu"


def test_subsets_are_seeded():
    val = Split(torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1), torch.arange(100))
    a, b = stage.subset_of(val, 10, 3), stage.subset_of(val, 10, 3)
    assert len(a) == 10 and torch.equal(a.y, b.y) and torch.equal(a.x.flatten().long(), a.y)
    assert not torch.equal(a.y, stage.subset_of(val, 10, 4).y)
    assert len(stage.subset_of(val, 500, 0)) == 100


def test_per_epoch_value_rule():
    """Per-epoch robust values when the first round costs at most an epoch's passes: 100 points x APGD-CE 5
    steps (10 passes each) against 2 passes per training image."""
    p = make_params(val_subset=100, attack={"apgd_ce": {"steps": 5}, "apgd_t": False, "fab_t": False, "square": False})
    assert stage.robust_each_epoch(p, 500) and not stage.robust_each_epoch(p, 499)
    assert stage.first_round_passes({"apgd_ce": {"steps": 10}, "apgd_t": {"steps": 10, "n_targets": 3},
                                     "fab_t": False, "square": {"n_queries": 100}}) == 20 + 60 + 100
    assert not stage.robust_each_epoch(make_params(objective="clean"), 10**6)


def test_study_name_tracks_what_a_trial_measures():
    sha = {"x_train.npy": "aa"}
    base = stage.study_name(make_params(), sha)
    assert base.startswith("batchout-k-n-")
    assert stage.study_name(make_params(n_trials=50), sha) == base  # more trials: same study
    assert stage.study_name(make_params(k={"low": 0.5, "high": 1.0}), sha) != base
    assert stage.study_name(make_params(), {"x_train.npy": "bb"}) != base


def test_study_name_changes_with_the_measurement(monkeypatch):
    """Trials scored in train mode (before the eval-mode fix) must not be resumed as comparable."""
    sha = {"x_train.npy": "aa"}
    base = stage.study_name(make_params(), sha)
    monkeypatch.setattr(stage, "MEASUREMENT", stage.MEASUREMENT - 1)
    assert stage.study_name(make_params(), sha) != base


# ---------------------------------------------------------------- the real stage on tiny generated data
def _toy_split(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """8x8 grey images: class c has a bright band at rows 2c..2c+2 (learnable in one epoch)."""
    y = (np.arange(n) % 3).astype(np.int64)
    x = rng.integers(0, 60, (n, 1, 8, 8)).astype(np.uint8)
    for c in range(3):
        x[y == c, 0, 2 * c : 2 * c + 3, 1:7] += 150
    return x, y


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Prepared toy data (the loader's format) and one MLflow store shared by the module."""
    base = tmp_path_factory.mktemp("tune")
    rng = np.random.default_rng(0)
    splits = {"train": _toy_split(rng, 192), "val": _toy_split(rng, 96), "test": _toy_split(rng, 30)}
    mean, std = channel_stats(splits["train"][0])
    meta = {"format": 1, "name": "toy", "classes": ["a", "b", "c"], "num_classes": 3, "shape": [1, 8, 8],
            "counts": {s: len(v[1]) for s, v in splits.items()}, "mean": mean, "std": std}
    write_prepared(base / "prepared" / "toy", splits, meta)
    uri = f"sqlite:///{(base / 'mlruns' / 'mlflow.db').as_posix()}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        tracking.configure(base)  # the one-off migrations, once
        yield SimpleNamespace(base=base, uri=uri)
        mlflow.set_tracking_uri(None)  # later modules must not log into this store


@pytest.fixture
def repo(toy, tmp_path, monkeypatch) -> Paths:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", toy.uri)  # spawned workers inherit it
    shutil.copytree(toy.base / "prepared", tmp_path / "data" / "prepared")
    return Paths(tmp_path)


def _runs(uri: str, study_name: str) -> tuple:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tune-toy")
    parents = [r for r in client.search_runs([exp.experiment_id], f"attributes.run_name = '{study_name}'")
               if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    children = client.search_runs([exp.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'")
    return parents[0], children


def test_stage_trains_scores_logs_and_resumes(repo, toy):
    params = make_params(study_name="t-stage", pruner="none", n_trials=2)
    best = stage.run(params, repo)
    on_disk = yaml.safe_load((repo.tune_dir / "best.yaml").read_text())
    assert on_disk == best and best["finished_trials"] == 2
    assert 0.1 <= best["k"] <= 1.0 and 0.01 <= best["n"] <= 0.5
    assert 0.0 <= best["robust_acc"] <= best["clean_acc"] <= 1.0 and best["value"] == best["robust_acc"]
    assert best["clean_acc"] > 0.6  # the toy task is learnable: scoring really ran a trained model
    plots = sorted(p.name for p in (repo.tune_dir / "plots").iterdir())
    assert plots == ["contour_k_n.png", "optimization_history.png", "param_importances.png", "slice_k_n.png",
                     "trials.csv"]  # the report's tuning landscape

    again = stage.run(params, repo, n_trials=3)  # continue the same study: one more trial
    assert again["finished_trials"] == 3 and again["study"] == best["study"]
    parent, children = _runs(toy.uri, "t-stage")
    assert parent.info.status == "FINISHED" and parent.data.params["study"] == best["study"]
    assert sorted(int(c.data.params["trial"]) for c in children) == [0, 1, 2]
    for child in children:
        assert set(child.data.params) >= {"k", "n", "trial"} and child.data.tags["optuna.state"] == "COMPLETE"
        assert child.data.metrics["robust_acc"] == pytest.approx(child.data.metrics["value"])
    first = next(c for c in children if c.data.params["trial"] == str(best["trial"]))
    assert float(first.data.params["k"]) == pytest.approx(best["k"])
    history = MlflowClient(toy.uri).get_metric_history(first.info.run_id, "intermediate_value")
    assert sorted(m.step for m in history) == [1, 2]


class PruneLaterTrials(BasePruner):
    """Prunes every trial after the first at its first report."""

    def prune(self, study, trial) -> bool:
        return trial.number > 0


def test_stage_pruned_trial_is_logged_as_pruned(repo, toy, monkeypatch):
    monkeypatch.setattr(tuning.study, "make_pruner", lambda tune: PruneLaterTrials())
    best = stage.run(make_params(study_name="t-pruned", n_trials=2), repo)
    assert (best["complete_trials"], best["pruned_trials"], best["trial"]) == (1, 1, 0)
    _, children = _runs(toy.uri, "t-pruned")
    pruned = next(c for c in children if c.data.params["trial"] == "1")
    assert pruned.info.status == "FINISHED" and pruned.data.tags["optuna.state"] == "PRUNED"
    assert "robust_acc" not in pruned.data.metrics  # never scored after its first epoch
    history = MlflowClient(toy.uri).get_metric_history(pruned.info.run_id, "intermediate_value")
    assert [m.step for m in history] == [1]


def test_stage_rejects_bad_counts(repo):
    with pytest.raises(BatchoutError, match="n_trials=0"):
        stage.run(make_params(), repo, n_trials=0)


@pytest.mark.slow
def test_two_worker_processes_share_one_journal(repo, toy):
    params = make_params(study_name="t-workers", pruner="none", epochs=1, n_trials=4)
    best = stage.run(params, repo, n_workers=2)
    spec = tuning.storage_spec(None, repo.tune_journal)
    study = tuning.open_study(best["study"], spec, params.tune)
    numbers = [t.number for t in study.get_trials()]
    assert numbers == [0, 1, 2, 3] and all(t.state.name == "COMPLETE" for t in study.get_trials())
    assert best["finished_trials"] == 4
    _, children = _runs(toy.uri, "t-workers")
    assert sorted(int(c.data.params["trial"]) for c in children) == [0, 1, 2, 3]
    assert len({c.data.tags["optuna.trial"] for c in children}) == 4


def test_a_search_may_train_on_a_seeded_subset(repo):
    """tune.train_subset: each trial trains on that many training images (the same seeded choice for every
    trial); the study's name (its fingerprint) changes with it, so a resumed study never mixes the two."""
    full = stage.make_runner(make_params(), repo, "s", "p")
    part = stage.make_runner(make_params(train_subset=50), repo, "s", "p")
    again = stage.make_runner(make_params(train_subset=50), repo, "s", "p")
    assert len(full.train) == 192 and len(part.train) == 50 and torch.equal(part.train.y, again.train.y)
    assert stage.study_name(make_params(train_subset=50), {}) != stage.study_name(make_params(), {})
