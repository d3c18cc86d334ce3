"""Attack cost against the AutoAttack authors' code: our APGD-CE and ``autoattack`` cascade vs ``pyautoattack``.

Usage: ``python -m benchmarks.bench_attack [--examples 200] [--eps 0.2] [--steps 20] [--targets 3] [--queries 300]
[--fab-targets 0] [--repeats 2] [--train-images 5000] [--device cpu]``

Both sides run in one process on the same small LeNet (the repo's ``lenet``, trained here for one
epoch on real MNIST from data/prepared/mnist when it exists, else on synthetic bar "digits"), the
same test examples, eps, steps, targets and queries. The reference is ``pyautoattack`` 0.2.0 (a dev
dependency): ``APGDAttack`` for APGD-CE, and ``AutoAttack(version="custom")`` with its sub-attacks
given our budgets for the cascade (its time includes the few forward passes of AutoAttack's own
model checks, part of calling it). Repeats are interleaved (ours, theirs, ours, theirs) and the best
time is kept, so a busy machine slows both alike. Reported per contender: seconds per 100
examples, robust accuracy over all examples (clean mistakes count as broken) and theirs / ours.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from batchout.attacks.registry import create_attack
from batchout.models import create_model

PREPARED = Path(__file__).resolve().parents[1] / "data" / "prepared" / "mnist"  # the prepare stage's output
TRAIN_IMAGES = 5000  # one epoch of LeNet: ~13 s on 2 busy cores
# Default eps per data source, so APGD-CE-20 leaves robust accuracy between 10 % and 90 % (synthetic
# bars are 170 grey levels above the noise: 0.1 (25 levels) breaks none of them, 0.2 about half).
EPS = {"MNIST": 0.1, "synthetic digits": 0.2}
EPS_PAIR = (None, 0.2)  # benchmarks.run: the data source's default, then a budget that breaks most MNIST points

Attack = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, y) -> x_adv, pixels in [0, 1]


def synthetic_digits(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """tests/conftest.py's learnable 28x28 'digits': class c is a bright bar at row 2 + 2c, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, size=n)
    x = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
    for c in range(10):
        x[y == c, 2 + 2 * c : 4 + 2 * c, 4:24] = 230
    return torch.from_numpy(x)[:, None], torch.from_numpy(y)


def load_data(n_train: int, n_test: int) -> tuple[str, tuple[torch.Tensor, ...]]:
    """(source, (x_train, y_train, x_test, y_test)): float images in [0, 1], int64 labels."""
    if (PREPARED / "meta.json").exists():
        from batchout.data.loader import load_split

        (xtr, ytr), (xte, yte) = load_split(PREPARED, "train"), load_split(PREPARED, "test")
        source = "MNIST"
    else:
        (xtr, ytr), (xte, yte) = synthetic_digits(n_train, 1), synthetic_digits(n_test, 2)
        source = "synthetic digits"
    xtr, ytr, xte, yte = xtr[:n_train], ytr[:n_train], xte[:n_test], yte[:n_test]
    return source, (xtr.float() / 255, ytr.long(), xte.float() / 255, yte.long())


def train_lenet(x: torch.Tensor, y: torch.Tensor, device: str) -> nn.Module:
    """One epoch of Adam (lr 1e-3, batch 64); returned in eval mode with frozen weights, so neither
    side spends time on weight gradients (ours freezes them itself; the reference does not)."""
    torch.manual_seed(0)
    model = create_model("lenet", num_classes=10, in_channels=1, image_size=28, mean=[0.1307], std=[0.3081])
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for batch in torch.randperm(len(x)).split(64):
        xb, yb = x[batch].to(device), y[batch].to(device)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def theirs_apgd(model: nn.Module, eps: float, steps: int, device: str) -> Attack:
    from pyautoattack.autopgd_base import APGDAttack  # a dev dependency: imported only when compared

    attack = APGDAttack(model, norm="Linf", eps=eps, n_iter=steps, n_restarts=1, loss="ce", device=device, seed=0)
    return lambda x, y: attack.perturb(x, y)


def theirs_autoattack(model: nn.Module, eps: float, budget: dict[str, int], device: str) -> Attack:
    """AutoAttack's "custom" version with our members and budgets. The APGDs are rebuilt rather than
    given a new ``n_iter``: their step-size checkpoints are fixed in ``__init__`` from ``n_iter``."""
    from pyautoattack import AutoAttack
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted

    members = ["apgd-ce", "apgd-t"] + (["fab-t"] if budget["fab_targets"] else []) + ["square"]
    aa = AutoAttack(model, attacks=members, version="custom", norm="Linf", eps=eps, device=device, seed=0)
    steps = budget["steps"]
    aa.apgd = APGDAttack(model, norm="Linf", eps=eps, n_iter=steps, n_restarts=1, loss="ce", device=device,
                         seed=0, logger=aa.logger)  # custom keeps 5 restarts; ours (and "standard") run 1
    aa.apgd_targeted = APGDAttack_targeted(model, norm="Linf", eps=eps, n_iter=steps, n_restarts=1, device=device,
                                           seed=0, n_target_classes=budget["targets"], logger=aa.logger)
    aa.fab.n_iter, aa.fab.n_target_classes = steps, budget["fab_targets"]
    aa.square.n_queries = budget["queries"]
    aa.square.resc_schedule = True  # ours rescales the patch-size schedule to the budget too
    aa.verbose = False
    return lambda x, y: aa.run_standard_evaluation(x, y, batch_size=len(x))[0]  # one batch, like ours


