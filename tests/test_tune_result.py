"""``tune/best.yaml``: written only through its schema, and a missing, damaged or hand-edited file is
refused in one line naming the file and the key, by the library and by ``batchout train``.

Usage: ``.venv/bin/pytest tests/test_tune_result.py -q``
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from batchout.config.tuned import read_tune_result, write_tune_result
from batchout.errors import BatchoutError

BEST = {"trial": 2, "k": 0.4, "n": 0.1, "clean_acc": 0.95, "robust_acc": 0.7, "value": 0.7, "objective": "robust",
        "study": "batchout-k-n-abc", "finished_trials": 6, "complete_trials": 5, "pruned_trials": 1}


def test_round_trip(tmp_path: Path):
    path = tmp_path / "tune" / "best.yaml"
    written = write_tune_result(path, BEST)
    assert read_tune_result(path) == written and written.k == 0.4 and written.front is None
    assert "front" not in yaml.safe_load(path.read_text())  # nothing null is written


def test_a_bad_summary_is_a_bug_and_writes_nothing(tmp_path: Path):
    with pytest.raises(ValueError):
        write_tune_result(tmp_path / "best.yaml", {**BEST, "k": 1.5})
    assert not (tmp_path / "best.yaml").exists()


@pytest.mark.parametrize(("text", "message"), [
    (None, r"train.tuned_runs needs .*best.yaml, which is missing; rerun `dvc repro tune` first"),
    ("k: [", r"best.yaml: not valid YAML; rerun `dvc repro tune`"),
    ("- 1\n- 2\n", r"best.yaml: expected a mapping of the best trial's values"),
    (yaml.safe_dump({**BEST, "k": "big"}), r"best.yaml: k: Input should be a valid number.*rerun `dvc repro tune`"),
    (yaml.safe_dump({**BEST, "kk": 0.1}), r"best.yaml: kk: unknown key; did you mean 'k'\? allowed: trial, k, n"),
])
def test_damaged_files_are_refused_in_one_line(tmp_path: Path, text, message):
    path = tmp_path / "best.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(BatchoutError, match=message):
        read_tune_result(path)


def test_train_cli_refuses_a_hand_edited_best_yaml(tmp_path: Path, repo_root: Path, monkeypatch):
    from pipeline.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tune").mkdir()
    (tmp_path / "tune" / "best.yaml").write_text(yaml.safe_dump({**BEST, "n": -1}))
    name = next(iter(yaml.safe_load((repo_root / "params.yaml").read_text())["train"]["tuned_runs"]))
    result = CliRunner().invoke(app, ["train", name, "--params", str(repo_root / "params.yaml")])
    assert result.exit_code == 2, result.output
    assert "tune/best.yaml: n: Input should be greater than or equal to 0" in result.output
    assert not (tmp_path / "models").exists() and not (tmp_path / "mlruns").exists()
