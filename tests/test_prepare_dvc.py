"""``dvc repro prepare`` in a throw-away copy of the repository, on the real data mirror.

Usage: ``BATCHOUT_DATA_MIRROR=<mirror folder> .venv/bin/pytest tests/test_prepare_dvc.py -q -m slow``

Checks the real data sets' sizes before the split (MNIST 60000/10000, CIFAR-10 50000/10000,
CIFAR3 15000/3000), that a second repro runs nothing, and that ``dvc status`` is clean.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from dvc_project import VENV_BIN, Project, copy_sources

EXPECTED = {"mnist": (60000, 10000), "cifar10": (50000, 10000), "cifar3": (15000, 3000)}
BUDGET_S = 300  # wall-clock guard; about 1-2 min on 2 idle cores (extracting and decoding 60000 JPEGs)


@pytest.mark.slow
def test_dvc_repro_prepare_on_the_mirror(repo_root: Path, mirror: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    env = dict(
        os.environ,
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        PYTHONPATH=f"{repo / 'src'}{os.pathsep}{repo}",  # run the copied code, not the checkout's
        BATCHOUT_DATA_MIRROR=str(mirror),
        DVC_NO_ANALYTICS="1",
        GIT_CONFIG_GLOBAL=str(tmp_path / "gitconfig"),
    )
    proj = Project(repo, env)
    proj.git("init", "-q")
    proj.dvc("init", "-q")
    shutil.copy(repo_root / ".dvc/config", repo / ".dvc/config")
    proj.dvc("config", "--local", "core.site_cache_dir", str(tmp_path / "dvc-site"))
    proj.dvc("config", "--local", "core.check_update", "false")
    copy_sources(repo)
    shutil.copy(repo_root / "params.yaml", repo / "params.yaml")  # the real one: full-size data sets

    start = time.monotonic()
    proj.dvc("repro", "prepare", timeout=600)
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

    again = proj.dvc("repro", "prepare", timeout=600)
    assert "Running stage" not in again, again
    status = proj.dvc("status", "prepare", timeout=600)
    assert "up to date" in status, status
    elapsed = time.monotonic() - start
    print(f"dvc repro prepare: first {first_s:.0f} s, total {elapsed:.0f} s")
    assert elapsed < BUDGET_S, f"took {elapsed:.0f} s; budget {BUDGET_S} s"
