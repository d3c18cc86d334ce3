"""Concurrent experiments: two queued ``dvc exp run`` training experiments run at once by
``dvc queue start -j 2`` and both land in the repository's own MLflow store.

Usage: ``.venv/bin/pytest -q -m slow tests/test_dvc_queue.py``

Checks: both experiments end with status Success; ``mlruns/mlflow.db`` under the repository root
(not under the temporary workspaces in ``.dvc/tmp/exps/``) holds exactly two FINISHED runs of the
queued stage, tagged with the two experiment names and carrying their different seeds; no queue
log mentions "database is locked". MLFLOW_TRACKING_URI is unset: the default store resolution is
what is tested.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from dvc_project import Project, make_project

ARM = "mnist-lenet-standard"
RUN = f"{ARM}-s0"
SEEDS = {"seed-a": 3, "seed-b": 4}
TIMEOUT_S = 360  # the queue's whole run; about 1-2 min on 2 cores
POLL_S = 3
DONE = {"Success", "Failed"}


def queue_states(proj: Project) -> dict[str, str]:
    """Experiment name -> queue status (Queued, Running, Success, Failed) from ``dvc queue status``."""
    text = proj.dvc("queue", "status")
    states = {}
    for name in SEEDS:
        match = re.search(rf"\b{name}\b.*?\b(Queued|Running|Success|Failed)\b", text)
        states[name] = match.group(1) if match else "?"
    return states


def wait_for_queue(proj: Project) -> dict[str, str]:
    """Poll until every experiment is done (overlap is not asserted: the two celery workers start
    seconds apart and a tiny training may end before the other begins)."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        states = queue_states(proj)
        if set(states.values()) <= DONE:
            return states
        time.sleep(POLL_S)
    raise AssertionError(f"queue not done after {TIMEOUT_S} s: {queue_states(proj)}")


def mlflow_runs(root: Path) -> list:
    from mlflow import MlflowClient

    db = root / "mlruns" / "mlflow.db"
    assert db.is_file(), f"no MLflow store at {db}"
    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("mnist")
    assert exp is not None, "experiment 'mnist' missing from the repository's store"
    return client.search_runs([exp.experiment_id])


@pytest.mark.slow
def test_two_queued_experiments_run_concurrently_into_the_repo_store(tmp_path: Path) -> None:
    proj = make_project(tmp_path / "repo", runs=(RUN,))
    # queued experiments run in a clone of the last commit: data/raw is git-ignored, so they must
    # find prepare@mnist done (dvc.lock committed, its output in the shared cache) and skip it
    proj.dvc("repro", "prepare@mnist")
    proj.commit("prepare mnist")
    for name, seed in SEEDS.items():
        proj.dvc("exp", "run", "--queue", "--name", name, "-S", f"train.runs.{ARM}.seeds=[{seed}]", f"train@{ARM}")
    assert set(queue_states(proj).values()) == {"Queued"}

    start = time.monotonic()
    try:
        proj.dvc("queue", "start", "-j", "2")
        states = wait_for_queue(proj)
        elapsed = time.monotonic() - start
        logs = {name: proj.dvc("queue", "logs", name) for name in SEEDS}
    finally:
        proj.dvc("queue", "stop", check=False)  # the celery workers it started
    print(f"dvc queue: 2 experiments with -j 2 in {elapsed:.0f} s")
    assert states == dict.fromkeys(SEEDS, "Success"), (states, logs)
    for name, text in logs.items():
        assert "database is locked" not in text.lower(), f"{name}:\n{text}"
        assert f"Running stage 'train@{ARM}'" in text, f"{name}:\n{text}"
        assert "Running stage 'prepare@mnist'" not in text, f"{name}:\n{text}"

    assert not list((proj.root / ".dvc" / "tmp").rglob("mlflow.db")), "a run went to a temporary store"
    runs = mlflow_runs(proj.root)
    assert len(runs) == 2, [r.info.run_name for r in runs]
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert {r.info.run_name for r in runs} == {f"{ARM}-s{seed}" for seed in SEEDS.values()}
    by_exp = {r.data.tags.get("dvc.exp_name"): r for r in runs}
    assert set(by_exp) == set(SEEDS), sorted(map(str, by_exp))
    for name, seed in SEEDS.items():
        assert by_exp[name].data.params.get("seed") == str(seed), by_exp[name].data.params
