"""Browsing and serving runs end to end: ``batchout ui`` over MLflow's REST API and in headless
Chromium, and the train + attack CLI logging to a real ``mlflow server`` (or refusing a dead one).

Usage: ``pytest -q tests/test_serve.py`` (all slow: real servers and interpreters; the Chromium test
skips without a ``chromium`` binary). Set BATCHOUT_TEST_ARTIFACTS=<dir> to keep the UI screenshot.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from browser import browse, chromium
from conftest import REPO, own_store, tiny_params, write_mnist_raw
from servers import Server, free_port, get, get_json, launch, port_open, post_json, start_server

from batchout.config import Params, parse_params
from batchout.paths import Paths

RUN = "mnist-lenet-standard-s0"
SHARE_KEY = "batchout-robust"  # the UI's own "share view" mechanism: an experiment tag holds the view
pytestmark = pytest.mark.slow


@dataclass
class Project:
    root: Path
    params: Params
    train: dict[str, Any]  # the train stage's returned metrics (holds mlflow_run_id)
    attack: dict[str, Any]  # the attack stage's returned result

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.root}/mlruns/mlflow.db"


def env_for(uri: str | None) -> dict[str, str]:
    """A child's environment: this store (None: none named), no data mirror, one thread (2 shared cores)."""
    env = {k: v for k, v in os.environ.items() if k not in ("BATCHOUT_DATA_MIRROR", "MLFLOW_TRACKING_URI")}
    path = os.pathsep.join([str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")])
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=path.rstrip(os.pathsep))
    return env if uri is None else {**env, "MLFLOW_TRACKING_URI": uri}


@pytest.fixture(scope="module")
def project(tmp_path_factory, one_thread) -> Project:
    """One tiny trained and attacked run in a SQLite store, built in-process once for the module:
    the tiny project's params with one run and a 2-eps FGSM/PGD-3 grid on 50 images (seconds on a CPU)."""

    from batchout.paths import Paths
    from batchout.stages import attack, train
    from batchout.stages.prepare import run as prepare

    root = tmp_path_factory.mktemp("served").resolve()
    params = parse_params(tiny_params(runs=(RUN,), attack_subset=50, eps=[0.1, 0.3], checks_subset=20,
                                      attacks={"fgsm": {}, "pgd": {"steps": 3, "restarts": 1}}))
    write_mnist_raw(root / "data" / "raw")
    paths = Paths(root)
    with own_store(root):
        prepare(params.data, "mnist", paths)
        trained = train.run(params, RUN, paths)[RUN]
        attacked = attack.run(params, RUN, paths)[RUN]
    return Project(root, params, trained, attacked)


@pytest.fixture(scope="module")
def ui_server(project) -> Server:
    """``python -m pipeline.ui`` on the project's store, cwd = the project (as a user runs it)."""
    port = free_port()
    argv = [sys.executable, "-m", "pipeline.ui", "--host", "127.0.0.1", "--port", str(port)]
    server = launch(argv, port, log=project.root / "ui.log", env=env_for(project.uri), cwd=project.root)
    yield server
    server.stop()
    server.kill_leftovers()


def robust_metrics(result: dict[str, Any]) -> dict[str, float]:
    """``robust_acc.<attack>.eps_<eps>`` -> accuracy, from the attack stage's result."""
    return {f"robust_acc.{atk}.{key}": acc for atk, accs in result["robust_acc"].items() for key, acc in accs.items()}


def experiment_id(base: str, name: str) -> str:
    found = get_json(f"{base}/api/2.0/mlflow/experiments/search", {"max_results": 100})["experiments"]
    return next(e["experiment_id"] for e in found if e["name"] == name)


# ---------------------------------------------------------------- 1. batchout ui over REST
def test_ui_serves_run_metrics_and_artifacts(project, ui_server):
    url_line = ui_server.output().splitlines()[0]
    assert url_line.startswith(f"MLflow UI for {project.uri} at {ui_server.url} "), url_line
    api = f"{ui_server.url}/api/2.0/mlflow"
    exp_id = experiment_id(ui_server.url, "mnist")
    runs = post_json(f"{api}/runs/search", {"experiment_ids": [exp_id]})["runs"]
    assert [r["info"]["run_name"] for r in runs] == [RUN]
    run = runs[0]
    assert run["info"]["run_id"] == project.train["mlflow_run_id"] and run["info"]["status"] == "FINISHED"
    served = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    expected = robust_metrics(project.attack)
    assert set(expected) == {f"robust_acc.{a}.eps_{e}" for a in ("fgsm", "pgd", "worst") for e in ("0.1000", "0.3000")}
    assert {k: served[k] for k in expected} == pytest.approx(expected, abs=1e-9)
    assert served["test_acc"] == pytest.approx(project.train["test_acc"])
    # the checks' numbers beside their tags (the more-iterations drop, a fraction of the check points)
    assert served["check.more_iterations_drop"] == pytest.approx(project.attack["checks"]["more_iterations_drop"])
    # run artifacts: the training curves and the attack's plot and json, byte for byte
    run_id = run["info"]["run_id"]
    listed = get_json(f"{api}/artifacts/list", {"run_id": run_id, "path": "robustness"})["files"]
    png = f"robustness/robustness-{RUN}.png"
    assert {f["path"] for f in listed} == {"robustness/attack.json", png}
    status, body = get(f"{ui_server.url}/get-artifact?" + f"path={png}&run_uuid={run_id}")
    assert status == 200 and body.startswith(b"\x89PNG")
    status, body = get(f"{ui_server.url}/get-artifact?path=robustness/attack.json&run_uuid={run_id}")
    assert status == 200 and json.loads(body)["robust_acc"] == project.attack["robust_acc"]
    top = {f["path"] for f in get_json(f"{api}/artifacts/list", {"run_id": run_id})["files"]}
    assert {"config.json", "plots", "robustness"} <= top
    # the model: an MLflow 3 logged model of this run, its MLmodel and pickled weights served
    models = post_json(f"{api}/logged-models/search", {"experiment_ids": [exp_id]})["models"]
    assert [m["info"]["source_run_id"] for m in models] == [run_id]
    model_id = models[0]["info"]["model_id"]
    files = get_json(f"{api}/logged-models/{model_id}/artifacts/directories")["files"]
    assert {"MLmodel", "data"} <= {f["path"] for f in files}
    status, body = get(f"{ui_server.url}/ajax-api/2.0/mlflow/logged-models/{model_id}/artifacts/files"
                       "?artifact_file_path=MLmodel")
    assert status == 200 and b"pytorch" in body and b"pickle" in body


# ---------------------------------------------------------------- 2. the rendered UI, in Chromium
def share_view(base: str, exp_id: str, metric: str) -> str:
    """Store a runs-table view (the metric as a column, sorted by it) the way the UI's Share button
    does, as an experiment tag; returns the runs page URL that opens it."""
    column = f"metrics.`{metric}`"
    state = {"selectedColumns": [column], "orderByKey": column, "orderByAsc": False}
    post_json(f"{base}/api/2.0/mlflow/experiments/set-experiment-tag",
              {"experiment_id": exp_id, "key": f"mlflow.sharedViewState.{SHARE_KEY}", "value": json.dumps(state)})
    return f"{base}/#/experiments/{exp_id}/runs?viewStateShareKey={SHARE_KEY}"


def ui_number(value: float) -> str:
    """MLflow's Utils.formatMetric for 0.001 <= |value| < 10: rounded to 3 decimals, no trailing zeros."""
    return f"{round(value * 1000) / 1000:g}"


def test_ui_runs_table_shows_robust_accuracy_in_chromium(project, ui_server, tmp_path):
    binary = chromium()
    metric = "robust_acc.pgd.eps_0.3000"
    value = robust_metrics(project.attack)[metric]
    page = share_view(ui_server.url, experiment_id(ui_server.url, "mnist"), metric)
    done = browse(binary, page, tmp_path / "profile", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    text = re.sub(r"<[^>]+>", "\n", re.sub(r"<(script|style)\b.*?</\1>", "", done.stdout, flags=re.S))
    cells = [c.strip() for c in text.splitlines() if c.strip()]
    assert "Training runs" in cells and RUN in cells, cells[:80]
    assert metric in cells, "the robust-accuracy column is missing from the runs table"
    assert ui_number(value) in cells[cells.index(RUN):], f"{metric}={ui_number(value)} not in the run's row"
    shot = tmp_path / "ui-runs-table.png"
    done = browse(binary, page, tmp_path / "profile2", f"--screenshot={shot}")
    assert shot.is_file() and shot.read_bytes().startswith(b"\x89PNG"), done.stderr[-2000:]
    assert shot.stat().st_size > 20_000  # a blank or error page compresses to a few kB
    if os.environ.get("BATCHOUT_TEST_ARTIFACTS"):
        keep = Path(os.environ["BATCHOUT_TEST_ARTIFACTS"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, keep / shot.name)


# ---------------------------------------------------------------- stopping the UI
def test_ui_stops_with_its_workers_on_sigterm(ui_server):
    assert ui_server.proc.poll() is None, "the UI died early:\n" + ui_server.output()[-2000:]
    ui_server.proc.send_signal(signal.SIGTERM)  # the pid `batchout ui` started as, as a service manager would
    try:
        ui_server.proc.wait(20)
    except subprocess.TimeoutExpired:
        pytest.fail("the UI ignored SIGTERM for 20 s")
    # the exec'd MLflow passes SIGTERM on to uvicorn: nothing keeps listening, nothing is left behind
    deadline = time.monotonic() + 10
    while (port_open(ui_server.port) or group_alive(ui_server.proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not port_open(ui_server.port), "a UI worker survived its parent and still serves"
    assert not group_alive(ui_server.proc.pid), "processes of the UI's session survived it"


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)  # signal 0: only asks whether any process of the group exists
    except ProcessLookupError:
        return False
    return True


# ---------------------------------------------------------------- 3. a real tracking server
def write_params(root: Path, params: Params) -> Path:
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
    return path


def cli(root: Path, uri: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=root, env=env_for(uri), capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def client_root(project, tmp_path) -> Path:
    """A fresh project folder: the prepared data and the params file, nothing else."""
    root = tmp_path / "client"
    shutil.copytree(project.root / "data" / "prepared", root / "data" / "prepared")
    write_params(root, project.params)
    return root


def test_cli_logs_train_and_attack_to_a_tracking_server(client_root, tmp_path):
    from mlflow import MlflowClient

    port, store, dest = free_port(), tmp_path / "server", tmp_path / "server" / "artifacts"
    dest.mkdir(parents=True)
    argv = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{store}/mlflow.db", "--artifacts-destination", dest.as_uri()]
    env = {**env_for(None), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with start_server(argv, port, log=store / "server.log", env=env, cwd=store) as server:
        for stage in ("pipeline.train", "pipeline.attack"):
            done = cli(client_root, server.url, stage, RUN, "--params", "params.yaml")
            assert done.returncode == 0, done.stderr[-3000:]
        client = MlflowClient(tracking_uri=server.url)
        exp = client.get_experiment_by_name("mnist")
        (run,) = client.search_runs([exp.experiment_id])
        metrics_file = json.loads(Paths(client_root).train_metrics(RUN).read_text())
        attack_file = json.loads(Paths(client_root).attack_metrics(RUN).read_text())
        assert run.info.run_id == metrics_file["mlflow_run_id"] and run.info.status == "FINISHED"
        assert run.data.params["epochs"] == "2" and run.data.params["method"] == "standard"
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert [m.step for m in history] == [1, 2] and all(0.0 <= m.value <= 1.0 for m in history)
        assert history[-1].value == pytest.approx(metrics_file["val_acc"])
        expected = robust_metrics(attack_file)
        assert {k: run.data.metrics[k] for k in expected} == pytest.approx(expected, abs=1e-9)
        (model,) = client.search_logged_models([exp.experiment_id])
        assert model.source_run_id == run.info.run_id
        assert exp.artifact_location.startswith("mlflow-artifacts:")  # uploads go through the server
    # the bytes live under the server's --artifacts-destination, none on the client's side
    landed = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    assert any(p.endswith(f"{run.info.run_id}/artifacts/robustness/robustness-{RUN}.png") for p in landed), landed
    assert any(p.endswith(f"{run.info.run_id}/artifacts/plots/curves.png") for p in landed), landed
    assert any(p.endswith(f"{model.model_id}/artifacts/MLmodel") for p in landed), landed
    assert any(p.endswith(f"{model.model_id}/artifacts/data/model.pth") for p in landed), landed
    assert not (client_root / "mlruns").exists() and not (client_root / "mlartifacts").exists()


def test_cli_refuses_a_dead_tracking_server_in_seconds(client_root):
    port = free_port()  # nothing listens there
    started = time.monotonic()
    done = cli(client_root, f"http://127.0.0.1:{port}", "pipeline.train", RUN, "--params", "params.yaml", timeout=60)
    elapsed = time.monotonic() - started
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith(f"error: MLflow tracking server http://127.0.0.1:{port} is unreachable")
    assert elapsed < 15, f"took {elapsed:.1f} s to give up"
    written = ("models", "results", "metrics", "plots", "checkpoints", "mlruns")
    assert not any((client_root / d).exists() for d in written)
