"""Our APGD-CE, APGD-T, FAB-T and Square against the authors' reference code (the ``pyautoattack``
wheel) on a small MLP trained here on real MNIST: same steps, same eps, same points, robust accuracy
within 2 percentage points (Square: within one example, at equal queries and seed). Skips without
pyautoattack (a dev dependency) or without the mirror.

Usage: ``BATCHOUT_DATA_MIRROR=/work/shared/datasets .venv/bin/pytest tests/test_reference_attacks.py -q``
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from batchout.attacks.fab import project_to_hyperplane
from batchout.attacks.registry import create_attack
from batchout.attacks.square import p_selection
from batchout.data.formats import read_idx
from batchout.models.common import Normalize

pytest.importorskip("pyautoattack")
from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted  # noqa: E402
from pyautoattack.fab_projections import projection_linf  # noqa: E402
from pyautoattack.fab_pt import FABAttack_PT  # noqa: E402
from pyautoattack.square import SquareAttack  # noqa: E402

EPS = (0.05, 0.08)  # robust accuracy about 62 % and 32 % on the MLP below
N_TRAIN = 5000
POINTS = {"apgd_ce": 200, "apgd_t": 200, "fab_t": 100}  # FAB-T costs ~10x APGD-CE per point


def reference(name: str, model: nn.Module, eps: float, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The reference attack in AutoAttack's "standard" settings. It reseeds torch's global RNG:
    run it on a forked RNG so the tests after it are not affected."""
    if name == "apgd_ce":
        attack = APGDAttack(model, n_iter=100, n_restarts=1, eps=eps, loss="ce", seed=0)
    elif name == "apgd_t":
        attack = APGDAttack_targeted(model, n_iter=100, n_restarts=1, eps=eps, seed=0, n_target_classes=9)
    else:
        attack = FABAttack_PT(model, n_iter=100, n_restarts=1, eps=eps, seed=0, targeted=True, n_target_classes=9)
    with torch.random.fork_rng():
        return attack.perturb(x, y)


