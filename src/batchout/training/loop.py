"""The training loop, shared by the train stage, the Optuna objective and the tests.

Usage: ``history = fit(model, data, cfg, device, on_epoch=print)``

Data are held as uint8 tensors on the training device and batched by indexing (no DataLoader, no
per-sample Python work); augmentation runs on whole batches on that device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from batchout.config.run import RunConfig
from batchout.device import autocast
from batchout.evaluation.predict import predict, to_float
from batchout.layers.batchout import batchout_labels
from batchout.progress import QUIET, Task, track
from batchout.training.augment import crop_flip
from batchout.training.distributed import SINGLE, Dist, unwrap
from batchout.training.methods import batch_perturbation
from batchout.training.schedule import make_scheduler


@dataclass
class Split:
    """One split: uint8 images N x C x H x W and int64 labels, on the training device."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class TrainState:
    """What a checkpoint holds, so a killed run resumes exactly where it stopped."""

    epoch: int = 0  # epochs completed
    history: list[dict[str, float]] = field(default_factory=list)
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    rng: dict[str, Any] | None = None


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def accuracy(model: nn.Module, split: Split, batch_size: int, device: torch.device, dist: Dist = SINGLE) -> float:
    """Top-1 accuracy on ``split`` (fp32, eval mode: ``batchout.evaluation.predict``); under DDP each
    rank scores its strided share and the counts are summed."""
    rows = dist.shard(torch.arange(len(split), device=split.x.device))
    x, y = (split.x, split.y) if not dist.active else (split.x[rows], split.y[rows])
    correct = int((predict(unwrap(model), x, batch_size, device) == y.cpu()).sum())
    counts = torch.tensor([correct, len(y)], device=device)
    correct, seen = dist.all_sum(counts).tolist()
    return correct / max(seen, 1)


def make_optimizer(model: nn.Module, cfg: RunConfig) -> torch.optim.SGD:
    o = cfg.optimizer
    return torch.optim.SGD(
        model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov
    )


def train_epoch(
    model: nn.Module,
    split: Split,
    cfg: RunConfig,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    dist: Dist = SINGLE,
    task: Task = QUIET,
) -> dict[str, float]:
    """One epoch; ``task`` counts its batches and shows the running loss and images/s."""
    model.train()
    perturb = batch_perturbation(cfg.method)  # adversarial training's examples; None for the other methods
    # Under DDP every rank walks rank 0's permutation and takes a strided share of each global batch.
    perm = dist.broadcast(torch.randperm(len(split), device=split.x.device))
    loss_sum = torch.zeros((), device=device)
    counts = torch.zeros(2, device=device, dtype=torch.long)  # [correct, seen]
    start = time.perf_counter()
    # Drop the last partial batch: BatchOut's k*batch rows and batch statistics assume full batches.
    n_batches = max(len(split) // cfg.batch_size, 1)
    done = 0  # batches of this epoch, for the rate shown

    # Called only when the task is drawn (every 5 s in a log, 10 times a second on a terminal): the
    # loss's host sync happens then, not per batch. Under DDP: rank 0's share of the batches.
    def running_loss() -> float:
        return float(loss_sum / counts[1].clamp(min=1))

    def images_per_s() -> float:  # global images (all ranks) per second of this epoch
        return done * cfg.batch_size / max(time.perf_counter() - start, 1e-9)

    for b in range(n_batches):
        idx = dist.shard(perm[b * cfg.batch_size : (b + 1) * cfg.batch_size])
        x = to_float(split.x[idx].to(device, non_blocking=True))
        y = split.y[idx].to(device, non_blocking=True)
        x = crop_flip(x, cfg.augment.crop_padding, cfg.augment.flip)
        if perturb is not None:  # on the plain module: the attack's backward must not all-reduce
            x = perturb(unwrap(model), x, y, cfg)
        with batchout_labels(model, y), autocast(device):
            logits = model(x)
            loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        # Accumulate on-device; one host sync per epoch instead of one per step.
        loss_sum += loss.detach() * len(y)
        counts[0] += (logits.detach().argmax(1) == y).sum()
        counts[1] += len(y)
        done = b + 1
        task.advance(1, loss=running_loss, img_s=images_per_s)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    loss_total, (correct, seen) = float(dist.all_sum(loss_sum)), dist.all_sum(counts).tolist()
    return {
        "train_loss": loss_total / seen,
        "train_acc_running": correct / seen,
        "lr": opt.param_groups[0]["lr"],
        "images_per_s": seen / seconds,
        "epoch_seconds": seconds,
    }


EpochHook = Callable[[int, dict[str, float], TrainState], None]


def fit(
    model: nn.Module,
    train: Split,
    val: Split,
    cfg: RunConfig,
    device: torch.device,
    state: TrainState | None = None,
    on_epoch: EpochHook | None = None,
    dist: Dist = SINGLE,
) -> TrainState:
    """Train ``cfg.epochs`` epochs from ``state`` (a fresh one if None). After each epoch,
    ``on_epoch(epoch, metrics, state)`` may log, checkpoint, or raise to stop (Optuna pruning).
    ``model`` may be DDP-wrapped (see batchout.training.distributed); ``dist`` then names this process.
    Progress (batches of every epoch, as ``train <cfg.name>``) is shown by rank 0 alone."""
    state = state or TrainState()
    opt = make_optimizer(model, cfg)
    steps = max(len(train) // cfg.batch_size, 1)
    sched = make_scheduler(opt, cfg.schedule, steps, cfg.epochs)
    if state.optimizer is not None:
        opt.load_state_dict(state.optimizer)
        sched.load_state_dict(state.scheduler)
    if state.rng is not None:
        set_rng_state(state.rng)
    with track(f"train {cfg.name}", cfg.epochs * steps, "batch", completed=state.epoch * steps,
               enabled=dist.is_main) as task:
        for epoch in range(state.epoch + 1, cfg.epochs + 1):
            task.advance(0, epoch=f"{epoch}/{cfg.epochs}")
            metrics = train_epoch(model, train, cfg, opt, sched, device, dist, task)
            metrics["val_acc"] = accuracy(model, val, cfg.eval_batch_size, device, dist)
            task.note(f"epoch {epoch}/{cfg.epochs} loss {metrics['train_loss']:.4f} val_acc {metrics['val_acc']:.4f} "
                      f"img/s {metrics['images_per_s']:,.0f} ({metrics['epoch_seconds']:.1f}s)")
            state.epoch = epoch
            state.history.append({"epoch": epoch, **metrics})
            state.optimizer, state.scheduler, state.rng = opt.state_dict(), sched.state_dict(), rng_state()
            if on_epoch is not None:
                on_epoch(epoch, metrics, state)
    return state
