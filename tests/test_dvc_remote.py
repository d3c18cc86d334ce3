"""DVC remote storage round trip: push the prepared data and a trained model, lose the workspace
copies and the local cache, pull them back byte-identical, and find the pipeline up to date.

Usage: ``.venv/bin/pytest -q -m slow tests/test_dvc_remote.py``

Checks: ``dvc push <stages>`` fills a local-folder remote; after deleting ``data/prepared``, ``models`` and
``.dvc/cache``, ``dvc pull <stages>`` restores every output with the same sha256 as before, ``dvc status``
reports the stages up to date and ``dvc repro`` reruns nothing; ``dvc status -c`` finds cache and
remote in sync.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from dvc_project import make_project

RUN = "mnist-lenet-standard-s0"
ARM = "mnist-lenet-standard"
STAGES = ("prepare@mnist", f"train@{ARM}")
OUTPUTS = ("data/prepared/mnist", f"models/{ARM}")


def digests(root: Path) -> dict[str, str]:
    """sha256 of every file under the pipeline's cached outputs, keyed by repo-relative path."""
    out = {}
    for top in OUTPUTS:
        for path in sorted((root / top).rglob("*")):
            if path.is_file():
                out[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.mark.slow
def test_push_wipe_pull_restores_outputs_and_pipeline_is_up_to_date(tmp_path: Path) -> None:
    proj = make_project(tmp_path / "repo", runs=(RUN,))
    proj.dvc("repro", *STAGES)
    proj.commit("repro prepare and one training run")
    before = digests(proj.root)
    assert any(p.endswith(".npy") for p in before) and any(p.startswith("models/") for p in before), before

    store = tmp_path / "remote"
    proj.dvc("remote", "add", "-d", "store", store)
    pushed = proj.dvc("push", *STAGES)
    assert "pushed" in pushed, pushed
    assert any(p.is_file() for p in (store / "files" / "md5").rglob("*")), "the remote received no files"

    for name in (*OUTPUTS, ".dvc/cache"):
        shutil.rmtree(proj.root / name)
    missing = proj.dvc("status", *STAGES)
    assert "deleted" in missing, missing  # the wipe is visible to DVC before the pull

    # with targets: a bare `dvc pull` also wants outputs of stages never run here (tune/best.yaml)
    pulled = proj.dvc("pull", *STAGES)
    assert "fetched" in pulled, pulled
    assert digests(proj.root) == before
    status = proj.dvc("status", *STAGES)
    assert "Data and pipelines are up to date" in status, status
    again = proj.dvc("repro", *STAGES)
    assert "Running stage" not in again, again
    synced = proj.dvc("status", "-c", *STAGES)
    assert "in sync" in synced, synced
