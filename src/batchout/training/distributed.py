"""Data-parallel training with torch.distributed, as launched by ``torchrun``; a no-op in one process.

Usage: ``dist = Dist.from_env(device); model = dist.wrap(model); idx = dist.shard(dist.broadcast(perm))``

``torchrun`` sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything here is the identity, so
the single-process code path is the same code. Conventions (see docs/scaling.md):
- ``train.batch_size`` is the *global* batch: each rank takes ``batch_size / world_size`` rows of
  the same rank-0 permutation, so steps per epoch and the LR schedule match a single-process run.
- BatchOut partners are drawn within each rank's own batch (no cross-rank gather of features).
- BatchNorm statistics are per rank (SyncBatchNorm has no CPU/gloo implementation).
- Metrics (loss, accuracy, image counts) are summed over ranks with all-reduce; rank 0 alone logs
  to MLflow and writes checkpoints, models and metrics files.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as tdist
from torch import nn

from batchout.errors import BatchoutError

_TIMEOUT = datetime.timedelta(minutes=30)  # a rank stuck longer than this is dead; fail the group


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: torch.device) -> tuple[Dist, torch.device]:
        """Join the process group torchrun describes (nccl on CUDA, gloo on CPU) and pick this
        rank's device: ``cuda:LOCAL_RANK`` when training on CUDA."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls(), device
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
        if not tdist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            tdist.init_process_group(backend, timeout=_TIMEOUT,
                                     device_id=device if device.type == "cuda" else None)
        return cls(rank, world, local), device

    def check_batch(self, batch_size: int) -> int:
        """Rows per rank; the global batch must split evenly so every rank runs the same steps."""
        if batch_size % self.world_size:
            raise BatchoutError(f"train.batch_size: {batch_size} does not split over {self.world_size} "
                                f"processes; allowed: a multiple of the number of processes")
        return batch_size // self.world_size

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        if not self.active:
            return model
        ids = [device.index] if device.type == "cuda" else None
        # DDP broadcasts rank 0's parameters and buffers here, so all ranks start identical.
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def shard(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's share of a batch of indices (strided, so shares differ by at most one row)."""
        return rows[self.rank :: self.world_size] if self.active else rows

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.active:
            tdist.broadcast(tensor, src=0)
        return tensor

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.active:
            tdist.all_reduce(tensor, op=tdist.ReduceOp.SUM)
        return tensor

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's object on every rank (a resumed checkpoint, a run id), by pickle over the group."""
        if not self.active:
            return obj
        box = [obj if self.is_main else None]
        tdist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            tdist.barrier()

    def close(self) -> None:
        if self.active and tdist.is_initialized():
            tdist.destroy_process_group()


SINGLE = Dist()


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper: evaluation and attacks run on it, so they neither
    trigger gradient all-reduces nor need every rank to make the same number of forward calls."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
