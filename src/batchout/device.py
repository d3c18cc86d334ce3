"""Device choice and reproducibility switches.

Usage: ``device = resolve_device("auto"); seed_everything(0, deterministic=False, device=device)``
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from batchout.errors import BatchoutError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> the first CUDA device when present, else CPU. Asking for CUDA without one fails."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BatchoutError(f"device: {name!r} asked for but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool, device: torch.device) -> None:
    """Seed every RNG the run touches. CPU kernels are deterministic already; on CUDA the
    ``deterministic`` switch trades speed for bit-exact results."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if device.type == "cuda":
        if deterministic:
            # cuBLAS needs a fixed workspace for reproducible GEMMs (PyTorch docs, "Reproducibility").
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        else:
            torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA (same exponent range as fp32: no loss scaling needed); off on CPU."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """The model's 4-d weights in NHWC layout, in place. Faster convolutions on both device kinds:
    tensor cores on CUDA, and oneDNN on the CPU (measured per model by ``python -m
    benchmarks.bench_layout``; docs/benchmarks.md). Inputs may stay NCHW; the first convolution converts."""
    return model.to(memory_format=torch.channels_last)
