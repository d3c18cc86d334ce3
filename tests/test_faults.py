"""Crash safety: train, attack and tune SIGKILLed at seeded-random moments, then rerun, end exactly
where an uninterrupted run ends (metrics, files, MLflow runs, Optuna trials).

Usage: ``.venv/bin/pytest -q tests/test_faults.py`` (all slow: each stage runs 5 times as a subprocess)

Each stage runs once uninterrupted in one copy of a tiny project (the reference, timed), and in
another copy is started and SIGKILLed ``KILLS`` times at moments drawn (seeded) within the
reference's duration, then run to completion. CPU runs are bit-exact, so accuracies must be equal.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, tiny_params, write_mnist_raw
from mlflow import MlflowClient
from tune_toy import CHEAP_ATTACK, CHEAP_CONVERGE

from batchout.config import parse_params
from batchout.paths import Paths
from batchout.stages.prepare import run as prepare
from batchout.training.checkpoint import load_model

pytestmark = pytest.mark.slow

RUN = "mnist-lenet-standard-s0"
KILLS = 3
TIMEOUT_S = 300
PNG_HEAD, PNG_TAIL = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"


# ---------------------------------------------------------------- project and subprocesses
def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "BATCHOUT_DATA_MIRROR"}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{root}/mlruns/mlflow.db"
    env["OMP_NUM_THREADS"] = "1"  # 2 shared cores; also fixes the reduction order in every copy
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "src"), env.get("PYTHONPATH", "")])
    return env


def _run(args: list[str], root: Path) -> float:
    """Run ``python -m args`` in ``root`` to completion; return its wall time in seconds."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", *args], cwd=root, env=_env(root), capture_output=True,
                          text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    return time.perf_counter() - started


def _kill_then_finish(args: list[str], root: Path, seconds: float, seed: int) -> list[float]:
    """Start and SIGKILL the stage ``KILLS`` times at seeded moments within ``seconds``, then run it
    to completion; return the moments (s) at which a kill landed (an attempt may finish first)."""
    rng = random.Random(seed)
    landed = []
    for attempt in range(KILLS):
        delay = rng.uniform(0.25, 0.85) * seconds
        with open(root / f"attempt-{attempt}.log", "w") as log:
            proc = subprocess.Popen([sys.executable, "-m", *args], cwd=root, env=_env(root), stdout=log, stderr=log)
            try:
                assert proc.wait(timeout=delay) == 0, (root / f"attempt-{attempt}.log").read_text()[-3000:]
                break  # this attempt finished before its kill: the stage is done (as DVC would record it)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()  # reaped: its pid is really gone, as after a crash
                landed.append(round(delay, 2))
    else:
        _run(args, root)
    assert landed, f"no kill landed within {seconds:.1f} s; the stage ran faster than its reference"
    return landed


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A tiny project: synthetic MNIST prepared, shrunk params.yaml (600 training images, 5 epochs,
    FGSM and PGD-5 at 2 eps, a 3-trial tune), an initialised MLflow store."""
    root = tmp_path_factory.mktemp("base")
    write_mnist_raw(root / "data" / "raw", n_train=800, n_test=300)
    params = parse_params(tiny_params(
        runs=(RUN,), subset={"train": 600, "val": 100, "test": 200}, epochs=5, attack_subset=60, eps=[0.1, 0.3],
        attacks={"fgsm": {}, "pgd": {"steps": 5, "restarts": 1}}, checks_subset=30,
        tune={"n_trials": 3, "epochs": 2, "val_subset": 100, "attack": CHEAP_ATTACK, "converge": CHEAP_CONVERGE}))
    prepare(params.data, "mnist", Paths(root))
    (root / "params.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
    (root / "mlruns").mkdir()
    # Create the schema once (MLflow's ~100 migrations), so every copy's timings are comparable.
    code = "from batchout import tracking; tracking.configure()"
    subprocess.run([sys.executable, "-c", code], cwd=root, env=_env(root), check=True, timeout=TIMEOUT_S)
    return root


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="module")
def train_ref(base, tmp_path_factory) -> tuple[Path, float]:
    root = _copy(base, tmp_path_factory.mktemp("train") / "ref")
    return root, _run(["pipeline.train", RUN], root)


# ---------------------------------------------------------------- checks on what a run left
def _debris(root: Path, folders: list[str]) -> list[str]:
    """Hidden or temporary leftovers (``.x.tmp``, ``.plots.old``) under the output folders."""
    bad = []
    for folder in folders:
        for path in (root / folder).rglob("*"):
            if path.name.startswith(".") or path.name.endswith((".tmp", ".old")):
                bad.append(str(path.relative_to(root)))
    return bad


def _csv(path: Path, drop: set[str] = frozenset()) -> list[dict[str, str]]:
    rows = list(csv.DictReader(path.read_text().splitlines()))
    assert rows and all(None not in r and None not in r.values() for r in rows), f"{path} is ragged"
    return [{k: v for k, v in r.items() if k not in drop} for r in rows]


def _png_ok(path: Path) -> bool:
    data = path.read_bytes()
    return data.startswith(PNG_HEAD) and data.endswith(PNG_TAIL)


def _runs(root: Path, experiment: str) -> list:
    client = MlflowClient(f"sqlite:///{root}/mlruns/mlflow.db")
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r} in {root}"
    return client.search_runs([exp.experiment_id], max_results=1000)


def _one_finished(runs: list, name: str):
    """The single FINISHED run named ``name``; every other attempt must be KILLED or FAILED."""
    mine = [r for r in runs if r.info.run_name == name]
    statuses = sorted(r.info.status for r in mine)
    assert statuses.count("FINISHED") == 1, f"{name}: {statuses}"
    assert set(statuses) <= {"FINISHED", "KILLED", "FAILED"}, f"{name}: {statuses}"
    return next(r for r in mine if r.info.status == "FINISHED")


def _history(root: Path, run_id: str, key: str) -> dict[int, float]:
    client = MlflowClient(f"sqlite:///{root}/mlruns/mlflow.db")
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


# ---------------------------------------------------------------- the stages
TIMING = {"wall_seconds", "images_per_s", "epoch_seconds", "mlflow_run_id", "seconds"}


def _drop(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in TIMING}


def test_train_killed_three_times_ends_like_uninterrupted(train_ref, base, tmp_path):
    ref, seconds = train_ref
    root = _copy(base, tmp_path / "kill")
    landed = _kill_then_finish(["pipeline.train", RUN], root, seconds, seed=11)
    p, r = Paths(root), Paths(ref)
    got, want = json.loads(p.train_metrics(RUN).read_text()), json.loads(r.train_metrics(RUN).read_text())
    assert _drop(got) == _drop(want), landed
    assert _csv(p.train_curve(RUN), TIMING) == _csv(r.train_curve(RUN), TIMING)
    model, cfg, _ = load_model(p.model_dir(RUN) / "model.pt")
    ref_model, _, _ = load_model(r.model_dir(RUN) / "model.pt")
    assert cfg.name == RUN
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref_model.state_dict().values(),
                                                 strict=True))
    assert _png_ok(p.model_dir(RUN) / "curves.png")
    assert _debris(root, ["models", "results", "plots"]) == []
    assert sorted(x.name for x in (root / "checkpoints").glob("*/*")) == ["last.pt"]  # the final epoch's, kept
    runs = _runs(root, "mnist")
    assert all(x.info.status != "RUNNING" for x in runs)
    finished = _one_finished(runs, RUN)
    assert finished.info.run_id == got["mlflow_run_id"]
    ref_id = want["mlflow_run_id"]
    assert _history(root, finished.info.run_id, "val_acc") == _history(ref, ref_id, "val_acc")


def test_attack_killed_three_times_ends_like_uninterrupted(train_ref, tmp_path):
    trained, _ = train_ref
    ref = _copy(trained, tmp_path / "ref")
    seconds = _run(["pipeline.attack", RUN], ref)
    root = _copy(trained, tmp_path / "kill")
    landed = _kill_then_finish(["pipeline.attack", RUN], root, seconds, seed=12)
    p, r = Paths(root), Paths(ref)
    got, want = json.loads(p.attack_metrics(RUN).read_text()), json.loads(r.attack_metrics(RUN).read_text())
    assert _drop(got) == _drop(want), landed
    assert _csv(p.attack_curve(RUN)) == _csv(r.attack_curve(RUN))
    assert _debris(root, ["models", "results", "plots"]) == []
    runs = _runs(root, "mnist")
    assert [x.info.status for x in runs] == ["FINISHED"]  # robustness goes into the training run, no new run
    (ref_run,) = _runs(ref, "mnist")
    key = next(k for k in ref_run.data.metrics if k.startswith("robust_acc.pgd"))
    assert runs[0].data.metrics[key] == ref_run.data.metrics[key]


def _study_rows(root: Path) -> tuple[list[tuple], list]:
    """(state, k, n, value) of every finished trial in order, and all trials, from the journal."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(root / "tune" / "optuna.journal")))
    (summary,) = optuna.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(deepcopy=False)
    rows = [(t.state.name, t.params["k"], t.params["n"], t.value) for t in trials
            if t.state.name in ("COMPLETE", "PRUNED")]
    return rows, trials


