"""Train stage: one (data set, model, method, seed) run from params to model, metrics and MLflow.

Usage: ``metrics = run(params, "mnist-lenet-standard-s0", Paths())``

Resumable: a checkpoint is written atomically after every epoch; running the stage again after a
kill continues from it (same MLflow run) and ends with the same metrics as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import torch
import yaml

from batchout import tracking
from batchout.checkpoint import build_model, fingerprint, load_checkpoint, save_checkpoint, save_model
from batchout.config import Params, RunConfig, resolve_run
from batchout.data.loader import load_meta, load_split
from batchout.device import resolve_device, seed_everything
from batchout.errors import BatchoutError
from batchout.io import write_csv, write_json
from batchout.paths import Paths
from batchout.plots import plot_training_curves
from batchout.training import Split, TrainState, accuracy, fit


def read_tuned(paths: Paths) -> dict[str, Any]:
    """Best k and n from the tune stage (``tune/best.yaml``)."""
    best = paths.tune_dir / "best.yaml"
    if not best.is_file():
        raise BatchoutError(f"train.tuned_runs needs {best}, which is missing; run `dvc repro tune` first")
    doc = yaml.safe_load(best.read_text())
    return {"k": float(doc["k"]), "n": float(doc["n"])}


def load_data(paths: Paths, dataset: str, device: torch.device) -> tuple[dict[str, Any], list[Split]]:
    folder = paths.prepared(dataset)
    meta = load_meta(folder)
    splits = [Split(*[t.to(device) for t in load_split(folder, s)]) for s in ("train", "val", "test")]
    return meta, splits


def _resume(paths: Paths, cfg: RunConfig, model: torch.nn.Module, fp: str) -> tuple[TrainState, str | None]:
    ckpt = load_checkpoint(paths.checkpoint(cfg.name), fp)
    if ckpt is None:
        return TrainState(), None
    model.load_state_dict(ckpt["model"])
    state = TrainState(ckpt["epoch"], ckpt["history"], ckpt["optimizer"], ckpt["scheduler"], ckpt["rng"])
    return state, ckpt["mlflow_run_id"]


def _write_outputs(paths: Paths, cfg: RunConfig, model: torch.nn.Module, meta: dict[str, Any],
                   state: TrainState, final: dict[str, Any]) -> None:
    save_model(paths.model_dir(cfg.name) / "model.pt", model, cfg, meta)
    write_json(paths.train_metrics(cfg.name), final)
    write_csv(paths.train_curve(cfg.name), state.history)


def run(params: Params, name: str, paths: Paths) -> dict[str, Any]:
    tuned = read_tuned(paths) if name in params.train.tuned_runs else None
    cfg = resolve_run(params.train, name, tuned)
    device = resolve_device(cfg.device)
    tracking.configure(tracking.repo_root(paths.root))  # fails fast on an unreachable server
    meta, (train, val, test) = load_data(paths, cfg.dataset, device)
    seed_everything(cfg.seed, cfg.deterministic, device)
    model = build_model(cfg, meta).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)  # NHWC convolutions are faster on tensor cores
    fp = fingerprint(cfg, meta["sha256"])
    state, run_id = _resume(paths, cfg, model, fp)
    tracking.mark_stale_runs(cfg.dataset, cfg.name, keep_run_id=run_id)
    started = time.perf_counter()
    tags = {**tracking.run_tags(paths.root), "data_sha256": meta["sha256"].get("x_train.npy", ""),
            "device": str(device), "method": cfg.method, "deterministic": str(cfg.deterministic)}
    with tracking.start_run(cfg.dataset, cfg.name, resume_run_id=run_id, tags=tags) as log:
        if run_id is None:
            log.log_params(cfg.model_dump(mode="json"))
        ckpt_path = paths.checkpoint(cfg.name)

        def on_epoch(epoch: int, metrics: dict[str, float], st: TrainState) -> None:
            log.log_epoch(epoch, metrics)
            save_checkpoint(ckpt_path, model, st, fp, log.run_id)

        state = fit(model, train, val, cfg, device, state, on_epoch)
        final = _final_metrics(model, cfg, device, train, val, test, state, time.perf_counter() - started)
        final["mlflow_run_id"] = log.run_id
        _write_outputs(paths, cfg, model, meta, state, final)
        _log_artifacts(log, paths, cfg, model, state, final)
    ckpt_path.unlink(missing_ok=True)  # the finished model supersedes the checkpoint
    with contextlib.suppress(OSError):  # the run's folder, when empty
        ckpt_path.parent.rmdir()
    return final


def _final_metrics(model: torch.nn.Module, cfg: RunConfig, device: torch.device, train: Split, val: Split,
                   test: Split, state: TrainState, seconds: float) -> dict[str, Any]:
    bs = cfg.eval_batch_size
    ips = [h["images_per_s"] for h in state.history]
    return {
        "train_acc": accuracy(model, train, bs, device),
        "val_acc": accuracy(model, val, bs, device),
        "test_acc": accuracy(model, test, bs, device),
        "epochs": cfg.epochs,
        "wall_seconds": round(seconds, 3),
        "images_per_s": round(sum(ips) / max(len(ips), 1), 1),
    }


def _log_artifacts(log: tracking.RunLogger, paths: Paths, cfg: RunConfig, model: torch.nn.Module,
                   state: TrainState, final: dict[str, Any]) -> None:
    # Per-epoch curves own the plain names (val_acc has one point per epoch); finals get a prefix.
    log.log_metrics({(k if k == "test_acc" else f"final_{k}"): v for k, v in final.items()
                     if isinstance(v, int | float)})
    png = paths.model_dir(cfg.name) / "curves.png"
    plot_training_curves(state.history, png, title=cfg.name)
    log.log_artifact(png, "plots")
    log.log_dict(cfg.model_dump(mode="json"), "config.json")
    log.log_model(model)
