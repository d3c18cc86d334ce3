"""The train stage end to end on tiny synthetic MNIST: outputs, MLflow, determinism, resume."""

from __future__ import annotations

import shutil

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from batchout import tracking
from batchout.errors import BatchoutError
from batchout.io import read_json
from batchout.paths import Paths
from batchout.stages import train as train_stage
from batchout.training.checkpoint import load_model

ARM = "mnist-lenet-standard"
STD = f"{ARM}-s0"


def test_train_writes_outputs_and_learns(tiny_project):
    params, paths = tiny_project
    metrics = train_stage.train_one(params, STD, paths)
    assert metrics["test_acc"] > 0.5  # 10 bar patterns: chance is 0.1
    assert read_json(paths.train_metrics(STD)) == metrics
    curve = paths.train_curve(STD).read_text().splitlines()
    assert curve[0].startswith("epoch,") and len(curve) == 1 + params.train.epochs
    model, cfg, meta = load_model(paths.model_dir(STD) / "model.pt")
    assert cfg.name == STD and meta["num_classes"] == 10
    assert torch.load(paths.checkpoint(STD), weights_only=True)["epoch"] == params.train.epochs  # kept


def test_rerunning_a_finished_run_rescores_it_into_the_same_mlflow_run(tiny_project, capsys):
    params, paths = tiny_project
    first = train_stage.train_one(params, STD, paths)
    again = train_stage.train_one(params, STD, paths)  # as after a kill during exit, once all was written
    assert {k: again[k] for k in ("test_acc", "val_acc", "train_acc", "mlflow_run_id")} == \
        {k: first[k] for k in ("test_acc", "val_acc", "train_acc", "mlflow_run_id")}
    runs = mlflow.search_runs(experiment_names=["mnist"], filter_string=f"run_name = '{STD}'")
    assert len(runs) == 1 and runs.iloc[0]["status"] == "FINISHED"
    history = mlflow.tracking.MlflowClient().get_metric_history(first["mlflow_run_id"], "val_acc")
    assert [m.step for m in history] == list(range(1, params.train.epochs + 1))  # no epoch trained twice


def test_mlflow_run_has_params_history_artifacts_and_model(tiny_project):
    params, paths = tiny_project
    metrics = train_stage.train_one(params, STD, paths)
    runs = mlflow.search_runs(experiment_names=["mnist"], filter_string=f"run_name = '{STD}'")
    assert len(runs) == 1 and runs.iloc[0]["status"] == "FINISHED"
    run_id = runs.iloc[0]["run_id"]
    assert run_id == metrics["mlflow_run_id"]
    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.data.params["optimizer.lr"] == str(params.train.optimizer.lr)
    assert run.data.params["schedule.name"] == params.train.schedule.name
    assert len(client.get_metric_history(run_id, "val_acc")) == params.train.epochs
    assert run.data.metrics["test_acc"] == pytest.approx(metrics["test_acc"])
    names = {a.path for a in client.list_artifacts(run_id)} | {a.path for a in client.list_artifacts(run_id, "plots")}
    assert {"config.json", "plots/curves.png"} <= names
    logged = [m for m in mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")]
    assert logged, "the model is logged with mlflow.pytorch"
    model = tracking.load_model(logged[0].model_uri)
    x = torch.rand(4, 1, 28, 28)
    ours, _, _ = load_model(paths.model_dir(STD) / "model.pt")
    assert torch.allclose(model.eval()(x), ours(x), atol=1e-6)


def _fresh_root(paths: Paths, name: str) -> Paths:
    """Another project root holding only a copy of the prepared data: no model, no checkpoint, so
    the train stage trains from scratch there (a finished checkpoint would only be re-scored)."""
    other = Paths(paths.root / name)
    shutil.copytree(paths.prepared("mnist"), other.prepared("mnist"))
    return other


def _weights(paths: Paths, run: str = STD) -> dict[str, torch.Tensor]:
    model, _, _ = load_model(paths.model_dir(run) / "model.pt")
    return model.state_dict()


def test_same_seed_gives_bit_identical_metrics(tiny_project, monkeypatch):
    params, paths = tiny_project
    twin = _fresh_root(paths, "twin")
    first = train_stage.train_one(params, STD, paths)
    second = train_stage.train_one(params, STD, twin)
    assert second["mlflow_run_id"] != first["mlflow_run_id"]  # a second training run, not a re-score
    for key in ("train_acc", "val_acc", "test_acc"):
        assert first[key] == second[key]
    losses = _losses(paths.train_curve(STD).read_text())
    assert len(losses) == params.train.epochs and losses == _losses(twin.train_curve(STD).read_text())
    ours, theirs = _weights(paths), _weights(twin)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)  # bit for bit, every tensor

    # the comparison can fail: the same run with another seed ends with other weights and losses
    arm = ARM
    runs = dict(params.train.runs, **{arm: params.train.runs[arm].model_copy(update={"seeds": [0, 1]})})
    reseeded = params.model_copy(update={"train": params.train.model_copy(update={"runs": runs})})
    other = _fresh_root(paths, "other-seed")
    reads: list[str] = []
    real = train_stage.load_split
    monkeypatch.setattr(train_stage, "load_split", lambda folder, split: reads.append(split) or real(folder, split))
    both = train_stage.run(reseeded, arm, other)  # the arm: every seed, one after the other
    assert reads == ["train", "val", "test"]  # the seeds share one read (and sha256 check) of the data
    assert list(both) == [STD, f"{arm}-s1"] and both[STD]["test_acc"] == first["test_acc"]
    assert _losses(other.train_curve(STD).read_text()) == losses  # seed 0 is not disturbed by its sibling
    assert _losses(other.train_curve(f"{arm}-s1").read_text()) != losses
    assert not all(torch.equal(ours[k], w) for k, w in _weights(other, f"{arm}-s1").items())


