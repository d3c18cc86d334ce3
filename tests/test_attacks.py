"""Attacks on a tiny model trained here: strength, pixel-space bounds, side effects, registry errors.

Usage: ``.venv/bin/pytest tests/test_attacks.py -q``
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from tiny_models import train_tiny
from torch import nn

from batchout.attacks.pgd_dlr import cw_loss, dlr_loss
from batchout.attacks.registry import create_attack, list_attacks
from batchout.attacks.square import p_selection
from batchout.errors import BatchoutError

FAST = {"square": {"n_queries": 200}}  # the paper's 1000 queries are not needed on 8x8 blobs


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    return train_tiny()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.mark.parametrize("name", list_attacks())
def test_attack_lowers_accuracy_and_eps_zero_does_not(tiny, name):
    model, x, y = tiny
    clean = accuracy(model, x, y)
    assert clean >= 0.95
    attack = create_attack(name, model, **FAST.get(name, {}))
    assert torch.equal(attack(x, y, 0.0), x)
    # 0.3 is moderate here: the blobs are big, so budgets below ~0.1 barely move anything.
    assert accuracy(model, attack(x, y, 0.3), y) <= clean - 0.4


@pytest.mark.parametrize("name", list_attacks())
def test_bounds_and_no_side_effects(tiny, name):
    model, x, y = tiny
    model.train()  # the attack must switch to eval and back
    x_before = x.clone()
    eps = 0.15
    x_adv = create_attack(name, model, **FAST.get(name, {}))(x, y, eps)
    assert model.training
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    assert torch.equal(x, x_before)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert (x_adv - x).abs().max() <= eps + 1e-6
    model.eval()


def test_fgsm_moves_every_pixel_by_exactly_eps_in_pixel_space(tiny):
    """The model normalizes with std 0.25: a budget applied after normalization would show up as
    0.25 * eps here. Away from the [0, 1] clip, every pixel moves by exactly eps."""
    model, x, y = tiny
    eps = 0.1
    delta = (create_attack("fgsm", model)(x, y, eps) - x).abs()
    free = (x > eps) & (x < 1 - eps)
    assert delta.max().item() == pytest.approx(eps, abs=1e-6)
    moved = delta[free]
    assert (moved > 0).float().mean() > 0.99  # a zero gradient is possible but rare
    assert torch.allclose(moved[moved > 0], torch.full_like(moved[moved > 0], eps), atol=1e-6)


def test_fgsm_is_one_pgd_step_from_x_with_step_eps(tiny):
    model, x, y = tiny
    fgsm = create_attack("fgsm", model)(x, y, 0.2)
    pgd = create_attack("pgd", model, steps=1, step_size=0.2, random_start=False)(x, y, 0.2)
    assert torch.equal(fgsm, pgd)


def test_pgd_beats_fgsm_and_restarts_keep_every_success(tiny):
    model, x, y = tiny
    assert accuracy(model, create_attack("pgd", model)(x, y, 0.2), y) <= accuracy(
        model, create_attack("fgsm", model)(x, y, 0.2), y
    )
    torch.manual_seed(1)
    one = create_attack("pgd", model, steps=3, restarts=1)(x, y, 0.2)
    torch.manual_seed(1)  # same first restart: its successes must survive the later restarts
    three = create_attack("pgd", model, steps=3, restarts=3)(x, y, 0.2)
    with torch.no_grad():
        fooled_one = model(one).argmax(1) != y
        fooled_three = model(three).argmax(1) != y
    assert fooled_one.any()
    assert bool((fooled_three | ~fooled_one).all())
    assert fooled_three.sum() >= fooled_one.sum()


def test_dlr_and_cw_losses_by_hand():
    logits = torch.tensor([[3.0, 1.0, 0.0, -1.0], [0.0, 2.0, 1.0, 5.0]])
    y = torch.tensor([0, 1])
    # margin z_y - max other: 3 - 1 = 2 and 2 - 5 = -3; z1 - z3: 3 - 0 = 3 and 5 - 1 = 4
    assert torch.allclose(dlr_loss(logits, y), torch.tensor([-2 / 3, 3 / 4]))
    assert torch.allclose(cw_loss(torch.tensor([[1.0, 3.0]]), torch.tensor([0])), torch.tensor([2.0]))


def test_pgd_dlr_on_two_classes_uses_the_margin_and_works():
    model, x, y = train_tiny(classes=2, channels=3)
    clean = accuracy(model, x, y)
    x_adv = create_attack("pgd_dlr", model)(x, y, 0.3)
    assert torch.isfinite(x_adv).all()
    assert accuracy(model, x_adv, y) <= clean - 0.4


def test_deepfool_reaches_a_linear_boundary_in_one_step():
    """On an affine 2-class model DeepFool's first step is exact: the L2 distance to the boundary
    is |f| / ||w||, then the overshoot pushes across it."""
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    x = 0.45 + 0.1 * torch.rand(6, 1, 4, 4)
    with torch.no_grad():
        # Boundary through the grey image 0.5: every point is < 0.2 away in L2, so no step reaches
        # the [0, 1] clip.
        lin[1].bias[1] = lin[1].bias[0] - 0.5 * (lin[1].weight[1] - lin[1].weight[0]).sum()
        logits = lin(x)
        y = logits.argmax(1)
        w = lin[1].weight[1] - lin[1].weight[0]
        gap = (logits[:, 1] - logits[:, 0]).abs()
    x_adv = create_attack("deepfool", lin, steps=1, overshoot=0.02)(x, y, 1.0)
    dist = (x_adv - x).flatten(1).norm(dim=1)
    assert torch.allclose(dist, 1.02 * (gap / w.norm() + 1e-4), rtol=1e-4)
    assert bool((lin(x_adv).argmax(1) != y).all())


def test_square_is_reproducible_from_torch_seed_and_follows_the_schedule(tiny):
    model, x, y = tiny
    attack = create_attack("square", model, n_queries=50)
    torch.manual_seed(3)
    a = attack(x[:20], y[:20], 0.2)
    torch.manual_seed(3)
    b = attack(x[:20], y[:20], 0.2)
    assert torch.equal(a, b)
    # Square perturbations sit at the corners of the box (or on the [0, 1] clip).
    d = (a - x[:20]).abs()
    assert bool((((d - 0.2).abs() < 1e-6) | (a == 0) | (a == 1)).all())
    # AutoAttack's standard schedule: absolute iterations (p halves after iteration 10 whatever the budget);
    # rescaled, iteration 3 of 1000 counts as 30 of 10000
    assert p_selection(0.8, 0, 1000) == 0.8 and p_selection(0.8, 3, 1000) == 0.8 and p_selection(0.8, 11, 1000) == 0.4
    assert p_selection(0.8, 3, 1000, rescale=True) == 0.4
    assert p_selection(0.8, 999, 1000, rescale=True) == 0.8 / 512 and p_selection(0.8, 999, 1000) == 0.8 / 16


def test_attack_accepts_inference_tensors(tiny):
    model, x, y = tiny
    with torch.inference_mode():
        xi, yi = x.clone(), y.clone()
        x_adv = create_attack("pgd", model, steps=2)(xi, yi, 0.1)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6


def test_registry_errors_are_one_line_and_name_the_key(tiny):
    model = tiny[0]
    allowed = "apgd_ce, apgd_t, autoattack, deepfool, fab_t, fgsm, pgd, pgd_dlr, square"
    with pytest.raises(BatchoutError, match=rf"^attack: unknown value 'cw'; allowed: {allowed}"):
        create_attack("cw", model)
    with pytest.raises(BatchoutError, match=r"^pgd\.stepz: unknown setting; did you mean 'steps'"):
        create_attack("pgd", model, stepz=3)
    with pytest.raises(
        BatchoutError, match=r"^deepfool\.steps: got 9; allowed: an integer in \[1, 5\]"
    ):
        create_attack("deepfool", model, steps=9)
    with pytest.raises(BatchoutError, match=r"^pgd_dlr\.random_start: got 'yes'"):
        create_attack("pgd_dlr", model, random_start="yes")
    with pytest.raises(BatchoutError, match=r"^fgsm\.steps: unknown setting"):
        create_attack("fgsm", model, steps=1)
    with pytest.raises(BatchoutError, match=r"eps: got 1.5; allowed: a pixel budget in \[0, 1\]"):
        create_attack("fgsm", model)(tiny[1], tiny[2], 1.5)
    with pytest.raises(BatchoutError, match=r"attack labels y"):
        create_attack("fgsm", model)(tiny[1], tiny[2][:3], 0.1)
    with pytest.raises(BatchoutError, match=r"p_init: got 2\.0; allowed: a number in \[0\.0, 1\.0\]"):
        create_attack("square", model, p_init=2.0)


def test_pgd_early_stop_false_returns_madrys_final_iterate(tiny):
    """Adversarial training after Madry et al. uses the final projected iterate; evaluation keeps
    the first iterate that fools the model (early stop)."""
    model, x, y = tiny
    eps, alpha, steps = 0.3, 0.05, 7
    final = create_attack("pgd", model, steps=steps, step_size=alpha, random_start=False, early_stop=False)(x, y, eps)
    manual = x.clone()
    for _ in range(steps):  # Madry's update, written out
        manual.requires_grad_(True)
        (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(manual), y, reduction="sum"), manual)
        manual = torch.min(torch.max(manual.detach() + alpha * grad.sign(), x - eps), x + eps).clamp(0, 1)
    assert torch.allclose(final, manual, atol=1e-6)
    early = create_attack("pgd", model, steps=steps, step_size=alpha, random_start=False)(x, y, eps)
    assert not torch.allclose(early, final)  # fooled points stopped at their first fooling iterate


def test_adversarial_training_uses_the_final_iterate(monkeypatch):
    from batchout.config import Adversarial
    from batchout.training import adversarial, methods

    seen = []
    real = adversarial.PGD

    def spy(model, **kw):
        seen.append(kw)
        return real(model, **kw)

    monkeypatch.setattr(adversarial, "PGD", spy)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    cfg = SimpleNamespace(adversarial=Adversarial(attack="pgd", eps=0.1, steps=3, fraction=0.5))
    perturb = methods.batch_perturbation("adversarial")
    assert perturb is adversarial.perturb_batch and methods.batch_perturbation("standard") is None
    out = perturb(model, torch.rand(4, 1, 2, 2), torch.tensor([0, 1, 2, 0]), cfg)
    assert out.shape == (4, 1, 2, 2)
    assert seen == [{"steps": 3, "step_size": 2.5 * 0.1 / 3, "early_stop": False}]
