"""APGD-CE, APGD-T and FAB-T behaviour on tiny models: schedule, step halving, early exit, losses,
bounds, determinism and setting errors.

Usage: ``.venv/bin/pytest tests/test_apgd.py -q``
"""

from __future__ import annotations

import pytest
import torch
from tiny_models import train_tiny
from torch import nn

from batchout.attacks.apgd import checkpoints, halve_mask, targeted_ce_loss, targeted_dlr_loss
from batchout.attacks.fab import project_to_hyperplane
from batchout.attacks.registry import create_attack
from batchout.errors import BatchoutError

pytestmark = pytest.mark.usefixtures("one_thread")
NEW = ("apgd_ce", "apgd_t", "fab_t")


@pytest.fixture(scope="module")
def tiny() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    return train_tiny()


class Flat(nn.Module):
    """Logits that ignore the input (zero gradient): the loss can only stall."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), -1) + 0.0 * x.flatten(1).sum(1, keepdim=True)


class Counting(nn.Module):
    """Records the batch size of every forward pass."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.sizes = model, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(x))
        return self.model(x)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_checkpoints_follow_the_paper():
    # p = 0.22, then gaps 0.19, 0.16, 0.13, 0.10, 0.07, 0.06, 0.06 (floor 0.06 = 6 iterations)
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(10) == [3, 5, 6, 7, 8, 9, 10]  # ceil(p * 10), duplicates merged
    assert checkpoints(1) == [1]


def test_halve_mask_conditions_a_and_b():
    interval, best, at_check = 22, torch.tensor([1.0, 1.0, 1.0, 1.0]), torch.tensor([0.5, 0.5, 1.0, 1.0])
    rises = torch.tensor([17.0, 16.0, 20.0, 20.0])  # 0.75 * 22 = 16.5: (a) fires at 16, not at 17
    halved_before = torch.tensor([True, True, False, True])
    # example 2: rose often but no gain since a checkpoint that kept its step -> (b)
    assert halve_mask(rises, interval, best, at_check, halved_before).tolist() == [False, True, True, False]


def test_step_halves_at_every_checkpoint_when_the_loss_stalls():
    model = Flat([2.0, 0.0, -1.0])
    x, y = torch.rand(5, 1, 4, 4), torch.zeros(5, dtype=torch.long)
    attack = create_attack("apgd_ce", model)
    attack.trace = []
    attack(x, y, 0.1)
    assert [it for it, _, _ in attack.trace] == checkpoints(100)
    for j, (_, idx, step) in enumerate(attack.trace, start=1):
        assert idx.tolist() == list(range(5))
        assert torch.allclose(step, torch.full((5,), 0.2 / 2**j))


def test_fooled_points_leave_the_working_batch(tiny):
    model, x, y = tiny
    counting = Counting(model)
    x_adv = create_attack("apgd_ce", counting, steps=100)(x, y, 0.3)
    sizes = counting.sizes
    assert sizes[0] == len(x)  # the clean pass
    assert all(a >= b for a, b in zip(sizes[1:], sizes[2:], strict=False))  # one run: only shrinks
    assert len(sizes) < 100 and sum(sizes) < 0.1 * 100 * len(x)  # everything fooled early
    assert accuracy(model, x_adv, y) == 0.0


def test_apgd_t_runs_each_target_only_on_points_still_robust(tiny):
    model, x, y = tiny
    attack = create_attack("apgd_t", model, steps=20)
    runs, run = [], attack._run

    def spy(*args):  # (loss, x, y, target, lo, hi, eps) -> (points, fooled, loss)
        out = run(*args)
        runs.append((len(args[1]), int(out[1].sum())))
        return out

    attack._run = spy
    attack(x, y, 0.15)
    with torch.no_grad():
        correct = int((model(x).argmax(1) == y).sum())
    assert len(runs) == 2  # three classes: two targets
    assert runs[0][0] == correct and 0 < runs[0][1] < correct
    assert runs[1][0] == correct - runs[0][1]


def test_apgd_t_loss_and_targets_by_class_count():
    attack = create_attack("apgd_t", Flat([0.0, 0.0, 0.0]))
    three = torch.tensor([[3.0, 1.0, 2.0]])
    runs = attack.runs(three, torch.tensor([0]))
    assert [fn for fn, _ in runs] == [targeted_ce_loss, targeted_ce_loss]
    assert [t.item() for _, t in runs] == [2, 1]  # the other classes by clean logit
    ten = torch.arange(10.0).flip(0)[None]  # class 0 on top, then 1, 2, ...
    runs = attack.runs(ten, torch.tensor([0]))
    assert [fn for fn, _ in runs] == [targeted_dlr_loss] * 9
    assert [t.item() for _, t in runs] == list(range(1, 10))
    assert len(create_attack("apgd_t", Flat([0.0]), n_targets=3, restarts=2).runs(ten, torch.tensor([0]))) == 6


