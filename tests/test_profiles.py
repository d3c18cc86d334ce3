"""Every profile runs end to end through ``dvc repro``, shrunk: its own arms, models, methods, attacks,
checks and escalation, on tiny generated data with tiny budgets, so that a profile cannot rot, and whoever
rents a GPU for the paper profile does not meet a wiring error hours in.

Usage: ``.venv/bin/pytest -q tests/test_profiles.py`` (slow: three throw-away DVC projects reproduced side
by side on 2 cores; the paper profile's arms split over two of them)

What shrinks: the data (synthetic MNIST digits and random CIFAR batches in their real raw formats, a few
dozen images per split), one seed per arm, one epoch, 20 attacked points at each data set's two smallest
eps, every attack's steps, targets, restarts and queries, the escalation's cap, the checks' subset and a
2-trial tune. What stays: every arm (data set, model with its model_kwargs, method, BatchOut placement and
n), every attack of the grid and the escalated one, every check. The (9,9,9) bottleneck ResNet and VGG-19
run at full depth.
"""

from __future__ import annotations

import copy
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO
from dvc_project import Project, make_project
from raw_data import write_cifar_python

pytestmark = pytest.mark.slow

TINY_BUDGET = {"steps": 2, "n_targets": 2, "restarts": 1, "n_queries": 10}  # an attack's setting -> its tiny value
TINY_CAP = {"steps": 4, "n_targets": 2, "n_queries": 20, "restarts": 1}  # the escalation: at most one round


def _tiny_attack(settings: dict[str, Any], name: str) -> dict[str, Any] | bool:
    """An attack's settings with every budget cut to TINY_BUDGET (an ensemble: each member; the standard
    version's members, given as {}, get theirs explicitly)."""
    if settings is False:
        return False
    if name == "autoattack":
        members = ("apgd_ce", "apgd_t", "fab_t", "square")
        return {m: _tiny_attack(settings.get(m, {}), m) for m in members}
    out = {k: min(v, TINY_BUDGET[k]) if k in TINY_BUDGET else v for k, v in settings.items()}
    defaults = {"apgd_ce": ("steps",), "apgd_t": ("steps", "n_targets"), "fab_t": ("steps", "n_targets"),
                "pgd": ("steps",), "pgd_dlr": ("steps",), "square": ("n_queries",)}
    return out | {k: TINY_BUDGET[k] for k in defaults.get(name, ()) if k not in out}


def _pixels(eps: float | str) -> float:
    """A budget as params.yaml writes it (0.3 or "8/255") as a number."""
    if isinstance(eps, str) and "/" in eps:
        num, den = eps.split("/")
        return float(num) / float(den)
    return float(eps)


def shrink(doc: dict[str, Any]) -> dict[str, Any]:
    """The profile's params.yaml document, shrunk as the module docstring says."""
    doc = copy.deepcopy(doc)
    doc["data"]["subset"] = {"train": 60, "val": 20, "test": 40}
    train = doc["train"]
    train.update(epochs=1, batch_size=16, eval_batch_size=100, device="cpu")
    for arms in (train["runs"], train.get("tuned_runs") or {}):
        for spec in arms.values():
            spec["seeds"] = spec["seeds"][:1]
            spec.pop("epochs", None)
    attack = doc["attack"]
    attack.update(device="cpu", subset=20, batch_size=100)
    attack["eps"] = {ds: sorted(eps, key=_pixels)[:2] for ds, eps in attack["eps"].items()}
    attack["attacks"] = {name: _tiny_attack(cfg, name) for name, cfg in attack["attacks"].items()}
    attack["checks"].update(subset=10, square_queries=10)
    # 20 points: a profile tolerance of 10 would skip every round
    attack.setdefault("converge", {}).update(cap=TINY_CAP, tolerance=1)
    tune = doc["tune"]
    tune.update(n_trials=2, epochs=1, val_subset=20, train_subset=None, pruner="none")
    tune["attack"] = _tiny_attack(tune.get("attack", {}), "autoattack")
    tune["converge"] = {"tolerance": 1, "cap": TINY_CAP}
    return doc


