"""Tracking metadata that needs no MLflow store: the repository root (also inside DVC's temporary
experiment copies), param flattening, metric names, provenance tags.

Usage: ``.venv/bin/pytest tests/test_tracking_meta.py``
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from batchout import tracking
from batchout.errors import BatchoutError


def test_repo_root_inside_dvc_temp_copy_is_original_repo(tmp_path, monkeypatch):
    work = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "abc"
    work.mkdir(parents=True)
    (work / ".git").mkdir()  # the temp copy is itself a git checkout; it must not win
    assert tracking.repo_root(work) == tmp_path / "repo"
    monkeypatch.chdir(work)
    assert tracking.repo_root() == tmp_path / "repo"


def test_repo_root_nearest_marker_else_cwd(tmp_path, monkeypatch):
    (tmp_path / "r" / ".dvc").mkdir(parents=True)
    (tmp_path / "r" / "a" / "b").mkdir(parents=True)
    assert tracking.repo_root(tmp_path / "r" / "a" / "b") == tmp_path / "r"
    (tmp_path / "bare" / "x").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "bare")
    assert tracking.repo_root(tmp_path / "bare" / "x") == tmp_path / "bare"


# ---------------------------------------------------------------- pure helpers
def test_flatten_nested_params():
    flat = tracking.flatten({"train": {"lr": 0.1, "sched": {"kind": "cos"}}, "seed": 0, "ks": [1, 2]})
    assert flat == {"train.lr": "0.1", "train.sched.kind": "cos", "seed": "0", "ks": "[1, 2]"}
    assert tracking.flatten({"a": {"b": 1}}, prefix="p.") == {"p.a.b": "1"}


def test_metric_key_formats_eps_and_rejects_bad_parts():
    assert tracking.metric_key("robust_acc", "pgd", eps=0.0196) == "robust_acc.pgd.eps_0.0196"
    assert tracking.metric_key("robust_acc", "pgd", eps=8 / 255, steps=40) == "robust_acc.pgd.eps_0.0314.steps_40"
    assert tracking.metric_key("acc", eps=0) == tracking.metric_key("acc", eps=0.0) == "acc.eps_0.0000"
    assert tracking.metric_key("acc", eps=np.float32(0.0196)) == "acc.eps_0.0196"
    with pytest.raises(BatchoutError, match="metric key part 'a:b'"):
        tracking.metric_key("a:b")


def test_run_tags_git_and_dvc_exp_name(repo_root, tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "exp-abc")
    tags = tracking.run_tags(repo_root, extra={"device": "cpu"})
    head = subprocess.run(["git", "-C", str(repo_root), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert tags["git.commit"] == head.stdout.strip() and len(tags["git.commit"]) == 40
    assert tags["git.dirty"] in {"true", "false"}
    assert tags["dvc.exp_name"] == "exp-abc" and tags["device"] == "cpu" and tags["host"]
    monkeypatch.delenv("DVC_EXP_NAME")
    bare = tracking.run_tags(tmp_path)
    assert "dvc.exp_name" not in bare and bare["git.commit"] == "unknown"