def test_targeted_losses_by_hand():
    z, y, t = torch.tensor([[4.0, 3.0, 1.0, 0.0, -2.0]]), torch.tensor([0]), torch.tensor([2])
    # -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2) = -(4 - 1) / (4 - 0.5) ; -CE(z, t) = log_softmax(z)[t]
    assert targeted_dlr_loss(z, y, t).item() == pytest.approx(-3 / 3.5)
    assert targeted_ce_loss(z, y, t).item() == pytest.approx(torch.log_softmax(z, 1)[0, 2].item())


@pytest.mark.parametrize("name", NEW)
def test_eps_zero_bounds_and_strength(tiny, name):
    model, x, y = tiny
    attack = create_attack(name, model, steps=30)
    assert torch.equal(attack(x, y, 0.0), x)
    for eps in (0.05, 0.2):
        x_adv = attack(x, y, eps)
        assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
        assert (x_adv - x).abs().max() <= eps + 1e-6
    assert accuracy(model, x_adv, y) <= accuracy(model, create_attack("fgsm", model)(x, y, 0.2), y)


@pytest.mark.parametrize("name", NEW)
def test_deterministic_given_the_torch_seed(tiny, name):
    model, x, y = tiny
    attack = create_attack(name, model, steps=20, restarts=2)
    torch.manual_seed(5)
    a = attack(x[:50], y[:50], 0.1)
    torch.manual_seed(5)
    assert torch.equal(a, attack(x[:50], y[:50], 0.1))


def test_fooled_points_stay_fooled_and_robust_ones_get_their_best_point(tiny):
    model, x, y = tiny
    x_adv = create_attack("apgd_ce", model, steps=50)(x, y, 0.15)
    with torch.no_grad():
        clean_ok, adv_ok = model(x).argmax(1) == y, model(x_adv).argmax(1) == y
    assert bool((clean_ok | ~adv_ok).all())  # misclassified clean points stay misclassified
    moved = (x_adv - x).flatten(1).abs().amax(1)
    assert bool((moved[adv_ok] > 0).all())  # still-robust points return their best-loss point, not x


@pytest.mark.parametrize(
    ("name", "settings", "message"),
    [
        ("apgd_ce", {"steps": 0}, r"^apgd_ce\.steps: got 0; allowed: an integer >= 1$"),
        ("apgd_ce", {"restarts": "2"}, r"^apgd_ce\.restarts: got '2'; allowed: an integer >= 1$"),
        ("apgd_t", {"n_targets": 0}, r"^apgd_t\.n_targets: got 0; allowed: an integer >= 1$"),
        ("apgd_t", {"steps": 2.5}, r"^apgd_t\.steps: got 2\.5"),
        ("fab_t", {"restarts": True}, r"^fab_t\.restarts: got True"),
        ("apgd_ce", {"n_targets": 3}, r"^apgd_ce\.n_targets: unknown setting; allowed: steps, restarts$"),
    ],
)
def test_bad_settings_are_one_line_errors(tiny, name, settings, message):
    with pytest.raises(BatchoutError, match=message) as err:
        create_attack(name, tiny[0], **settings)
    assert "\n" not in str(err.value)


def test_hyperplane_projection_is_feasible_and_minimal():
    torch.manual_seed(0)
    t, w = torch.rand(64, 30), torch.randn(64, 30)
    w[:, :4] = 0.0  # coordinates the hyperplane ignores must not move
    b = (w * t).sum(1) + 10.0 * torch.randn(64)
    d = project_to_hyperplane(t, w, b)
    z, norm = t + d, d.abs().amax(1)
    assert z.min() >= -1e-6 and z.max() <= 1 + 1e-6 and bool((d[:, :4] == 0).all())
    need = b - (w * t).sum(1)
    room = torch.where(w * need[:, None] > 0, 1 - t, t)
    reach = (w.abs() * room).sum(1)  # the most |w . d| any box step achieves
    ok = reach >= need.abs()
    assert ok.any() and (~ok).any()
    assert torch.allclose((w * z).sum(1)[ok], b[ok], atol=1e-4)
    # Minimal: no step of 0.999 times that norm can move w . z far enough.
    shrunk = (w.abs() * torch.minimum(room, 0.999 * norm[:, None])).sum(1)
    assert bool((shrunk[ok] < need.abs()[ok]).all())
    assert torch.allclose(d[~ok].abs(), room[~ok] * (w[~ok] != 0))  # unreachable: to the corner


def test_fab_t_broken_points_leave_the_working_batch(tiny):
    model, x, y = tiny
    counting = Counting(model)
    x_adv = create_attack("fab_t", counting, steps=100)(x, y, 0.3)
    assert accuracy(model, x_adv, y) == 0.0
    # per step: a gradient pass and a check pass; both shrink as points break
    assert len(counting.sizes) < 2 * 100 and sum(counting.sizes) < 0.1 * 2 * 100 * len(x)
