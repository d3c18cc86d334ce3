"""Edit one source file of a finished repro and ask DVC what it would rerun: exactly the stages whose
code the edit touches (issue 21). A throw-away project (tests/dvc_project.py) with a standard and an
FGSM-adversarially trained MNIST run is reproduced once, then each edit is made, checked with
``dvc status --json`` and undone (DVC hashes content, so undoing it makes the project up to date again).

Usage: ``.venv/bin/pytest tests/test_dvc_rerun.py -q`` (slow: ~2 min on 2 cores)
"""

from __future__ import annotations

import json

import pytest
from dvc_project import Project, make_project

pytestmark = pytest.mark.slow

STANDARD, ADVERSARIAL = "mnist-lenet-standard", "mnist-lenet-adversarial"
# what attacks every trained model: the attack-settings check and one attack stage per arm
ATTACKS = {"validate_attacks", f"attack@{STANDARD}", f"attack@{ADVERSARIAL}"}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    proj = make_project(tmp_path_factory.mktemp("rerun") / "repo", runs=(f"{STANDARD}-s0", f"{ADVERSARIAL}-s0"))
    proj.dvc("repro", timeout=900)
    assert _stale(proj) == set()
    return proj


def _stale(proj: Project) -> set[str]:
    """The stages ``dvc status`` lists as changed."""
    return set(json.loads(proj.dvc("status", "--json") or "{}"))


def _stale_after_editing(proj: Project, path: str) -> set[str]:
    """Append a comment to ``path``, read what DVC would rerun, undo the edit (and check it is undone)."""
    file = proj.root / path
    text = file.read_text()
    file.write_text(text + "\n# an edit that changes nothing but the file's hash\n")
    try:
        stale = _stale(proj)
    finally:
        file.write_text(text)
    assert _stale(proj) == set(), "undoing the edit must leave the project up to date"
    return stale


def test_the_project_has_the_stages_the_assertions_name(project):
    stages = _stage_names(project)
    others = {"validate", "prepare@mnist", "tune", f"train@{STANDARD}", f"train@{ADVERSARIAL}", "report"}
    assert others | ATTACKS <= stages


def _stage_names(proj: Project) -> set[str]:
    return {line.split()[0] for line in proj.dvc("stage", "list").splitlines() if line.strip()}


def test_editing_apgd_reruns_the_attacks_only(project):
    # APGD runs in no training method and in no tuning objective: no model is retrained
    assert _stale_after_editing(project, "src/batchout/attacks/apgd.py") == ATTACKS


def test_editing_fgsm_retrains_the_adversarial_model_but_not_the_standard_one(project):
    # FGSM adversarial training runs fgsm.py; standard training and tuning (BatchOut + PGD) do not
    assert _stale_after_editing(project, "src/batchout/attacks/fgsm.py") == ATTACKS | {f"train@{ADVERSARIAL}"}


def test_editing_the_raw_formats_reprepares_only(project):
    # the raw-file readers run in prepare alone; training and attacks read the prepared .npy files
    assert _stale_after_editing(project, "src/batchout/data/formats.py") == {"prepare@mnist"}
