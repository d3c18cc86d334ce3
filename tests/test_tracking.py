"""MLflow tracking on a real temporary SQLite store: runs, statuses, resume, models, concurrency.

Usage: ``.venv/bin/pytest tests/test_tracking.py``
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow import MlflowClient
from servers import free_port, health_server
from torch import nn

from batchout import tracking
from batchout.errors import BatchoutError
from batchout.tracking.store import retry

EXP = "tracking-test"


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _status(client: MlflowClient, run_id: str) -> str:
    return client.get_run(run_id).info.status


def _runs_named(client: MlflowClient, name: str) -> list:
    exp = client.get_experiment_by_name(EXP)
    return [r for r in client.search_runs([exp.experiment_id]) if r.info.run_name == name]


# ---------------------------------------------------------------- store location
def test_configure_creates_local_store_under_root(store):
    assert store.uri == f"sqlite:///{store.root.resolve()}/mlruns/mlflow.db"
    assert (store.root / "mlruns" / "mlflow.db").is_file()
    assert (store.root / "mlruns" / "artifacts").is_dir()


def test_configure_leaves_env_var_alone_so_roots_can_change(store, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.configure(store.root) == store.uri
    assert "MLFLOW_TRACKING_URI" not in os.environ  # MLflow itself would export it
    assert tracking.tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"


def test_env_var_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/x.db")
    assert tracking.tracking_uri(tmp_path) == "sqlite:////elsewhere/x.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking.tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"


@pytest.mark.parametrize("uri", ["file:///tmp/mlruns", "./mlruns"])
def test_file_store_is_refused(monkeypatch, uri):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(BatchoutError, match="file stores are not supported"):
        tracking.configure()


def test_unreachable_server_fails_fast_with_one_line(monkeypatch):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    started = time.perf_counter()
    with pytest.raises(BatchoutError) as info:
        tracking.configure()
    assert time.perf_counter() - started < 5.0
    message = str(info.value)
    assert message.startswith(f"MLflow tracking server {uri} is unreachable: ")
    assert message.endswith("start it or unset MLFLOW_TRACKING_URI")


def test_reachable_server_passes_health_check(monkeypatch, store):
    with health_server() as uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        try:
            assert tracking.configure() == uri
            assert mlflow.get_tracking_uri() == uri
        finally:
            monkeypatch.delenv("MLFLOW_TRACKING_URI")
            tracking.configure(store.root)


def test_retry_waits_out_a_locked_database():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")
        return "ok"

    assert retry(flaky) == "ok" and len(calls) == 3

    def broken():
        calls.append(1)
        raise sqlite3.OperationalError("no such table: runs")

    calls.clear()
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        retry(broken)
    assert len(calls) == 1


# ---------------------------------------------------------------- runs
def test_tiny_training_is_logged_and_read_back(client, store, repo_root, tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "exp-tiny")
    model, x = TinyNet(), torch.randn(5, 4)
    params = {"train": {"lr": 0.1, "epochs": 3}, "model": {"name": "tiny"}, "long": "v" * 7000}
    many = {f"p{i:03d}": i for i in range(150)}  # more than one log_batch of params (limit 100)
    (tmp_path / "curve.csv").write_text("epoch,loss\n1,0.5\n")
    with tracking.start_run(EXP, "tiny-train", tags=tracking.run_tags(repo_root)) as log:
        log.log_params({**params, **many})
        for epoch in range(1, 4):
            log.log_epoch(epoch, {"loss": 1.0 / epoch, "acc": 0.3 * epoch})
        log.log_artifact(tmp_path / "curve.csv", "plots")
        log.log_dict({"lr": 0.1}, "config.json")
        uri = log.log_model(model)
    df = mlflow.search_runs(experiment_names=[EXP], filter_string="attributes.run_name = 'tiny-train'")
    assert len(df) == 1 and df["status"][0] == "FINISHED"
    assert df["params.train.lr"][0] == "0.1" and df["params.model.name"][0] == "tiny"
    assert df["params.p149"][0] == "149" and len(df["params.long"][0]) == 6000
    assert df["tags.dvc.exp_name"][0] == "exp-tiny" and len(df["tags.git.commit"][0]) == 40
    run_id = log.run_id
    history = client.get_metric_history(run_id, "loss")
    assert [m.step for m in history] == [1, 2, 3]
    assert [m.value for m in history] == pytest.approx([1.0, 0.5, 1 / 3])
    names = {a.path for a in client.list_artifacts(run_id)} | {a.path for a in client.list_artifacts(run_id, "plots")}
    assert {"config.json", "plots/curve.csv"} <= names
    artifacts = (store.root.resolve() / "mlruns" / "artifacts").as_uri()
    assert client.get_experiment_by_name(EXP).artifact_location.startswith(artifacts)
    model_id = uri.rsplit("/", 1)[-1]
    logged = client.get_logged_model(model_id)  # filed under the run's experiment and artifact store
    assert logged.experiment_id == client.get_run(run_id).info.experiment_id and logged.status == "READY"
    assert logged.artifact_location.startswith(artifacts)
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    loaded = mlflow.pytorch.load_model(uri)
    assert isinstance(loaded, nn.Module) and loaded.eval() is loaded
    torch.testing.assert_close(loaded(x), model(x))
    monkeypatch.delenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION")
    torch.testing.assert_close(tracking.load_model(uri)(x), model(x))


def test_log_artifact_folder_and_missing_path(client, tmp_path):
    (tmp_path / "figs").mkdir()
    for name in ("a.png", "b.png"):
        (tmp_path / "figs" / name).write_bytes(b"x")
    with tracking.start_run(EXP, "artifacts") as log:
        log.log_artifact(tmp_path / "figs", "plots")
        with pytest.raises(BatchoutError, match="nope.txt: does not exist"):
            log.log_artifact(tmp_path / "nope.txt")
    assert sorted(a.path for a in client.list_artifacts(log.run_id, "plots")) == ["plots/a.png", "plots/b.png"]


def test_crash_is_failed_and_resume_continues_same_run(client):
    with pytest.raises(RuntimeError, match="boom"), tracking.start_run(EXP, "resume-me") as log:
        log.log_epoch(1, {"loss": 0.9})
        raise RuntimeError("boom")
    first = log.run_id
    assert _status(client, first) == "FAILED"
    with tracking.start_run(EXP, "resume-me", resume_run_id=first, tags={"resumed": 1}) as log2:
        assert _status(client, first) == "RUNNING"
        log2.log_epoch(2, {"loss": 0.5})
    assert log2.run_id == first and _status(client, first) == "FINISHED"
    assert [m.step for m in client.get_metric_history(first, "loss")] == [1, 2]
    assert client.get_run(first).data.tags["resumed"] == "1"
    assert len(_runs_named(client, "resume-me")) == 1


def test_keyboard_interrupt_and_sigterm_are_killed(client):
    with pytest.raises(KeyboardInterrupt), tracking.start_run(EXP, "ctrl-c") as log:
        raise KeyboardInterrupt
    assert _status(client, log.run_id) == "KILLED"
    with pytest.raises(KeyboardInterrupt), tracking.start_run(EXP, "sigterm") as log2:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises long before this ends
    assert _status(client, log2.run_id) == "KILLED"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler removed again


def test_resume_of_unknown_run_starts_a_new_one(client):
    with tracking.start_run(EXP, "fresh", resume_run_id="0" * 32) as log:
        pass
    assert log.run_id != "0" * 32 and _status(client, log.run_id) == "FINISHED"


def test_log_to_run_adds_metric_and_keeps_finished(client):
    with tracking.start_run(EXP, "attacked") as log:
        log.log_metrics({"test_acc": 0.9})
    key = tracking.metric_key("robust_acc", "pgd", eps=0.0196)
    with tracking.log_to_run(log.run_id) as again:
        again.log_metrics({key: 0.42})
        again.set_tags({"attacked": "yes"})
    run = client.get_run(log.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics == {"test_acc": 0.9, key: 0.42} and run.data.tags["attacked"] == "yes"
    with pytest.raises(BatchoutError, match="MLflow run deadbeef: not found"):
        with tracking.log_to_run("deadbeef"):
            pass


def test_child_runs_with_several_open_at_once(client):
    with tracking.start_run(EXP, "study") as parent:
        with tracking.start_run(EXP, "trial-0", parent_run_id=parent.run_id) as a:
            with tracking.start_run(EXP, "trial-1", parent_run_id=parent.run_id) as b:
                b.log_metrics({"val_acc": 0.5})
            assert _status(client, b.run_id) == "FINISHED" and _status(client, a.run_id) == "RUNNING"
        assert _status(client, parent.run_id) == "RUNNING"
    for child in (a, b):
        assert client.get_run(child.run_id).data.tags["mlflow.parentRunId"] == parent.run_id
    assert _status(client, parent.run_id) == "FINISHED"


def test_mark_stale_runs_kills_other_running_runs(client):
    exp_id = client.get_experiment_by_name(EXP).experiment_id
    keep, stale, other = (client.create_run(exp_id, run_name=n).info.run_id for n in ("dup", "dup", "x"))
    assert tracking.mark_stale_runs(EXP, "dup", keep_run_id=keep) == [stale]
    assert [_status(client, r) for r in (keep, stale, other)] == ["RUNNING", "KILLED", "RUNNING"]
    assert tracking.mark_stale_runs("no-such-experiment", "dup", None) == []
    client.set_terminated(keep)
    client.set_terminated(other)


# ---------------------------------------------------------------- two processes, one SQLite file
def _worker(root: str, name: str) -> None:
    tracking.configure(Path(root))
    with tracking.start_run("concurrent", name) as log:
        for i in range(20):
            log.log_metrics({"m": float(i)}, step=i)


@pytest.mark.slow  # two spawned interpreters import torch and MLflow: ~10-20 s on 2 cores
def test_two_processes_log_into_one_sqlite_store(client, store):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(store.root), f"w{i}")) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    exp = client.get_experiment_by_name("concurrent")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["w0", "w1"]
    for r in runs:
        assert r.info.status == "FINISHED"
        assert [m.value for m in client.get_metric_history(r.info.run_id, "m")] == [float(i) for i in range(20)]


# ---------------------------------------------------------------- dataset inputs and system metrics
META = {"name": "toy", "counts": {"train": 40, "val": 5, "test": 10}, "shape": [1, 8, 8], "num_classes": 3,
        "source": {"kind": "folder", "where": "data/raw/toy"},
        "sha256": {f"{s}_{p}.npy": f"{s}{p}".ljust(64, "0") for s in "xy" for p in ("train", "val", "test")}}


def _samplers() -> list:
    return [t for t in threading.enumerate() if t.name == "SystemMetricsMonitor" and t.is_alive()]


def test_dataset_is_logged_as_one_input_per_split(client):
    from batchout.tracking.datasets import split_digest

    with tracking.start_run(EXP, "with-data") as log:
        log.log_dataset(META, "toy", "data/prepared/toy")
        log.log_dataset(META, "toy", "data/prepared/toy")  # a resumed run logs it again: no duplicate
    inputs = client.get_run(log.run_id).inputs.dataset_inputs
    by_context = {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i for i in inputs}
    assert sorted(by_context) == ["testing", "training", "validation"] and len(inputs) == 3
    train = by_context["training"].dataset
    assert train.name == "toy" and train.digest == split_digest(META, "train") and len(train.digest) == 16
    profile = json.loads(train.profile)
    assert profile["examples"] == 40 and profile["counts"] == {"train": 40, "val": 5, "test": 10}
    assert profile["sha256"] == {"x_train.npy": META["sha256"]["x_train.npy"],
                                 "y_train.npy": META["sha256"]["y_train.npy"]}
    assert json.loads(by_context["testing"].dataset.profile)["examples"] == 10
    # split digests differ, and change when a label file does
    assert len({i.dataset.digest for i in inputs}) == 3
    relabelled = {**META, "sha256": {**META["sha256"], "y_test.npy": "f" * 64}}
    assert split_digest(relabelled, "test") != split_digest(META, "test")
    assert split_digest(relabelled, "train") == split_digest(META, "train")
    source = mlflow.data.get_source(by_context["training"])  # readable through mlflow.data
    assert source.uri == "data/prepared/toy" and train.source_type == "local"


def test_short_run_logs_system_metrics_and_stops_its_sampler(client):
    with tracking.start_run(EXP, "sampled", system_metrics_s=0.2) as log:
        assert len(_samplers()) == 1
        time.sleep(1.0)
    assert _samplers() == []
    metrics = client.get_run(log.run_id).data.metrics
    for key in ("system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"):
        assert key in metrics
        assert len(client.get_metric_history(log.run_id, key)) >= 2
    assert 0 < metrics["system/system_memory_usage_megabytes"]
    with tracking.start_run(EXP, "sampled", resume_run_id=log.run_id, system_metrics_s=0.2):
        time.sleep(0.5)
    steps = [m.step for m in client.get_metric_history(log.run_id, "system/cpu_utilization_percentage")]
    assert steps == list(range(len(steps)))  # the resumed run continues the steps, it does not restart at 0


def test_sampler_stops_when_the_run_fails_or_is_killed(client):
    with pytest.raises(RuntimeError), tracking.start_run(EXP, "sampled-fail", system_metrics_s=0.2) as log:
        raise RuntimeError("boom")
    assert _samplers() == [] and _status(client, log.run_id) == "FAILED"
    with pytest.raises(KeyboardInterrupt), tracking.start_run(EXP, "sampled-term", system_metrics_s=0.2) as log:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert _samplers() == [] and _status(client, log.run_id) == "KILLED"


def test_sampling_interval_suits_short_and_long_runs():
    assert tracking.sampling_interval_s(6000 * 3) == 2.0  # quick profile: a ~6 s run gets ~3 points
    assert tracking.sampling_interval_s(49500 * 30) == 10.0  # paper MNIST: hours, a point per 10 s
