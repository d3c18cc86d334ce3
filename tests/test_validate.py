"""The validate stage: a key no stage reads is still refused, by ``dvc repro`` itself, before any work.

Each stage lists only the params it reads, so a typo (``train.epoch``) or an unknown key would be read
by nobody and ``dvc repro`` would say "up to date". The validate stage depends on the whole file.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from dvc_project import VENV_BIN, make_project
from typer.testing import CliRunner

from batchout.paths import Paths
from batchout.stages.validate import MARKER_TEXT


def _cli(*args: str):
    from pipeline.cli import app

    return CliRunner().invoke(app, list(args))


def _write(path: Path, doc: dict) -> None:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_valid_params_write_the_constant_marker(repo_root: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "params.yaml", yaml.safe_load((repo_root / "params.yaml").read_text()))
    done = _cli("validate")
    assert done.exit_code == 0, done.output
    assert Paths(tmp_path).params_valid.read_text() == MARKER_TEXT
    assert "valid (10 arms, 30 runs" in done.stdout


@pytest.mark.parametrize(("section", "key", "closest"), [("train", "epoch", "epochs"), ("data", "no_such_key", None)])
def test_a_typo_is_one_line_exit_2_and_writes_nothing(repo_root, tmp_path, monkeypatch, section, key, closest):
    monkeypatch.chdir(tmp_path)
    doc = yaml.safe_load((repo_root / "params.yaml").read_text())
    doc[section][key] = 3
    _write(tmp_path / "params.yaml", doc)
    done = _cli("validate")
    assert done.exit_code == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {section}.{key}: unknown key"), done.stderr
    if closest:
        assert f"did you mean '{closest}'" in lines[0]
    assert not Paths(tmp_path).params_valid.exists()


@pytest.mark.slow
def test_dvc_repro_refuses_a_typo_before_anything_runs(tmp_path: Path) -> None:
    proj = make_project(tmp_path / "repo")
    params = proj.root / "params.yaml"
    doc = yaml.safe_load(params.read_text())
    doc["train"]["epoch"] = 5  # meant train.epochs: a key no stage lists
    _write(params, doc)
    start = time.monotonic()
    done = proj.sh(VENV_BIN / "dvc", "repro", check=False)
    seconds = time.monotonic() - start
    text = done.stdout + done.stderr
    assert done.returncode != 0, text
    assert "train.epoch: unknown key; did you mean 'epochs'?" in text, text
    assert seconds < 10, seconds
    assert "Running stage 'prepare@mnist'" not in text and not (proj.root / "data" / "prepared").exists()
    assert not (proj.root / "models").exists()


@pytest.mark.slow
def test_a_valid_edit_reruns_only_the_stages_that_read_it(tmp_path: Path) -> None:
    proj = make_project(tmp_path / "repo")
    proj.dvc("repro", "prepare@mnist")
    proj.commit("validated and prepared")
    params = proj.root / "params.yaml"
    doc = yaml.safe_load(params.read_text())
    doc["report"]["title"] = "another title"  # read by the report stage only
    _write(params, doc)
    status = proj.dvc("status", "--with-deps", "prepare@mnist")
    assert "validate:" in status and "prepare@mnist:" not in status, status  # prepare reads no report key
    proj.dvc("repro", "validate")
    assert "up to date" in proj.dvc("status", "--with-deps", "prepare@mnist")  # the marker did not change
