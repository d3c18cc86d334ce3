"""``dvc repro prepare`` in a throw-away copy of the repository, on the real data mirror.

Usage: ``BATCHOUT_DATA_MIRROR=<mirror folder> .venv/bin/pytest tests/test_prepare_dvc.py -q -m slow``

Checks the real data sets' sizes before the split (MNIST 60000/10000, CIFAR-10 50000/10000,
CIFAR3 15000/3000), that a second repro runs nothing, and that ``dvc status`` is clean.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXPECTED = {"mnist": (60000, 10000), "cifar10": (50000, 10000), "cifar3": (15000, 3000)}
BUDGET_S = 300  # wall-clock guard; about 1-2 min on 2 idle cores (extracting and decoding 60000 JPEGs)


def _sh(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def _copy_repo(repo_root: Path, dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("pipeline", "src"):
        shutil.copytree(repo_root / name, dest / name, ignore=ignore)
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        if (repo_root / name).is_file():
            shutil.copy(repo_root / name, dest / name)


@pytest.mark.slow
def test_dvc_repro_prepare_on_the_mirror(repo_root: Path, mirror: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    venv_bin = str(Path(sys.executable).parent)
    env = dict(
        os.environ,
        PATH=f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        PYTHONPATH=f"{repo / 'src'}{os.pathsep}{repo}",  # run the copied code, not the checkout's
        BATCHOUT_DATA_MIRROR=str(mirror),
        DVC_NO_ANALYTICS="1",
        GIT_CONFIG_GLOBAL=str(tmp_path / "gitconfig"),
    )
    dvc = [str(Path(venv_bin) / "dvc")]
    _sh(["git", "init", "-q"], repo, env)
    _sh([*dvc, "init", "-q"], repo, env)
    shutil.copy(repo_root / ".dvc/config", repo / ".dvc/config")
    _sh([*dvc, "config", "--local", "core.site_cache_dir", str(tmp_path / "dvc-site")], repo, env)
    _sh([*dvc, "config", "--local", "core.check_update", "false"], repo, env)
    _copy_repo(repo_root, repo)

    start = time.monotonic()
    _sh([*dvc, "repro", "prepare"], repo, env)
    first_s = time.monotonic() - start
    for name, (n_train, n_test) in EXPECTED.items():
        meta = json.loads((repo / "data/prepared" / name / "meta.json").read_text())
        assert meta["source_counts"] == {"train": n_train, "test": n_test}, name
        assert meta["num_classes"] == (3 if name == "cifar3" else 10)
    assert json.loads((repo / "data/prepared/cifar3/meta.json").read_text())["classes"] == [
        "airplane",
        "automobile",
        "bird",
    ]

    again = _sh([*dvc, "repro", "prepare"], repo, env)
    assert "Running stage" not in again, again
    status = _sh([*dvc, "status", "prepare"], repo, env)
    assert "up to date" in status, status
    elapsed = time.monotonic() - start
    print(f"dvc repro prepare: first {first_s:.0f} s, total {elapsed:.0f} s")
    assert elapsed < BUDGET_S, f"took {elapsed:.0f} s; budget {BUDGET_S} s"
