"""robust_grid numbers and the gradient-masking checks on a tiny model trained here.

Usage: ``.venv/bin/pytest tests/test_evaluate.py -q``
"""

from __future__ import annotations

import json

import pytest
import torch
from tiny_models import ZeroGradient, train_tiny
from torch import nn

from batchout.config import Checks
from batchout.errors import BatchoutError
from batchout.evaluation.checks import sanity_checks
from batchout.evaluation.grid import GridResult
from batchout.evaluation.passes import Passes
from batchout.evaluation.robust import robust_grid

EPS = [0.0, 0.15, 0.35]
ATTACKS = {"fgsm": {}, "pgd": {"steps": 10}, "square": {"n_queries": 300}}  # 8x8 images: the first patches cover 7x7
CHECKS = Checks(subset=100, tolerance=0.03, large_eps_max_acc=0.1)



pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A Normalize-first MLP fitted to blobs (full-batch SGD, a fraction of a second), 200 test images."""
    return train_tiny()


@pytest.fixture(scope="module")
def grid(tiny) -> GridResult:
    torch.manual_seed(0)
    return robust_grid(tiny[0], tiny[1], tiny[2], ATTACKS, EPS, batch_size=64, device="cpu")


def test_grid_shapes_and_values(tiny, grid):
    model, x, y = tiny
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    assert grid.n == 200 and grid.clean_acc == pytest.approx(clean) and clean >= 0.95
    assert grid.eps == EPS and grid.settings == ATTACKS and not grid.reuse_eps
    worst = grid.acc(grid.worst)
    for name in ATTACKS:
        flags = grid.robust[name]
        assert flags.shape == (len(EPS), 200) and flags.dtype == torch.bool
        acc = grid.acc(flags)
        assert acc[0] == grid.clean_acc and torch.equal(flags[0], grid.clean)
        assert all(b <= a + 0.02 for a, b in zip(acc, acc[1:], strict=False)), (name, acc)
        assert acc[-1] <= 0.1  # eps 0.35 breaks this non-robust model
        assert not (grid.worst & ~flags).any()  # the worst case: robust only if robust to every attack
    assert torch.equal(grid.worst, grid.robust["fgsm"] & grid.robust["pgd"] & grid.robust["square"])
    assert grid.acc(grid.robust["pgd"])[1] <= grid.acc(grid.robust["fgsm"])[1]
    assert worst[1] < grid.clean_acc - 0.05
    # exact accuracies: the count over n in float64, as the metrics files have always written them
    assert worst[1] == int(grid.worst[1].sum()) / 200


def test_every_attack_carries_its_passes(tiny, grid):
    """FGSM: one forward and one backward per attacked point, plus the forward that scores it; nothing at eps 0."""
    n_correct = int(grid.clean.sum())
    fgsm = grid.passes["fgsm"]
    assert fgsm[0] == Passes(0, 0)
    assert fgsm[1] == Passes(2 * n_correct, n_correct)
    assert grid.passes["square"][1].backward == 0 < grid.passes["square"][1].forward  # gradient-free
    assert grid.passes["pgd"][1].backward <= 10 * n_correct  # at most 10 steps each, fewer where fooled early


def test_misclassified_examples_are_never_robust_and_uint8_input_works(tiny):
    model, x, y = tiny
    y_bad = y.clone()
    y_bad[:50] = (y[:50] + 1) % 3  # wrong labels: the clean pass already fails these
    x8 = (x * 255).round().to(torch.uint8)
    out = robust_grid(model, x8, y_bad, {"fgsm": {}}, [0.0, 0.05], batch_size=32, device="cpu")
    with torch.no_grad():
        expected = (model(x8.float() / 255).argmax(1) == y_bad).float().mean().item()
    assert out.clean_acc == pytest.approx(expected) and expected <= 0.76
    acc = out.acc(out.robust["fgsm"])
    assert acc[0] == out.clean_acc and acc[1] <= out.clean_acc
    assert not out.robust["fgsm"][:, ~out.clean].any()  # a point wrong on clean input is never robust


def test_bad_inputs_are_one_line_errors(tiny):
    model, x, y = tiny
    with pytest.raises(BatchoutError, match=r"images: float pixels span \[.*\]; allowed: \[0, 1\]"):
        robust_grid(model, (x - 0.5) / 0.25, y, {"fgsm": {}}, [0.1], 64, "cpu")
    with pytest.raises(BatchoutError, match=r"attack: unknown value 'bim'"):
        robust_grid(model, x, y, {"bim": {}}, [0.1], 64, "cpu")
    with pytest.raises(BatchoutError, match=r"eps: got 8; allowed"):
        robust_grid(model, x, y, {"fgsm": {}}, [8], 64, "cpu")
    with pytest.raises(BatchoutError, match=r"labels: got shape \(3,\)"):
        robust_grid(model, x, y[:3], {"fgsm": {}}, [0.1], 64, "cpu")


def test_honest_model_passes_every_check(tiny, grid):
    torch.manual_seed(0)
    out = sanity_checks(tiny[0], tiny[1], tiny[2], grid, CHECKS, large_eps=0.5, batch_size=64, device="cpu")
    json.dumps(out)
    assert out["subset"] == 100.0 and out["informative_eps"] == 0.15
    assert out["large_eps_acc"] <= 0.1
    conv = out["convergence"]
    assert conv["eps"] == 0.15 and conv["steps"] == [5, 10, 20, 40, 40] and conv["restarts"] == [1, 1, 1, 1, 2]
    assert conv["acc"][-1] <= conv["acc"][0] + 0.03  # more steps and restarts never help the model
    assert not out["suspected_gradient_masking"], out


def test_zero_gradient_model_is_flagged_by_large_eps_and_square(tiny):
    """Like the ~95% FGSM accuracy at eps 0.5 reported on MNIST: high accuracy under gradient
    attacks, broken by a gradient-free one and by a budget that can erase the image."""
    masked, x, y = ZeroGradient(tiny[0]), tiny[1], tiny[2]
    torch.manual_seed(0)
    grid = robust_grid(masked, x, y, ATTACKS, EPS, batch_size=64, device="cpu")
    assert grid.acc(grid.robust["fgsm"]) == [grid.clean_acc] * len(EPS)  # FGSM cannot move at all
    assert grid.acc(grid.robust["square"])[-1] <= 0.1
    out = sanity_checks(masked, x, y, grid, CHECKS, large_eps=0.5, batch_size=64, device="cpu")
    assert out["suspected_gradient_masking"]
    assert not out["stronger_attack_ok"] and out["square_minus_pgd"] < -0.5
    assert not out["large_eps_ok"] and out["large_eps_acc"] > 0.5
    assert out["pgd_vs_fgsm_ok"]  # PGD's random start still beats a frozen FGSM: not the culprit


def test_checks_run_missing_attacks_themselves(tiny):
    """A grid with neither pgd nor fgsm nor square: PGD, FGSM and Square run on the subset."""
    masked, x, y = ZeroGradient(tiny[0]), tiny[1], tiny[2]
    grid = robust_grid(masked, x, y, {"deepfool": {}}, [0.1, 0.3], batch_size=64, device="cpu")
    out = sanity_checks(masked, x, y, grid, Checks(subset=40), large_eps=0.5, batch_size=64, device="cpu")
    assert out["subset"] == 40.0
    # Square (gradient-free, always run) and the large budget both give it away.
    assert not out["large_eps_ok"] and not out["stronger_attack_ok"] and out["suspected_gradient_masking"]
    honest = sanity_checks(tiny[0], x, y, grid, Checks(subset=40), large_eps=0.5, batch_size=64, device="cpu")
    assert not honest["suspected_gradient_masking"], honest
