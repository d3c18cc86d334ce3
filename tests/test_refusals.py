"""Bad model files, checkpoints and prepared data are refused through the CLI: one line naming the
file, exit code 2, no traceback, nothing written; a checkpoint of other params is ignored instead.

Usage: ``.venv/bin/pytest -q tests/test_refusals.py``
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch
import yaml
from typer.testing import CliRunner

from batchout.config.run import resolve_run
from batchout.data.loader import load_meta
from batchout.errors import BatchoutError
from batchout.models.build import build_model
from batchout.training.checkpoint import fingerprint, restore_model, save_checkpoint, save_model
from batchout.training.loop import TrainState

STD = "mnist-lenet-standard-s0"
OTHER = "mnist-lenet-batchout-s0"
OUTPUTS = ("models", "results", "metrics", "plots", "checkpoints")


@pytest.fixture
def project(tiny_project, monkeypatch):
    """The tiny project with params.yaml in its root, as the working directory of the CLI."""
    params, paths = tiny_project
    (paths.root / "params.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
    monkeypatch.chdir(paths.root)
    return params, paths


def _cli(*args: str):
    from pipeline.cli import app

    return CliRunner().invoke(app, list(args))


def _refused(result, *words: str) -> str:
    """The one-line error of an exit-2 refusal; it must contain every one of ``words``."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _rel(path: Path, paths) -> str:
    """How the stage names ``path``: relative to the project root it runs in."""
    return str(path.relative_to(paths.root))


def _random_model_file(path: Path, params, name: str, paths) -> None:
    """An untrained but well-formed model file of run ``name`` at ``path``."""
    cfg = resolve_run(params.train, name)
    save_model(path, build_model(cfg, load_meta(paths.prepared(cfg.dataset))), cfg, load_meta(paths.prepared("mnist")))


def _no_runs(experiment: str = "mnist") -> bool:
    exp = mlflow.MlflowClient().get_experiment_by_name(experiment)
    return exp is None or not mlflow.MlflowClient().search_runs([exp.experiment_id])


# ---------------------------------------------------------------- attack: model files
def test_attack_refuses_the_model_file_of_another_run(project):
    params, paths = project
    target = paths.model_dir(STD) / "model.pt"
    _random_model_file(target, params, OTHER, paths)  # e.g. copied into the wrong folder
    msg = _refused(_cli("attack", STD), _rel(target, paths), "does not belong to this run", "method 'batchout'")
    assert "name 'mnist-lenet-batchout-s0'" in msg
    assert not paths.attack_metrics(STD).exists()


def test_attack_refuses_weights_of_another_architecture(project):
    params, paths = project
    cfg = resolve_run(params.train, STD)
    meta = load_meta(paths.prepared("mnist"))
    target = paths.model_dir(STD) / "model.pt"
    save_model(target, torch.nn.Linear(784, 10), cfg, meta)  # lenet's config, some other network's weights
    _refused(_cli("attack", STD), _rel(target, paths), "weights do not fit model 'lenet'")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not_ours", "bad_config"])
