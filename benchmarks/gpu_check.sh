#!/usr/bin/env bash
# One-GPU check of the seed's full-size network: training images/s (bf16 autocast, channels_last,
# data resident on the GPU, optional torch.compile) and attack images/s (APGD-CE, PGD; fp32).
#
# Usage: bash benchmarks/gpu_check.sh [--epochs 3] [--compile] [--batch-size 256] [--attack-images 1000]
#        (PYTHON=.venv/bin/python to pick the interpreter; GPU_CHECK_TIMEOUT=470 caps it, seconds)
#
# Without a CUDA device it prints "no CUDA device: skipped" and exits 0. Expected cost on one
# H200: well under 8 minutes (3 epochs of 50,000 CIFAR-10 images, or 10,000 random ones when
# data/prepared/cifar10 is absent; torch.compile adds a one-off compile of a minute or two).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python}"
cd "$ROOT"

if ! "$PY" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
    echo "no CUDA device: skipped"
    exit 0
fi

# The hard cap keeps the check inside its 8-minute slot even if compilation or a kernel hangs.
timeout "${GPU_CHECK_TIMEOUT:-470}" "$PY" - "$@" <<'PY'
import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from batchout.attacks.registry import create_attack
from batchout.models import create_model

ap = argparse.ArgumentParser()
ap.add_argument("--epochs", type=int, default=3)
ap.add_argument("--compile", action="store_true", help="train a torch.compile'd model (attacks use the eager one)")
ap.add_argument("--batch-size", type=int, default=256)
ap.add_argument("--attack-images", type=int, default=1000)
args = ap.parse_args()

dev = torch.device("cuda")
torch.backends.cudnn.benchmark = True  # fixed shapes in training: let cuDNN pick the fastest kernels
prepared = Path("data/prepared/cifar10")
if (prepared / "meta.json").exists():
    from batchout.data.loader import load_split

    (xtr, ytr), (xte, yte) = load_split(prepared, "train"), load_split(prepared, "test")
    source = "CIFAR-10"
else:
    g = torch.Generator().manual_seed(0)
    xtr = torch.randint(0, 256, (10000, 3, 32, 32), dtype=torch.uint8, generator=g)
    ytr = torch.randint(0, 10, (10000,), generator=g)
    xte, yte = xtr[: args.attack_images], ytr[: args.attack_images]
    source = "random CIFAR-shaped data"
# uint8 on the GPU (150 MB for CIFAR-10 train): batches are sliced there, no host copies per step.
xtr, ytr = xtr.to(dev), ytr.to(dev)
xte, yte = xte[: args.attack_images].to(dev), yte[: args.attack_images].to(dev)
print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {source}: {len(xtr)} train images")

torch.manual_seed(0)
model = create_model("resnet_bottleneck", num_classes=10, in_channels=3, image_size=32,
                     mean=[0.49, 0.48, 0.45], std=[0.25, 0.24, 0.26], blocks=[9, 9, 9])
model = model.to(dev, memory_format=torch.channels_last)
net = torch.compile(model) if args.compile else model
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)

bs = args.batch_size
steps = len(xtr) // bs  # drop the last partial batch: one shape, no recompiles
for epoch in range(1, args.epochs + 1):
    model.train()
    order = torch.randperm(len(xtr), device=dev)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(steps):
        idx = order[i * bs : (i + 1) * bs]
        x = (xtr[idx].float() / 255).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(net(x), ytr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    note = " (includes compilation)" if args.compile and epoch == 1 else ""
    print(f"epoch {epoch}: {steps * bs / seconds:,.0f} train images/s, loss {loss.item():.3f}, {seconds:.1f} s{note}")

model.eval()
xte = (xte.float() / 255).contiguous(memory_format=torch.channels_last)
with torch.no_grad():
    print(f"clean accuracy on {len(xte)} test images: {(model(xte).argmax(1) == yte).float().mean().item():.3f}")
eps = 8 / 255
torch.backends.cudnn.benchmark = False  # attack batches shrink: autotuning every new shape costs more than it saves
# Attacks run the eager model in fp32 (they switch autocast off themselves): their batch shrinks
# as points break, which would make a compiled model recompile for every new shape.
for name, settings in (("apgd_ce", {"steps": 20}), ("pgd", {"steps": 20})):
    attack = create_attack(name, model, **settings)
    attack(xte[:64], yte[:64], eps)  # warm-up: cuDNN autotuning, allocator
    torch.manual_seed(0)
    torch.cuda.synchronize()
    start = time.perf_counter()
    adv = attack(xte, yte, eps)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        acc = (model(adv).argmax(1) == yte).float().mean().item()
    print(f"{name} {settings}: {len(xte) / seconds:,.0f} attack images/s ({seconds:.2f} s), robust acc {acc:.3f}")
print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
PY