def load(root: Path, split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    raw = root / "mnist" / "MNIST" / "raw"
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(raw / f"{prefix}-images-idx3-ubyte.gz")[:n]
    y = read_idx(raw / f"{prefix}-labels-idx1-ubyte.gz")[:n].astype(np.int64)
    return torch.from_numpy(x.copy()).float().div(255)[:, None], torch.from_numpy(y.copy())


@functools.cache
def trained_mlp(root: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """784-128-10 ReLU MLP, 3 epochs of Adam on 5000 MNIST images (about 10 s on 2 cores; ~93 %)."""
    x, y = load(Path(root), "train", N_TRAIN)
    torch.manual_seed(0)
    model = nn.Sequential(
        Normalize([0.1307], [0.3081]), nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10)
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(3):
        for batch in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
    model.eval()
    return model, *load(Path(root), "test", max(POINTS.values()))


def robust_accuracy(model: nn.Module, x_adv: torch.Tensor, x: torch.Tensor, y: torch.Tensor, eps: float) -> float:
    assert (x_adv - x).abs().max() <= eps + 1e-5 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        return (model(x_adv).argmax(1) == y).float().mean().item()


def test_hyperplane_projection_matches_the_reference():
    torch.manual_seed(0)
    t, w = torch.rand(200, 50), torch.randn(200, 50)
    w[:, :5] = 0.0
    w[:20] = 0.0  # a zero normal: nothing moves
    b = (w * t).sum(1) + 6.0 * torch.randn(200)  # some rows cannot reach the hyperplane in the box
    assert torch.allclose(project_to_hyperplane(t, w, b), projection_linf(t, w, b), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["apgd_ce", "apgd_t", "fab_t"])
def test_agrees_with_the_reference_code(mirror, name):
    model, x, y = trained_mlp(str(mirror))
    x, y = x[: POINTS[name]], y[: POINTS[name]]
    attack = create_attack(name, model)
    for eps in EPS:
        torch.manual_seed(0)
        ours = robust_accuracy(model, attack(x, y, eps), x, y, eps)
        theirs = robust_accuracy(model, reference(name, model, eps, x, y), x, y, eps)
        assert abs(ours - theirs) <= 0.02 + 1e-9, f"{name} at eps {eps}: ours {ours:.3f}, reference {theirs:.3f}"


def test_square_p_schedule_is_autoattacks_standard_one():
    """AutoAttack's standard Square runs with resc_schedule=False: the patch fraction halves at fixed
    iterations whatever the budget (the old code always rescaled to 10,000 queries, so at 5,000 it
    halved p twice as fast). Both schedules, at every iteration of the budget."""
    for rescale, n_queries in ((False, 5000), (False, 100), (True, 5000), (True, 1000)):
        ref = SquareAttack(nn.Identity(), n_queries=n_queries, p_init=0.8, resc_schedule=rescale)
        ours = [p_selection(0.8, it, n_queries, rescale) for it in range(n_queries)]
        assert ours == [ref.p_selection(it) for it in range(n_queries)], (rescale, n_queries)
    assert create_attack("square", nn.Identity()).rescale is False  # the standard one by default


@pytest.mark.slow
def test_square_agrees_with_the_reference_code(mirror):
    """Equal queries (the reference's n_queries=Q does Q + 1 forward passes, ours counts them all) and
    equal seed: robust accuracy within one example, on the clean-correct points (the only ones the
    reference attacks)."""
    model, x, y = trained_mlp(str(mirror))
    x, y = x[:200], y[:200]
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    x, y = x[ok], y[ok]
    for eps in EPS:
        torch.manual_seed(0)
        ours = robust_accuracy(model, create_attack("square", model, n_queries=1001)(x, y, eps), x, y, eps)
        ref = SquareAttack(model, n_queries=1000, eps=eps, p_init=0.8, seed=0, resc_schedule=False, loss="margin")
        with torch.random.fork_rng():
            theirs = robust_accuracy(model, ref.perturb(x, y), x, y, eps)
        assert abs(ours - theirs) * len(y) <= 1 + 1e-9, f"square at eps {eps}: ours {ours:.3f}, reference {theirs:.3f}"


class _Unbreakable(nn.Module):
    """The last of ``classes`` classes by a margin no pixel budget overturns, with a real (tiny) input gradient."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.classes = classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.arange(float(self.classes)) + 1e-3 * torch.tanh(x.flatten(1)[:, :self.classes])


@pytest.mark.parametrize("classes", [10, 3])
def test_the_reports_standard_autoattack_schedule_is_the_reference_codes(classes):
    """reporting.cost's schedule, counted: the standard AutoAttack on 7 points no member can break (so every
    member runs its whole schedule on every point) costs exactly that many passes per point; on 3 classes
    (CIFAR3) its targeted members take 2 targets (and APGD-T the targeted CE loss, as bench_converge runs it)."""
    from batchout.evaluation.passes import PassCounter
    from batchout.reporting.cost import STANDARD_SCHEDULE, standard_passes, standard_schedule
    from benchmarks.bench_converge import standard_autoattack

    counter = PassCounter(_Unbreakable(classes)).eval()
    aa = standard_autoattack(counter, 0.3, classes)
    x, y = torch.rand(7, 1, 28, 28), torch.full((7,), classes - 1)
    with torch.random.fork_rng():
        aa.run_standard_evaluation(x, y, batch_size=7)
    schedule = standard_schedule(classes)
    per_point = [sum(parts) for parts in zip(*schedule.values(), strict=True)]  # forward, backward
    assert (counter.passes().forward, counter.passes().backward) == (7 * per_point[0], 7 * per_point[1])
    assert standard_passes(7, 7, classes) == counter.passes().total
    assert classes < 10 or schedule == STANDARD_SCHEDULE