def test_attack_refuses_damaged_model_files(project, damage):
    params, paths = project
    target = paths.model_dir(STD) / "model.pt"
    _random_model_file(target, params, STD, paths)
    whole = target.read_bytes()
    if damage == "truncated":  # a copy cut short (disk full, interrupted scp)
        target.write_bytes(whole[: len(whole) // 2])
    elif damage == "garbage":
        target.write_bytes(b"\x00not a torch file at all" * 10)
    elif damage == "not_ours":  # a valid torch file without our format tag
        torch.save({"weights": torch.zeros(3)}, target)
    else:  # our tag, but a config no RunConfig accepts
        torch.save({"format": "batchout-model/1", "config": {"name": 3}, "meta": {}, "state_dict": {}}, target)
    _refused(_cli("attack", STD), _rel(target, paths))
    assert not paths.attack_metrics(STD).exists()


class _Payload:
    """Unpickling this runs code: it touches a marker file (what a malicious model file would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.slow
def test_attack_refuses_pickled_code_without_running_it(project):
    """Through a real subprocess: the stage's own torch.load must refuse (weights_only=True)."""
    params, paths = project
    target = paths.model_dir(STD) / "model.pt"
    marker = paths.root / "pwned"
    target.parent.mkdir(parents=True)
    torch.save({"format": "batchout-model/1", "config": _Payload(marker)}, target)
    done = subprocess.run([sys.executable, "-m", "pipeline.attack", STD], cwd=paths.root, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and _rel(target, paths) in lines[0], done.stderr
    assert "holds pickled objects, not just tensors: refused" in lines[0] and "\x1b" not in lines[0]
    assert not marker.exists(), "loading the model file executed pickled code"


# ---------------------------------------------------------------- train: checkpoints and data
def _cfg_fp(params, paths):
    cfg = resolve_run(params.train, STD)
    return cfg, fingerprint(cfg, load_meta(paths.prepared("mnist"))["sha256"])


def test_train_refuses_a_corrupt_checkpoint_and_writes_nothing(project):
    params, paths = project
    ckpt = paths.checkpoint(STD)
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"PK\x03\x04 cut short")
    _refused(_cli("train", STD), _rel(ckpt, paths), "delete it to train from scratch")
    assert not any((paths.root / d).exists() for d in OUTPUTS[:3])
    assert _no_runs()


def test_train_refuses_tampered_prepared_data_before_training(project):
    params, paths = project
    npy = paths.prepared("mnist") / "x_train.npy"
    raw = bytearray(npy.read_bytes())
    raw[-1] ^= 0xFF  # one pixel flipped after prepare: sha256 no longer matches meta.json
    npy.write_bytes(bytes(raw))
    _refused(_cli("train", STD), _rel(npy, paths), "sha256 does not match meta.json")
    assert not any((paths.root / d).exists() for d in OUTPUTS)
    assert _no_runs()


def test_checkpoint_weights_of_another_architecture_are_refused(project):
    """Same fingerprint but weights that do not fit (a forged or mixed-up file): one line, no torch text."""
    params, paths = project
    cfg, fp = _cfg_fp(params, paths)
    other = torch.nn.Linear(784, 10)
    save_checkpoint(paths.checkpoint(STD), other, TrainState(), fp, None)
    from batchout.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(paths.checkpoint(STD), fp)
    assert ckpt is not None and ckpt["epoch"] == 0
    with pytest.raises(BatchoutError) as err:
        restore_model(build_model(cfg, load_meta(paths.prepared("mnist"))), ckpt, paths.checkpoint(STD), cfg)
    assert str(paths.checkpoint(STD)) in str(err.value) and "weights do not fit model 'lenet'" in str(err.value)


@pytest.mark.slow
def test_train_ignores_a_checkpoint_of_other_params_and_restarts(project, capsys):
    params, paths = project
    _, fp = _cfg_fp(params, paths)
    state = TrainState(epoch=1, history=[{"epoch": 1, "train_loss": 9.0}])
    # A resnet-era leftover: other weights, other fingerprint, a run id from some other store.
    save_checkpoint(paths.checkpoint(STD), torch.nn.Conv2d(3, 16, 3), state, "0" * 64, "feedface")
    result = _cli("train", STD)
    assert result.exit_code == 0, (result.output, result.exception)
    warning = [ln for ln in result.stderr.splitlines() if ln.startswith("warning: ignoring checkpoint")]
    assert len(warning) == 1 and _rel(paths.checkpoint(STD), paths) in warning[0] and "from scratch" in warning[0]
    curve = paths.train_curve(STD).read_text().splitlines()
    assert [r.split(",")[0] for r in curve[1:]] == [str(e) for e in range(1, params.train.epochs + 1)]
    assert "9.0" not in curve[1]  # the stale history was not carried over
    assert torch.load(paths.checkpoint(STD), weights_only=True)["fingerprint"] == fp  # replaced by this run's
    runs = mlflow.search_runs(experiment_names=["mnist"], filter_string=f"run_name = '{STD}'")
    assert list(runs["status"]) == ["FINISHED"] and "feedface" not in set(runs["run_id"])
