"""Train stage: an arm's runs (one per seed) from params to models, metrics and MLflow.

Usage: ``metrics = run(params, "mnist-lenet-standard", Paths())`` -> ``{"mnist-lenet-standard-s0": {...}, ...}``;
one seed: ``run(params, "mnist-lenet-standard-s1", Paths())``

The seeds of an arm train one after the other in one process, so they share its start-up (imports,
the MLflow store, the data on the device): on 2 CPU cores that start-up is as long as a LeNet run.

Resumable: a checkpoint is written atomically after every epoch; running the stage again after a
kill continues from it (same MLflow run) and ends with the same metrics as an uninterrupted run.
The last one stays after the run finishes, so rerunning a finished run re-scores it into the same
MLflow run instead of training a duplicate; other params, data or code (fingerprint) start afresh.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from batchout import tracking
from batchout.config import Params, RunConfig, resolve_run, runs_of
from batchout.config.tuned import read_tune_result
from batchout.data.loader import load_meta, load_split
from batchout.device import channels_last, resolve_device, seed_everything
from batchout.io import write_csv, write_json
from batchout.models.build import build_model
from batchout.paths import Paths, split_run
from batchout.reporting.plots import plot_training_curves
from batchout.training.checkpoint import (
    fingerprint,
    load_checkpoint,
    restore_model,
    save_checkpoint,
    save_model,
)
from batchout.training.distributed import Dist
from batchout.training.loop import Split, TrainState, accuracy, fit

Loaded = dict[str, tuple[dict[str, Any], list[Split]]]  # data set -> (meta, splits on the device)


def load_data(paths: Paths, dataset: str, device: torch.device,
              loaded: Loaded | None = None) -> tuple[dict[str, Any], list[Split]]:
    """The prepared splits on ``device`` (sha256-checked); ``loaded`` keeps them for the next seed of
    the same call, so an arm reads and hashes its data once (training never writes to them)."""
    if loaded is not None and dataset in loaded:
        return loaded[dataset]
    folder = paths.prepared(dataset)
    meta = load_meta(folder)
    splits = [Split(*[t.to(device) for t in load_split(folder, s)]) for s in ("train", "val", "test")]
    if loaded is not None:
        loaded[dataset] = meta, splits
    return meta, splits


def _resume(paths: Paths, cfg: RunConfig, model: torch.nn.Module, fp: str,
            dist: Dist) -> tuple[TrainState, str | None]:
    # Rank 0 reads the checkpoint and sends it to the others, so nodes need no shared disk.
    ckpt = dist.broadcast_object(load_checkpoint(paths.checkpoint(cfg.name), fp) if dist.is_main else None)
    if ckpt is None:
        return TrainState(), None
    restore_model(model, ckpt, paths.checkpoint(cfg.name), cfg)
    rng = ckpt["rng"] if dist.is_main else None  # other ranks keep their own (reseeded) streams
    state = TrainState(ckpt["epoch"], ckpt["history"], ckpt["optimizer"], ckpt["scheduler"], rng)
    return state, ckpt["mlflow_run_id"]


def _write_outputs(paths: Paths, cfg: RunConfig, model: torch.nn.Module, meta: dict[str, Any],
                   state: TrainState, final: dict[str, Any]) -> None:
    save_model(paths.model_dir(cfg.name) / "model.pt", model, cfg, meta)
    write_json(paths.train_metrics(cfg.name), final)
    write_csv(paths.train_curve(cfg.name), state.history)


def _setup(params: Params, name: str, paths: Paths) -> tuple[RunConfig, torch.device, Dist]:
    parts = split_run(name)
    tuned = parts is not None and parts[0] in params.train.tuned_runs
    best = read_tune_result(paths.tune_best) if tuned else None
    cfg = resolve_run(params.train, name, None if best is None else {"k": best.k, "n": best.n})
    dist, device = Dist.from_env(resolve_device(cfg.device))
    dist.check_batch(cfg.batch_size)
    return cfg, device, dist


def _build(cfg: RunConfig, meta: dict[str, Any], device: torch.device, dist: Dist) -> torch.nn.Module:
    seed_everything(cfg.seed, cfg.deterministic, device)
    model = channels_last(build_model(cfg, meta).to(device))
    if dist.rank:  # same initial weights (DDP copies rank 0's), independent crops, flips and partners
        torch.manual_seed(cfg.seed + 7919 * dist.rank)
    return model


def run(params: Params, name: str, paths: Paths) -> dict[str, dict[str, Any]]:
    """Train every run of arm ``name`` (or the one run ``name``), seed after seed: run -> metrics."""
    loaded: Loaded = {}
    return {run_: train_one(params, run_, paths, loaded) for run_ in runs_of(params.train, name)}


def train_one(params: Params, name: str, paths: Paths, loaded: Loaded | None = None) -> dict[str, Any]:
    """Train one run; under ``torchrun`` every rank calls this and rank 0 alone writes and logs.
    ``loaded``: data already on the device from an earlier seed of the same call (see load_data)."""
    cfg, device, dist = _setup(params, name, paths)
    try:
        # refuses tampered data before MLflow is touched
        meta, splits = load_data(paths, cfg.dataset, device, loaded)
        if dist.is_main:
            tracking.configure(tracking.repo_root(paths.root))  # fails fast on an unreachable server
        model = _build(cfg, meta, device, dist)
        fp = fingerprint(cfg, meta["sha256"])
        state, run_id = _resume(paths, cfg, model, fp, dist)
        if not dist.is_main:
            return _train(cfg, device, dist, model, splits, state)
        tracking.mark_stale_runs(cfg.dataset, cfg.name, keep_run_id=run_id)
        tags = {**tracking.run_tags(paths.root), "device": str(device), "method": cfg.method,
                "deterministic": str(cfg.deterministic), "world_size": str(dist.world_size)}
        every_s = tracking.sampling_interval_s(cfg.epochs * meta["counts"]["train"])  # system metrics
        with tracking.start_run(cfg.dataset, cfg.name, resume_run_id=run_id, tags=tags,
                                system_metrics_s=every_s) as log:
            # the data as one MLflow dataset input per split, digests from meta.json's sha256
            log.log_dataset(meta, cfg.dataset, paths.prepared(cfg.dataset).relative_to(paths.root).as_posix())
            if run_id is None:
                log.log_params(cfg.model_dump(mode="json"))
            final = _train(cfg, device, dist, model, splits, state, log, paths, fp)
            final["mlflow_run_id"] = log.run_id
            _write_outputs(paths, cfg, model, meta, state, final)
            _log_artifacts(log, paths, cfg, model, state, final)
        # The last epoch's checkpoint stays: a rerun of a finished run (e.g. after a kill during exit,
        # once everything was written) resumes it into the same MLflow run instead of training again.
        return final
    finally:
        dist.close()


def _train(cfg: RunConfig, device: torch.device, dist: Dist, model: torch.nn.Module, splits: list[Split],
           state: TrainState, log: tracking.RunLogger | None = None, paths: Paths | None = None,
           fp: str = "") -> dict[str, Any]:
    """Fit and score; with ``log`` (rank 0) each epoch is logged and checkpointed."""
    train, val, test = splits
    started = time.perf_counter()

    def on_epoch(epoch: int, metrics: dict[str, float], st: TrainState) -> None:
        if log is not None and paths is not None:
            log.log_epoch(epoch, metrics)
            save_checkpoint(paths.checkpoint(cfg.name), model, st, fp, log.run_id)

    fit(dist.wrap(model, device), train, val, cfg, device, state, on_epoch, dist)
    return _final_metrics(model, cfg, device, dist, splits, state, time.perf_counter() - started)


def _final_metrics(model: torch.nn.Module, cfg: RunConfig, device: torch.device, dist: Dist,
                   splits: list[Split], state: TrainState, seconds: float) -> dict[str, Any]:
    bs = cfg.eval_batch_size
    ips = [h["images_per_s"] for h in state.history]
    train, val, test = (accuracy(model, s, bs, device, dist) for s in splits)
    return {
        "train_acc": train,
        "val_acc": val,
        "test_acc": test,
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
