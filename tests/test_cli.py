"""The command line: help works, and every user error is one line on stderr with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml


def _run(args: list[str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def _one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def test_help_lists_every_stage(repo_root):
    done = _run(["pipeline.cli", "--help"], repo_root)
    assert done.returncode == 0
    for stage in ("prepare", "train", "attack", "tune", "report"):
        assert stage in done.stdout


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["pipeline.train"], "Missing argument"),
        (["pipeline.train", "x", "--bogus"], "No such option"),
        (["pipeline.cli", "train", "mnist-lenet-standard-s0", "--params", "nope.yaml"], "params: file 'nope.yaml'"),
        (["pipeline.attack", "no-such-run"], "run: unknown value 'no-such-run'; allowed:"),
    ],
)
def test_usage_and_input_errors_are_one_line(repo_root, args, expect):
    assert expect in _one_line_error(_run(args, repo_root))


def test_bad_params_file_names_the_key(tmp_path, repo_root):
    doc = yaml.safe_load((repo_root / "params.yaml").read_text())
    doc["train"]["optimizer"]["lr"] = -1
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(doc))
    msg = _one_line_error(_run(["pipeline.train", "mnist-lenet-standard-s0", "--params", str(bad)], repo_root))
    assert "train.optimizer.lr" in msg and "greater than 0" in msg
    assert not (tmp_path / "models").exists()


def test_not_yaml_at_all(tmp_path, repo_root):
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [unclosed\n")
    msg = _one_line_error(_run(["pipeline.report", "--params", str(bad)], repo_root))
    assert "is not valid YAML" in msg


def test_ui_serves_the_project_store(tmp_path, monkeypatch):
    from pipeline.ui import ui_argv

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    argv = ui_argv(tmp_path, "127.0.0.1", 5123)
    assert argv[argv.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    assert argv[argv.index("--default-artifact-root") + 1] == (tmp_path.resolve() / "mlruns" / "artifacts").as_uri()
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and argv[-1] != "0.0.0.0"


@pytest.mark.parametrize(("env", "expect"), [
    ({"BATCHOUT_PROGRESS": "bars"}, "error: BATCHOUT_PROGRESS: got 'bars'; allowed: rich, plain, off"),
    ({"BATCHOUT_PROGRESS_INTERVAL": "-1"}, "error: BATCHOUT_PROGRESS_INTERVAL: got '-1'; allowed: seconds >= 0"),
])
def test_bad_progress_setting_is_refused_before_the_stage_runs(tmp_path, repo_root, env, expect):
    (tmp_path / "params.yaml").write_text((repo_root / "params.yaml").read_text())
    done = subprocess.run([sys.executable, "-m", "pipeline.train", "mnist-lenet-standard-s0"], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(repo_root), **env}, capture_output=True, text=True,
                          timeout=120)
    assert _one_line_error(done) == expect
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing trained, logged or written
