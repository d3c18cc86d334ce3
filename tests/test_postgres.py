"""Optuna on PostgreSQL: two separate ``python -m pipeline.tune`` processes (as on two machines), one
of them with two local workers, share one study on a private PostgreSQL cluster.

Usage: ``.venv/bin/pytest -q -m slow tests/test_postgres.py`` (needs PostgreSQL's server binaries,
e.g. ``apt-get install postgresql``, and ``psycopg[binary]``; skipped without them)

Checks: both processes exit 0 and join the same study; the study holds exactly ``n_trials``
COMPLETE trials, numbered 0..N-1 without duplicates, with pairwise distinct (k, n); every trial has
a FINISHED MLflow child run; ``tune/best.yaml`` names the best complete trial of that study.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from dvc_project import Project, make_project
from pg import PgCluster, pg_bin

N_TRIALS = 4
TIMEOUT_S = 300  # both processes together; about 40-60 s on 2 idle cores


def _start_tune(proj: Project, url: str, n_workers: int, log: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", "pipeline.tune", "--storage", url, "--n-workers", str(n_workers)]
    return subprocess.Popen(args, cwd=proj.root, env=proj.env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _wait(procs: list[subprocess.Popen], logs: list[Path]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    try:
        for proc in procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for proc in procs:  # a hung worker must not outlive the test (nor the cluster it talks to)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, log in zip(procs, logs, strict=True):
        assert proc.returncode == 0, f"tune process exited {proc.returncode}:\n{log.read_text()[-4000:]}"


def _child_runs(proj: Project, study: str) -> dict[str, str]:
    """MLflow child runs of the study: run name -> status."""
    from mlflow import MlflowClient

    client = MlflowClient(proj.env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("tune-mnist")
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`optuna.study` = '{study}'")
    return {r.info.run_name: r.info.status for r in runs if r.data.tags.get("optuna.trial") is not None}


@pytest.mark.slow
def test_two_tune_processes_share_one_postgres_study(tmp_path: Path) -> None:
    if pg_bin() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not installed; apt-get install postgresql")
    pytest.importorskip("psycopg", reason="psycopg (v3, the PostgreSQL driver) is not installed")
    import optuna

    proj = make_project(tmp_path / "proj", git=False)
    proj.env["MLFLOW_TRACKING_URI"] = f"sqlite:///{proj.root / 'mlruns' / 'mlflow.db'}"
    proj.sh(sys.executable, "-m", "pipeline.prepare", "mnist")
    # the MLflow store exists first, as a tracking server would: otherwise the processes queue on its
    # creation lock and reach the study seconds apart, which hides races between them
    proj.sh(sys.executable, "-c", "from batchout import tracking; tracking.configure()")
    assert yaml.safe_load((proj.root / "params.yaml").read_text())["tune"]["n_trials"] == N_TRIALS

    with PgCluster.start() as pg:
        url = pg.create_db("optuna")
        logs = [tmp_path / "tune-a.log", tmp_path / "tune-b.log"]
        # process a: two local workers (spawned); process b: one; three workers, one study
        procs = [_start_tune(proj, url, 2, logs[0]), _start_tune(proj, url, 1, logs[1])]
        _wait(procs, logs)

        summaries = optuna.get_all_study_summaries(url)
        assert len(summaries) == 1, [s.study_name for s in summaries]
        study = optuna.load_study(study_name=summaries[0].study_name, storage=url)
        trials = study.get_trials(deepcopy=False)
        top = study.best_trial  # read now: the study object queries the server lazily

    assert sorted(t.number for t in trials) == list(range(len(trials)))  # unique, gap-free numbers
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") == N_TRIALS, states  # not one more: workers must not overshoot
    surplus = [t for t in trials if t.state.name != "COMPLETE"]
    # a worker that lost the race for the last slot may leave a FAIL record, but it never trained
    assert all(t.state.name == "FAIL" and not t.params for t in surplus), [(t.state, t.params) for t in surplus]
    trials = [t for t in trials if t.state.name == "COMPLETE"]
    points = {(round(t.params["k"], 9), round(t.params["n"], 9)) for t in trials}
    assert len(points) == len(trials), f"duplicated (k, n) proposals: {[t.params for t in trials]}"

    best = yaml.safe_load((proj.root / "tune" / "best.yaml").read_text())
    assert best["study"] == study.study_name
    assert best["complete_trials"] == N_TRIALS and best["pruned_trials"] == 0
    assert best["trial"] == top.number and best["value"] == pytest.approx(top.value)
    assert (best["k"], best["n"]) == pytest.approx((top.params["k"], top.params["n"]))

    children = _child_runs(proj, study.study_name)
    assert children == {f"{study.study_name}-trial-{t.number}": "FINISHED" for t in trials}
