"""`batchout doctor`: each check on tmp_path projects with monkeypatched env; no network beyond loopback.

Usage: ``pytest -q tests/test_doctor.py``
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import pytest
import yaml
from conftest import REPO, write_mnist_raw
from servers import free_port, health_server

from batchout.doctor import checks as doctor
from batchout.doctor import exit_code

GIB = 2**30


def by_name(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {c.name: c for c in checks}


def write_params(root: Path, params) -> Path:
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json")), encoding="utf-8")
    return path


@pytest.fixture
def plenty_of_disk(monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage(200 * GIB, 100 * GIB, 100 * GIB))


def test_healthy_project_has_no_failures(tiny_project, plenty_of_disk):
    params, paths = tiny_project
    write_params(paths.root, params)
    checks = by_name(doctor.run(paths.root))
    assert [c for c in checks.values() if c.status == doctor.FAIL] == []
    assert exit_code(list(checks.values())) == 0
    assert checks["prepared mnist"].status == doctor.OK
    assert "400/60/200 train/val/test images, sha256 ok" in checks["prepared mnist"].found
    assert checks["raw mnist"].found == "data/raw/MNIST/raw (mnist-idx)"
    assert checks["mlflow store"].found == f"sqlite:///{paths.root}/mlruns/mlflow.db"
    assert checks["train.device"].found == "cpu -> cpu"
    assert checks["optuna storage"].found == "journal file tune/optuna.journal"
    assert checks["dvc repo"].status == doctor.WARN  # tmp_path has no .dvc: reported, not failed
    assert checks["params"].status == doctor.OK


def test_tampered_prepared_file_fails_naming_it(tiny_project, monkeypatch):
    params, paths = tiny_project
    target = paths.prepared("mnist") / "x_test.npy"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF  # one pixel changed: same size, different sha256
    target.write_bytes(bytes(data))
    check = doctor.check_prepared(paths.root, "mnist", params.data, quick=True)  # 157 KB: hashed even when quick
    assert check.status == doctor.FAIL
    assert "data/prepared/mnist/x_test.npy: sha256 does not match meta.json" in check.found
    assert "x_train.npy" not in check.found
    assert "batchout prepare mnist" in check.advice
    monkeypatch.setattr(doctor, "QUICK_HASH_MAX_BYTES", 2**17)  # 128 KiB: x_test.npy (157 KB) now counts as big
    big = sum(p.stat().st_size > 2**17 for p in paths.prepared("mnist").glob("*.npy"))
    quick = doctor.check_prepared(paths.root, "mnist", params.data, quick=True)  # the price of --quick
    assert quick.status == doctor.OK and f"({big} file(s) over 0.125 MiB not hashed: --quick)" in quick.found
    assert doctor.check_prepared(paths.root, "mnist", params.data, quick=False).status == doctor.FAIL
    (paths.prepared("mnist") / "y_val.npy").unlink()
    assert "y_val.npy missing" in doctor.check_prepared(paths.root, "mnist", params.data, quick=True).found


def test_prepared_with_other_data_params_is_stale(tiny_project):
    params, paths = tiny_project
    other = params.data.model_copy(update={"seed": 7})
    check = doctor.check_prepared(paths.root, "mnist", other, quick=False)
    assert check.status == doctor.WARN and "stale" in check.advice


def test_missing_data_without_mirror_gives_advice(tmp_path, real_params):
    checks = [doctor.check_prepared(tmp_path, "mnist", real_params.data, quick=False),
              doctor.check_raw(tmp_path, "mnist", real_params.data, {}, prepared_ok=False), doctor.check_mirror({})]
    prepared, raw, mirror = checks
    assert prepared.status == doctor.WARN and prepared.found == "data/prepared/mnist not prepared yet"
    assert raw.status == doctor.WARN
    assert "BATCHOUT_DATA_MIRROR not set; torchvision download will be attempted (fails offline)" in raw.found
    assert raw.advice.startswith("set BATCHOUT_DATA_MIRROR to a folder with SHA256SUMS or place MNIST/raw/")
    assert raw.advice.endswith("under data/raw")
    assert mirror.status == doctor.OK and "not set" in mirror.found


def test_mirror_states(tmp_path, real_params):
    mirror = tmp_path / "mirror"
    env = {"BATCHOUT_DATA_MIRROR": str(mirror)}
    assert doctor.check_mirror(env).status == doctor.FAIL  # set to a folder that does not exist
    write_mnist_raw(mirror, n_train=20, n_test=10)
    assert doctor.check_mirror(env).status == doctor.WARN  # files but no SHA256SUMS: unverified copies
    (mirror / "SHA256SUMS").write_text("00  MNIST/raw/x\n11  MNIST/raw/y\n", encoding="utf-8")
    assert doctor.check_mirror(env).found == f"{mirror} (2 files listed in SHA256SUMS)"
    project = tmp_path / "project"
    raw = doctor.check_raw(project, "mnist", real_params.data, env, prepared_ok=False)
    assert raw.status == doctor.OK and raw.found.startswith(f"BATCHOUT_DATA_MIRROR: {mirror}/MNIST/raw")
    cifar = doctor.check_raw(project, "cifar3", real_params.data, env, prepared_ok=True)
    assert cifar.status == doctor.WARN and cifar.found.endswith("only to re-prepare")


def test_unreachable_tracking_server_fails_fast(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    check = doctor.check_tracking(tmp_path, {"MLFLOW_TRACKING_URI": uri})
    assert time.monotonic() - start < 10
    assert check.status == doctor.FAIL and check.found.startswith(f"{uri} unreachable")
    assert check.advice == "start the server or unset MLFLOW_TRACKING_URI"


def test_tracking_server_answering_health_is_ok(tmp_path):
    with health_server() as uri:
        assert doctor.check_tracking(tmp_path, {"MLFLOW_TRACKING_URI": uri}).status == doctor.OK


def test_tracking_store_local_cases(tmp_path):
    assert doctor.check_tracking(tmp_path, {}).status == doctor.OK  # mlruns/mlflow.db created on first run
    assert doctor.check_tracking(tmp_path, {"MLFLOW_TRACKING_URI": "file:///x"}).status == doctor.FAIL
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database, just sixteen+ bytes of text" * 4)
    check = doctor.check_tracking(tmp_path, {"MLFLOW_TRACKING_URI": f"sqlite:///{junk}"})
    assert check.status == doctor.FAIL and "not a usable SQLite database" in check.found


def test_invalid_params_is_a_failed_check(tmp_path, plenty_of_disk):
    (tmp_path / "params.yaml").write_text("train:\n  epochz: 3\n", encoding="utf-8")
    checks = by_name(doctor.run(tmp_path, {}))
    assert checks["params"].status == doctor.FAIL
    assert "epochz" in checks["params"].found and "\n" not in checks["params"].found
    (tmp_path / "params.yaml").write_text("train: [unclosed\n", encoding="utf-8")
    assert "not valid YAML" in doctor.check_params(tmp_path / "params.yaml")[0].found
    assert doctor.check_params(tmp_path / "nope.yaml")[0].advice.endswith("pass --params FILE")


@pytest.mark.slow  # a fresh interpreter importing torch: 3-6 s on a busy 2-core box
def test_cli_json_output_and_exit_code(tmp_path):
    (tmp_path / "params.yaml").write_text("data: {datasets: [svhn]}\n", encoding="utf-8")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlruns/mlflow.db",
           "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")])}
    env.pop("BATCHOUT_DATA_MIRROR", None)
    done = subprocess.run([sys.executable, "-m", "pipeline.doctor", "--json", "--quick"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    out = json.loads(done.stdout)
    assert done.returncode == 1 and out["ok"] is False and out["failed"] >= 1
    params = next(c for c in out["checks"] if c["name"] == "params")
    assert params["status"] == "fail" and "svhn" in params["found"]
    assert {c["status"] for c in out["checks"]} <= {"ok", "warn", "fail"}


def test_cli_healthy_project_exits_zero(tiny_project, plenty_of_disk, monkeypatch, capsys):
    from pipeline.doctor import command

    params, paths = tiny_project
    write_params(paths.root, params)
    monkeypatch.chdir(paths.root)
    command(params=Path("params.yaml"), quick=True, as_json=True)  # returns: typer.Exit(1) only on failure
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and out["failed"] == 0
    command(params=Path("params.yaml"), quick=True, as_json=False)
    table = capsys.readouterr().out
    assert "ok    prepared mnist" in table and "checks: 0 failed" in table


@pytest.mark.parametrize(("free_gib", "status"), [(0.5, doctor.FAIL), (3, doctor.WARN), (50, doctor.OK)])
def test_disk_thresholds(tmp_path, monkeypatch, free_gib, status):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage(100 * GIB, 0, int(free_gib * GIB)))
    check = doctor.check_disk(tmp_path)
    assert check.status == status
    assert check.found.startswith(f"{free_gib:.1f} GiB free")
    assert ("paper profile" in check.advice) == (status != doctor.OK)


def test_packages_and_python_against_requirements():
    checks = by_name(doctor.check_packages(["typer>=999", "torch", "no-such-dist-xyz>=1", "pytest; extra == 'dev'"]))
    assert checks["typer"].status == doctor.FAIL and "requires >=999" in checks["typer"].found
    assert "pip install -e" in checks["typer"].advice
    assert checks["torch"].status == doctor.OK
    assert checks["other packages"].status == doctor.FAIL and "no-such-dist-xyz" in checks["other packages"].found
    assert "pytest" not in checks["other packages"].found  # dev extra: not needed to run the pipeline
    requires, deps = doctor.requirements(REPO)
    assert requires == ">=3.11" and any(d.startswith("torch==") for d in deps)
    assert all(c.status == doctor.OK for c in doctor.check_packages(deps))
    assert doctor.check_python(">=99").status == doctor.FAIL


def test_device_resolution(real_params):
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the no-CUDA message; this machine has CUDA")
    asks_cuda = real_params.model_copy(update={"train": real_params.train.model_copy(update={"device": "cuda:0"})})
    checks = by_name(doctor.check_device(asks_cuda))
    assert checks["train.device"].status == doctor.FAIL and "auto" in checks["train.device"].advice
    assert checks["attack.device"].found == "auto -> cpu"


def test_tools_and_repo(tmp_path):
    checks = by_name(doctor.check_tools(tmp_path, {"PATH": str(tmp_path)}))  # no git on that PATH
    assert checks["git executable"].status == doctor.WARN
    beside_python = (Path(sys.executable).parent / "dvc").is_file()  # the venv's own bin folder counts too
    assert (checks["dvc executable"].status == doctor.OK) == beside_python
    assert checks["dvc repo"].status == doctor.WARN and "dvc init" in checks["dvc repo"].advice


def test_optuna_storage(tmp_path):
    assert doctor.check_optuna(tmp_path, None).found == "journal file tune/optuna.journal"
    assert doctor.check_optuna(tmp_path, f"sqlite:///{tmp_path}/optuna.db").status == doctor.OK
    port = free_port()
    start = time.monotonic()
    dead = doctor.check_optuna(tmp_path, f"postgresql://u:secret@127.0.0.1:{port}/optuna")
    assert time.monotonic() - start < 10
    assert dead.status == doctor.FAIL and f"127.0.0.1:{port} unreachable" in dead.found
    assert "secret" not in dead.found
    with socket.socket() as listener:  # a port that accepts: the driver is what is checked next
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        up = doctor.check_optuna(tmp_path, f"postgresql+psycopg2://u:pw@127.0.0.1:{listener.getsockname()[1]}/o")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        assert up.status == doctor.FAIL and up.advice == "pip install psycopg2-binary"
    else:
        assert up.status == doctor.OK