def ours_autoattack(model: nn.Module, budget: dict[str, int]) -> Callable[[torch.Tensor, torch.Tensor, float], Any]:
    fab = {"steps": budget["steps"], "n_targets": budget["fab_targets"]} if budget["fab_targets"] else False
    return create_attack("autoattack", model, apgd_ce={"steps": budget["steps"]},
                         apgd_t={"steps": budget["steps"], "n_targets": budget["targets"]},
                         fab_t=fab, square={"n_queries": budget["queries"]})


def timed(model: nn.Module, attack: Attack, x: torch.Tensor, y: torch.Tensor, eps: float) -> tuple[float, float]:
    """(seconds, robust accuracy) of one seeded call; the perturbation is checked to be in the eps box."""
    torch.manual_seed(0)
    start = time.perf_counter()
    adv = attack(x, y)
    if adv.is_cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    assert (adv - x).abs().max() <= eps + 1e-5 and 0 <= adv.min() and adv.max() <= 1, "perturbation out of bounds"
    with torch.no_grad():
        return seconds, (model(adv).argmax(1) == y).float().mean().item()


def compare(model: nn.Module, pair: dict[str, Attack], x: torch.Tensor, y: torch.Tensor, eps: float,
            repeats: int) -> dict[str, Any]:
    """Interleaved best-of-``repeats``: s per 100 examples and robust accuracy per side, theirs / ours."""
    best = dict.fromkeys(pair, float("inf"))
    acc: dict[str, float] = {}
    for _ in range(repeats):
        for side, attack in pair.items():
            seconds, acc[side] = timed(model, attack, x, y, eps)
            best[side] = min(best[side], seconds)
    per100 = {side: 100 * t / len(x) for side, t in best.items()}
    return {"s_per_100": per100, "robust_acc": acc, "ratio": per100["theirs"] / per100["ours"]}


def run(examples: int = 200, eps: float | None = None, steps: int = 20, targets: int = 3, queries: int = 300,
        fab_targets: int = 0, repeats: int = 2, device: str = "cpu",
        train_images: int = TRAIN_IMAGES) -> dict[str, Any]:
    """``eps`` None: :data:`EPS` of the data source found."""
    source, (xtr, ytr, x, y) = load_data(train_images, examples)
    eps = EPS[source] if eps is None else eps
    model = train_lenet(xtr, ytr, device)
    x, y = x.to(device), y.to(device)
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    budget = {"steps": steps, "targets": targets, "queries": queries, "fab_targets": fab_targets}
    ours_ce = create_attack("apgd_ce", model, steps=steps)
    ours_aa = ours_autoattack(model, budget)
    pairs = {
        f"APGD-CE {steps} steps": {"ours": lambda a, b: ours_ce(a, b, eps),
                                   "theirs": theirs_apgd(model, eps, steps, device)},
        "AutoAttack " + members_label(budget): {"ours": lambda a, b: ours_aa(a, b, eps),
                                                 "theirs": theirs_autoattack(model, eps, budget, device)},
    }
    # Warm-up (allocator, kernel selection) so the first contender is not charged for it.
    for side in pairs[f"APGD-CE {steps} steps"].values():
        timed(model, side, x[:16], y[:16], eps)
    rows = {name: compare(model, pair, x, y, eps, repeats) for name, pair in pairs.items()}
    return {"data": source, "examples": len(x), "eps": eps, "clean_acc": clean, "device": device,
            "threads": torch.get_num_threads(), "budget": budget, "rows": rows}


def members_label(budget: dict[str, int]) -> str:
    fab = f", FAB-T({budget['fab_targets']} tgt)" if budget["fab_targets"] else ""
    return f"(APGD-CE, APGD-T({budget['targets']} tgt){fab}, Square({budget['queries']} q))"


def print_table(r: dict[str, Any]) -> None:
    print(f"attacks vs pyautoattack: lenet on {r['data']}, {r['examples']} examples, eps {r['eps']}, "
          f"clean acc {r['clean_acc']:.3f}")
    print(f"{'attack':<52} {'ours s/100':>10} {'theirs s/100':>12} {'theirs/ours':>11} "
          f"{'ours acc':>9} {'theirs acc':>10}")
    for name, row in r["rows"].items():
        t, a = row["s_per_100"], row["robust_acc"]
        print(f"{name:<52} {t['ours']:>10.2f} {t['theirs']:>12.2f} {row['ratio']:>11.2f} "
              f"{a['ours']:>9.3f} {a['theirs']:>10.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--eps", type=float, help="default: 0.1 on MNIST, 0.2 on synthetic digits")
    ap.add_argument("--steps", type=int, default=20, help="APGD-CE, APGD-T (per target) and FAB-T steps")
    ap.add_argument("--targets", type=int, default=3, help="APGD-T target classes")
    ap.add_argument("--queries", type=int, default=300, help="Square queries")
    ap.add_argument("--fab-targets", type=int, default=0, help="FAB-T target classes (0: FAB-T left out)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--train-images", type=int, default=TRAIN_IMAGES)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    r = run(a.examples, a.eps, a.steps, a.targets, a.queries, a.fab_targets, a.repeats, a.device, a.train_images)
    print(f"{r['device']}, {r['threads']} CPU threads")
    print_table(r)


if __name__ == "__main__":
    main()
