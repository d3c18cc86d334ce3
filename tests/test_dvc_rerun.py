"""Edit one source file of a finished repro and ask DVC what it would rerun: exactly the stages whose
code the edit touches. The shared end-to-end project (conftest's ``e2e_project``: standard, BatchOut and
FGSM-adversarially trained MNIST runs) is reproduced once per session; each edit is made, checked with
``dvc status --json`` and undone (DVC hashes content, so undoing it makes the project up to date again).

Usage: ``.venv/bin/pytest tests/test_dvc_rerun.py -q`` (slow: the shared project's repro, ~2 min on 2 cores)
"""

from __future__ import annotations

import json

import pytest
from dvc_project import Project

pytestmark = pytest.mark.slow

STANDARD, BATCHOUT, ADVERSARIAL = "mnist-lenet-standard", "mnist-lenet-batchout", "mnist-lenet-adversarial"
# what attacks every trained model: the attack-settings check and one attack stage per arm
ATTACKS = {"validate_attacks", f"attack@{STANDARD}", f"attack@{BATCHOUT}", f"attack@{ADVERSARIAL}"}


@pytest.fixture(scope="module")
def project(e2e_project) -> Project:
    assert _stale(e2e_project) == set()
    return e2e_project


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


def test_editing_apgd_reruns_the_attacks_and_the_tune_only(project):
    # APGD runs in no training method: no arm is retrained; the tune objective's ensemble runs APGD-CE
    assert _stale_after_editing(project, "src/batchout/attacks/apgd.py") == ATTACKS | {"tune"}


def test_editing_deepfool_reruns_the_attacks_only(project):
    # an attack no training method and no tune objective runs
    assert _stale_after_editing(project, "src/batchout/attacks/deepfool.py") == ATTACKS


def test_editing_fgsm_retrains_the_adversarial_model_but_not_the_standard_one(project):
    # FGSM adversarial training runs fgsm.py; standard training and tuning (BatchOut + APGD-CE/Square) do not
    assert _stale_after_editing(project, "src/batchout/attacks/fgsm.py") == ATTACKS | {f"train@{ADVERSARIAL}"}


def test_editing_the_raw_formats_reprepares_only(project):
    # the raw-file readers run in prepare alone; training and attacks read the prepared .npy files
    assert _stale_after_editing(project, "src/batchout/data/formats.py") == {"prepare@mnist"}