def test_tune_killed_three_times_ends_like_uninterrupted(base, tmp_path):
    ref = _copy(base, tmp_path / "ref")
    seconds = _run(["pipeline.tune"], ref)
    root = _copy(base, tmp_path / "kill")
    landed = _kill_then_finish(["pipeline.tune"], root, seconds, seed=13)
    n_trials = yaml.safe_load((root / "params.yaml").read_text())["tune"]["n_trials"]
    got = yaml.safe_load((root / "tune" / "best.yaml").read_text())
    want = yaml.safe_load((ref / "tune" / "best.yaml").read_text())
    same = ("k", "n", "value", "clean_acc", "robust_acc", "objective", "study", "finished_trials",
            "complete_trials", "pruned_trials")
    assert {k: got[k] for k in same} == {k: want[k] for k in same}, landed
    rows, trials = _study_rows(root)
    ref_rows, _ = _study_rows(ref)
    assert rows == ref_rows and len(rows) == n_trials  # same proposals, in the same order, same values
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED", "FAIL"}  # nothing RUNNING or WAITING
    plots = sorted((root / "tune" / "plots").glob("*.png"))
    assert plots and all(_png_ok(f) for f in plots)
    def finished(csv: Path) -> list[list[str]]:  # a killed trial is re-queued under a new number
        rows = [line.split(",")[1:] for line in csv.read_text().splitlines()[1:]]
        return sorted(r for r in rows if r[0] in ("complete", "pruned"))

    assert finished(root / "tune" / "plots" / "trials.csv") == finished(ref / "tune" / "plots" / "trials.csv")
    assert _debris(root, ["tune"]) == []
    runs = _runs(root, "tune-mnist")
    assert all(x.info.status != "RUNNING" for x in runs)
    _one_finished(runs, "batchout-k-n")
    finished_children = sorted(x.info.run_name for x in runs if x.info.status == "FINISHED"
                               and x.info.run_name != "batchout-k-n")
    numbers = [t.number for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert finished_children == sorted(f"{got['study']}-trial-{n}" for n in numbers)  # one per trial, no duplicates
