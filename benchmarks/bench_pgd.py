"""PGD evaluation throughput: the project's attack and ``robust_grid`` vs a plain PGD loop.

Usage: ``python -m benchmarks.bench_pgd [--images 1000] [--batch-size 250] [--steps 10] [--repeats 3]``

All three run in one process on the same LeNet-like 1x28x28 model (built here), the same random
images, eps, steps and step size. Labels are the model's own predictions, so every example is
classified correctly clean and ``robust_grid`` attacks all of them (no free skips). The plain
loop is the usual recipe: random start, ``loss.backward``-free ``autograd.grad`` on the CE mean,
sign step, clip; then one forward to score. Repeats are interleaved and the best time is kept,
so a busy machine slows every contender alike. Reported: images/s and the ratio to plain.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from batchout.attacks.registry import create_attack
from batchout.evaluation.robust import robust_grid
from batchout.models.common import Normalize


def lenet() -> nn.Module:
    """LeNet-like MNIST classifier: two 5x5 conv + pool blocks, two dense layers, [0, 1] input."""
    return nn.Sequential(
        Normalize([0.1307], [0.3081]),
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.ReLU(), nn.Linear(256, 10),
    )  # fmt: skip


def plain_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, alpha: float) -> torch.Tensor:
    """Reference PGD (Madry et al. 2018) as commonly written."""
    adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(adv), y)
        (grad,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + alpha * grad.sign()
        adv = (x + (adv - x).clamp(-eps, eps)).clamp(0, 1)
    return adv.detach()


def _score(model: nn.Module, make_adv: Callable, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    correct = 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        adv = make_adv(xb, yb)
        with torch.inference_mode():
            correct += int((model(adv).argmax(1) == yb).sum())
    return correct / len(x)


def run(
    images: int = 1000,
    batch_size: int = 250,
    steps: int = 10,
    eps: float = 0.3,
    repeats: int = 3,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """Best-of-``repeats`` images/s of each contender, and their accuracies (images and model on
    ``device``; every contender ends with a host sync, so wall time is honest on CUDA too)."""
    torch.manual_seed(seed)
    model = lenet().eval().to(device)
    x = torch.rand(images, 1, 28, 28, device=device)
    with torch.no_grad():  # not inference_mode: the plain loop feeds y to autograd
        y = model(x).argmax(1)
    alpha = 2.5 * eps / steps
    for p in model.parameters():  # the plain loop freezes weights too: input gradients only
        p.requires_grad_(False)
    attack = create_attack("pgd", model, steps=steps, step_size=alpha)
    contenders: dict[str, Callable[[], float]] = {
        "plain loop": lambda: _score(model, lambda a, b: plain_pgd(model, a, b, eps, steps, alpha), x, y, batch_size),
        "PGD attack class": lambda: _score(model, lambda a, b: attack(a, b, eps), x, y, batch_size),
        "robust_grid": lambda: (lambda g: g.acc(g.robust["pgd"])[0])(
            robust_grid(model, x, y, {"pgd": {"steps": steps}}, [eps], batch_size, device)),
    }
    best = dict.fromkeys(contenders, float("inf"))
    acc: dict[str, float] = {}
    # Warm-up (allocator, kernel selection) so the first contender is not charged for it.
    _score(model, lambda a, b: plain_pgd(model, a, b, eps, 1, alpha), x[:batch_size], y[:batch_size], batch_size)
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            acc[name] = fn()
            best[name] = min(best[name], time.perf_counter() - start)
    ips = {name: images / t for name, t in best.items()}
    return {
        "images": images,
        "batch_size": batch_size,
        "steps": steps,
        "eps": eps,
        "device": device,
        "threads": torch.get_num_threads(),
        "images_per_s": ips,
        "ratio_to_plain": {name: v / ips["plain loop"] for name, v in ips.items()},
        "robust_acc": acc,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--eps", type=float, default=0.3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    r = run(a.images, a.batch_size, a.steps, a.eps, a.repeats, device=a.device)
    head = f"PGD-{r['steps']} eps {r['eps']}, {r['images']} images, batch {r['batch_size']}"
    print(f"{head}, {r['device']}, {r['threads']} CPU threads")
    print(f"{'contender':<18} {'images/s':>10} {'x plain':>8} {'robust acc':>11}")
    for name, v in r["images_per_s"].items():
        print(f"{name:<18} {v:>10.1f} {r['ratio_to_plain'][name]:>8.2f} {r['robust_acc'][name]:>11.3f}")


if __name__ == "__main__":
    main()
