"""A throw-away copy of this project (git + DVC) with a tiny params.yaml and synthetic MNIST raw data,
so that ``dvc repro prepare@mnist`` and ``dvc repro train@<run>`` take seconds.

Usage: ``proj = make_project(tmp_path / "repo"); proj.dvc("repro", "prepare@mnist")``
(``from dvc_project import make_project``; tests/ is on sys.path under pytest)

The copy holds dvc.yaml, a shrunk params.yaml, pipeline/ and src/ (dvc.yaml lists them as stage
dependencies and the stages run them: PYTHONPATH points at the copy), .gitignore/.dvcignore and
data/raw/MNIST. Commands run with the venv's bin first on PATH, a private git identity and DVC site
cache, no DVC analytics, no data mirror and no MLFLOW_TRACKING_URI (the repository's own store).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from conftest import REPO, tiny_params, write_mnist_raw
from tune_toy import CHEAP_ATTACK, CHEAP_CONVERGE

VENV_BIN = Path(sys.executable).parent
RUNS = ("mnist-lenet-standard-s0", "mnist-lenet-batchout-s0")  # the two tiny runs kept in params.yaml
# The shared end-to-end project (conftest's ``e2e_project``): one more arm, FGSM-trained, so that an edit
# of the FGSM code has a training stage to rerun (tests/test_dvc_rerun.py).
E2E_RUNS = (*RUNS, "mnist-lenet-adversarial-s0")
# its grid: FGSM and an AutoAttack cascade cheap enough for CI, escalated at most twice
E2E_ATTACKS = {"fgsm": {}, "autoattack": {"apgd_ce": {"steps": 2}, "apgd_t": {"steps": 2, "n_targets": 1},
                                          "fab_t": False, "square": {"n_queries": 10}}}
E2E_CONVERGE = {"attack": "autoattack", "tolerance": 1, "cap": {"steps": 8, "n_targets": 2, "n_queries": 40,
                                                                "restarts": 1}}
COPIED = ("dvc.yaml", ".gitignore", ".dvcignore")


def project_params(runs: tuple[str, ...] = RUNS, attacks: dict[str, dict] | None = None,
                   converge: dict[str, Any] | None = None) -> dict[str, Any]:
    """conftest's ``tiny_params`` with ``runs`` and the cheapest attack and tune that still run every
    stage: one eps on 50 images (FGSM unless ``attacks``; ``converge``: attack.converge), 20 for the sanity
    checks, a 4-trial 1-epoch unpruned tune."""
    doc = tiny_params(runs=runs, eval_batch_size=200, attack_subset=50, eps=[0.1], attacks=attacks or {"fgsm": {}},
                      checks_subset=20, tune={"n_trials": 4, "epochs": 1, "val_subset": 100, "attack": CHEAP_ATTACK,
                                              "converge": CHEAP_CONVERGE, "pruner": "none"})
    if converge is not None:
        doc["attack"]["converge"] = converge
    return doc


def base_env(tmp: Path) -> dict[str, str]:
    """The environment of every command: the venv first on PATH, one thread per process (2-core
    machines run two at once), a private git identity, no mirror, the default MLflow store."""
    gitconfig = tmp / "gitconfig"
    if not gitconfig.exists():
        gitconfig.write_text("[user]\n\tname = batchout tests\n\temail = tests@example.invalid\n"
                             "[init]\n\tdefaultBranch = main\n")
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               DVC_NO_ANALYTICS="1", GIT_CONFIG_GLOBAL=str(gitconfig), GIT_CONFIG_NOSYSTEM="1",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for name in ("MLFLOW_TRACKING_URI", "BATCHOUT_DATA_MIRROR", "DVC_EXP_NAME", "PYTHONPATH"):
        env.pop(name, None)
    return env


def copy_project(src: Path, root: Path) -> Project:
    """A copy of a built project (git, DVC cache, outputs, MLflow store) at ``root``, to change without
    touching the original (a shared fixture's)."""
    shutil.copytree(src, root, symlinks=True)
    env = base_env(root.parent)
    env["PYTHONPATH"] = os.pathsep.join(["src", "."])
    return Project(root, env)


@dataclass
class Project:
    root: Path
    env: dict[str, str]

    def sh(self, *args: str | Path, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        done = subprocess.run([str(a) for a in args], cwd=self.root, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(map(str, args))} exited {done.returncode}:\n"
                                 f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
        return done

    def dvc(self, *args: str | Path, check: bool = True, timeout: float = 300) -> str:
        done = self.sh(VENV_BIN / "dvc", *args, check=check, timeout=timeout)
        return done.stdout + done.stderr

    def git(self, *args: str) -> str:
        return self.sh("git", *args).stdout

    def commit(self, message: str) -> None:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)


def copy_sources(root: Path) -> None:
    """Copy pipeline/, src/ and the DVC and git ignore files (dvc.yaml too) from this checkout into ``root``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in ("pipeline", "src"):
        shutil.copytree(REPO / name, root / name, ignore=ignore, symlinks=True)  # method_deps/ links
    for name in COPIED:
        if (REPO / name).is_file():
            shutil.copy(REPO / name, root / name)


def make_project(root: Path, *, git: bool = True, runs: tuple[str, ...] = RUNS, params: dict | None = None) -> Project:
    """Build the copy at ``root`` (created); with ``git``, also ``git init`` + ``dvc init`` + a first
    commit, DVC's site cache kept beside ``root`` so nothing is written outside the test's folder.
    ``params``: the params.yaml document (default: ``project_params(runs)``)."""
    root.mkdir(parents=True)
    copy_sources(root)
    (root / "params.yaml").write_text(yaml.safe_dump(params or project_params(runs), sort_keys=False))
    write_mnist_raw(root / "data" / "raw", n_train=600, n_test=200)
    env = base_env(root.parent)
    # relative entries resolve against each stage's cwd: a queued experiment's workspace copy
    # (.dvc/tmp/exps/...) runs its own committed code, not the main workspace's
    env["PYTHONPATH"] = os.pathsep.join(["src", "."])
    proj = Project(root, env)
    if git:
        proj.git("init", "-q")
        proj.dvc("init", "-q")
        proj.dvc("config", "--local", "core.site_cache_dir", str(root.parent / "dvc-site"))
        proj.dvc("config", "core.analytics", "false")
        proj.dvc("config", "core.check_update", "false")
        proj.commit("tiny batchout project")
    return proj