class Crash(Exception):
    pass


def test_killed_run_resumes_to_the_same_result(tiny_project, monkeypatch):
    params, paths = tiny_project
    params = params.model_copy(update={"train": params.train.model_copy(update={"epochs": 3})})
    reference = train_stage.train_one(params, STD, paths)
    ref_curve = paths.train_curve(STD).read_text()
    paths.checkpoint(STD).unlink()  # the finished run's checkpoint: without it the next run trains anew

    real_save = train_stage.save_checkpoint
    calls = {"n": 0}

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:  # killed right after epoch 2's checkpoint
            raise Crash

    monkeypatch.setattr(train_stage, "save_checkpoint", save_then_die)
    with pytest.raises(Crash):
        train_stage.train_one(params, STD, paths)
    assert paths.checkpoint(STD).exists()
    monkeypatch.setattr(train_stage, "save_checkpoint", real_save)
    resumed = train_stage.train_one(params, STD, paths)
    for key in ("train_acc", "val_acc", "test_acc"):
        assert resumed[key] == reference[key]
    assert _losses(paths.train_curve(STD).read_text()) == _losses(ref_curve)
    runs = mlflow.search_runs(experiment_names=["mnist"], filter_string=f"run_name = '{STD}'")
    statuses = sorted(runs["status"])
    # the uninterrupted reference run, and the crashed-then-resumed run that ended FINISHED
    assert statuses == ["FINISHED", "FINISHED"]
    assert resumed["mlflow_run_id"] in set(runs["run_id"])


def _losses(csv: str) -> list[str]:
    rows = csv.splitlines()
    col = rows[0].split(",").index("train_loss")
    return [r.split(",")[col] for r in rows[1:]]


@pytest.mark.parametrize("method", ["batchout", "adversarial"])
def test_other_methods_train(tiny_project, method):
    params, paths = tiny_project
    name = f"mnist-lenet-{method}-s0"
    metrics = train_stage.train_one(params, name, paths)
    assert metrics["test_acc"] > 0.3
    _, cfg, _ = load_model(paths.model_dir(name) / "model.pt")
    assert cfg.method == method


def test_missing_prepared_data_is_one_line(tiny_project):
    params, paths = tiny_project
    shutil.rmtree(paths.prepared("mnist"))
    with pytest.raises(BatchoutError) as info:
        train_stage.train_one(params, STD, paths)
    assert "prepare" in str(info.value)