# Each project: a profile and the models of the arms it keeps (None: all). The paper profile's 15 arms in
# one project were the suite's critical path (504 s, the MNIST profile's project idle beside it for most
# of it): split in two, three projects share the 2 cores, and together they still hold every arm.
PARTS = {
    "mnist-paper": ("params.mnist-paper.yaml", None),
    "paper-small": ("params.paper.yaml", {"lenet", "paper_cifar"}),
    "paper-deep": ("params.paper.yaml", {"resnet_bottleneck", "vgg19"}),
}


def select(doc: dict[str, Any], models: set[str] | None) -> dict[str, Any]:
    """The arms of ``doc`` whose model is one of ``models``, and only the data sets they (and the tune) use."""
    if models is None:
        return doc
    train = doc["train"]
    for key in ("runs", "tuned_runs"):
        train[key] = {arm: spec for arm, spec in (train.get(key) or {}).items() if spec["model"] in models}
    used = {spec["dataset"] for key in ("runs", "tuned_runs") for spec in train[key].values()}
    used.add(doc["tune"]["dataset"])  # the tune stage runs in every project
    doc["data"]["datasets"] = [d for d in doc["data"]["datasets"] if d in used]
    for section, key in (("attack", "eps"), ("report", "headline_eps")):
        doc[section][key] = {d: v for d, v in (doc[section].get(key) or {}).items() if d in used}
    checks = doc["attack"]["checks"]
    checks["large_eps"] = {d: v for d, v in (checks.get("large_eps") or {}).items() if d in used}
    return doc


def build(root: Path, part: str) -> Project:
    name, models = PARTS[part]
    doc = select(shrink(yaml.safe_load((REPO / name).read_text())), models)
    proj = make_project(root, params=doc, git=True)
    if {"cifar10", "cifar3"} & set(doc["data"]["datasets"]):
        write_cifar_python(proj.root / "data" / "raw" / "cifar-10-batches-py", per_class_train=8, per_class_test=4)
    return proj


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory) -> dict[str, Project]:
    """The shrunk profiles' projects reproduced side by side: each stage is one single-threaded process
    (base_env), mostly interpreter and library start-up, so three at once keep both cores busy."""
    projects = {part: build(tmp_path_factory.mktemp(part) / "repo", part) for part in PARTS}
    with ThreadPoolExecutor(len(projects)) as pool:  # subprocess.run waits without holding the GIL
        done = {name: pool.submit(p.dvc, "repro", timeout=900) for name, p in projects.items()}
    for future in done.values():
        future.result()  # re-raises a failed repro's AssertionError with its output
    return projects


def _check(proj: Project, doc: dict[str, Any]) -> None:
    """Every arm's every seed was trained, attacked (every attack, the escalation, the checks) and reported."""
    arms = {**doc["train"]["runs"], **(doc["train"].get("tuned_runs") or {})}
    summary = json.loads((proj.root / "reports" / "summary.json").read_text())
    reported = {run for g in summary["groups"] for run in g["runs"]}
    assert reported == {f"{arm}-s{spec['seeds'][0]}" for arm, spec in arms.items()}
    for arm, spec in arms.items():
        run = f"{arm}-s{spec['seeds'][0]}"
        result = json.loads((proj.root / "results" / "attack" / arm / f"{run}.json").read_text())
        assert set(result["robust_acc"]) == {*doc["attack"]["attacks"], "worst"}
        assert result["converge"]["attack"] == doc["attack"].get("converge", {}).get("attack", "autoattack")
        assert set(result["converge"]["eps"]) == set(result["robust_acc"]["worst"])
        assert "monotone_ok" in result["checks"] and "vanishing_gradient" in result["checks"]
    assert (proj.root / "reports" / "report.md").read_text().startswith("# ")


@pytest.mark.parametrize("part", PARTS)
def test_the_profile_runs_end_to_end_shrunk(reproduced, part):
    proj = reproduced[part]
    _check(proj, yaml.safe_load((proj.root / "params.yaml").read_text()))


def test_the_projects_together_hold_every_arm_of_every_profile():
    for name in {profile for profile, _ in PARTS.values()}:
        doc = yaml.safe_load((REPO / name).read_text())
        arms = {*doc["train"]["runs"], *(doc["train"].get("tuned_runs") or {})}
        held = [{*d["train"]["runs"], *d["train"]["tuned_runs"]}
                for d in (select(shrink(doc), models) for profile, models in PARTS.values() if profile == name)]
        assert set().union(*held) == arms and sum(map(len, held)) == len(arms), name  # each arm exactly once
