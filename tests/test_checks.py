"""Every gradient-masking check can fail: a model or attack setting built to fail each one, beside
the honest tiny model that passes them all (test_evaluate.py). Also: evaluation runs in eval mode.

Usage: ``.venv/bin/pytest tests/test_checks.py -q``
"""

from __future__ import annotations

import pytest
import torch
from tiny_models import ZeroGradient, train_tiny
from torch import nn

from batchout.config import Checks
from batchout.evaluation.checks import CONVERGENCE, sanity_checks, strong_pgd, vanishing_gradient
from batchout.evaluation.informative import informative_eps
from batchout.evaluation.robust import converged_grid, robust_grid

CHECKS = Checks(subset=100, tolerance=0.03, large_eps_max_acc=0.1, square_queries=200)
EPS = [0.05, 0.15, 0.25]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    return train_tiny()



class RightOnlyWhenFarOrClean(nn.Module):
    """Correct on clean images and on images perturbed by more than ``far`` (L-inf, pixels), wrong
    in between, with no usable gradient: accuracy under PGD *rises* with eps, which no honest model
    does (the monotone check must fail)."""

    def __init__(self, inner: nn.Module, clean: torch.Tensor, far: float) -> None:
        super().__init__()
        self.inner, self.clean, self.far = inner, clean.flatten(1), far

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.inner(x.detach())
        dist = torch.cdist(x.detach().flatten(1), self.clean, p=float("inf")).min(dim=1).values
        wrong = (dist > 1e-6) & (dist <= self.far)
        return torch.where(wrong[:, None], logits.roll(1, dims=1), logits)


def _checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: dict) -> dict:
    torch.manual_seed(0)
    grid = robust_grid(model, x, y, attacks, EPS, batch_size=64, device="cpu")
    return sanity_checks(model, x, y, grid, CHECKS, large_eps=0.5, batch_size=64, device="cpu")


def _failed(out: dict) -> set[str]:
    return {k for k, v in out.items() if k.endswith("_ok") and v is False}


def test_honest_model_passes(tiny):
    out = _checks(*tiny, {"fgsm": {}, "pgd": {}})
    assert _failed(out) == set() and not out["suspected_gradient_masking"], out


def test_monotone_fails_when_accuracy_rises_with_eps(tiny):
    model = RightOnlyWhenFarOrClean(tiny[0], tiny[1], far=0.2)
    out = _checks(model, tiny[1], tiny[2], {"fgsm": {}, "pgd": {}})
    assert not out["monotone_ok"] and out["monotone_max_rise"] > 0.5 and out["suspected_gradient_masking"]


def test_more_iterations_fails_when_pgd_has_not_converged(tiny):
    """One PGD step of 0.002 is far from converged: 40 steps x 2 restarts lower accuracy a lot."""
    weak = {"steps": 1, "step_size": 0.002, "random_start": False}
    out = _checks(*tiny, {"fgsm": {}, "pgd": weak})
    assert not out["more_iterations_ok"] and out["more_iterations_drop"] > 0.2, out
    assert out["convergence"]["acc"][-1] < out["convergence"]["acc"][0] + 1e-9


def test_more_iterations_is_always_stronger_than_every_gradient_attack_of_the_grid(tiny):
    """params.paper.yaml's grid runs PGD 40 x 2 and the standard AutoAttack (100 steps): the old check's
    fixed 40 x 2 compared PGD with itself. Now 2x the restarts and 4x the steps of the strongest."""
    model = tiny[0]
    assert strong_pgd(model, {"fgsm": {}, "pgd": {"steps": 40, "restarts": 2}, "autoattack": {}}) == (4, 400)
    quick = {"fgsm": {}, "autoattack": {"apgd_ce": {"steps": 10}, "apgd_t": {"steps": 10, "n_targets": 3},
                                        "fab_t": False, "square": {"n_queries": 100}}}
    assert strong_pgd(model, quick) == (2, 40)  # the quick profile's check is unchanged
    out = _checks(*tiny, {"fgsm": {}, "pgd": {"steps": 40, "restarts": 2}})
    conv = out["convergence"]
    assert (conv["restarts"][-1], conv["steps"][-1]) == (4, 160) and len(conv["acc"]) == len(CONVERGENCE) + 1


def test_ensemble_check_fails_where_the_escalation_hits_its_cap_and_passes_where_it_converged(tiny):
    """The ensemble check is folded into the escalation (every eps, every point still robust, each round at
    double the budget before it): one APGD-CE step capped at 2 steps keeps breaking points at the cap (the
    check fails); the quick profile's cascade with the default cap converges on this model (it passes)."""
    weak = {"apgd_ce": {"steps": 1}, "apgd_t": False, "fab_t": False, "square": False}
    model, x, y = tiny
    torch.manual_seed(0)
    ev = converged_grid(model, x, y, {"fgsm": {}, "autoattack": weak}, EPS, 64, "cpu", escalate_attack="autoattack",
                        tolerance=1, cap={"steps": 2, "n_targets": 9, "n_queries": 100, "restarts": 1}, progress=None)
    out = sanity_checks(model, x, y, ev.grid, CHECKS, 0.5, 64, "cpu", escalations=ev.escalations,
                        worst_acc=ev.worst_acc(), progress=None)
    stuck = [e for e in ev.escalations if not e.converged]
    assert stuck and all(e.rounds[-1].broken > 1 for e in stuck)  # the last (capped) round still broke points
    assert not out["ensemble_converged_ok"] and out["suspected_gradient_masking"], out
    assert out["ensemble_drop"] == max(e.rounds[-1].broken / len(y) for e in ev.escalations if e.rounds)
    good = {"apgd_ce": {"steps": 10}, "apgd_t": {"steps": 10, "n_targets": 3}, "fab_t": False,
            "square": {"n_queries": 100}}
    torch.manual_seed(0)
    ev = converged_grid(model, x, y, {"fgsm": {}, "autoattack": good}, EPS, 64, "cpu", escalate_attack="autoattack",
                        tolerance=1, cap={"steps": 100, "n_targets": 9, "n_queries": 5000, "restarts": 4},
                        progress=None)
    out = sanity_checks(model, x, y, ev.grid, CHECKS, 0.5, 64, "cpu", escalations=ev.escalations,
                        worst_acc=ev.worst_acc(), progress=None)
    assert all(e.converged for e in ev.escalations) and out["ensemble_converged_ok"], out
    assert out["ensemble_drop"] <= 1 / len(y)
    assert "ensemble_converged_ok" not in _checks(*tiny, {"fgsm": {}, "pgd": {}})  # nothing escalated: no check


def test_pgd_vs_fgsm_fails_when_fgsm_is_stronger_by_construction(tiny):
    weak = {"steps": 1, "step_size": 0.002, "random_start": False}
    out = _checks(*tiny, {"fgsm": {}, "pgd": weak})
    assert not out["pgd_vs_fgsm_ok"] and out["pgd_minus_fgsm_max"] > 0.2


def test_square_and_large_eps_fail_on_useless_gradients_without_square_in_the_grid(tiny):
    out = _checks(ZeroGradient(tiny[0]), tiny[1], tiny[2], {"fgsm": {}, "pgd": {}})
    assert not out["stronger_attack_ok"] and out["square_minus_pgd"] < -0.3, out
    assert not out["large_eps_ok"]


def test_informative_eps_is_furthest_from_zero_and_clean():
    curve = {0.1: 0.85, 0.2: 0.5, 0.3: 0.1, 0.4: 0.0}
    assert informative_eps([0.1, 0.2, 0.3, 0.4], curve, clean=0.9) == 0.2
    assert informative_eps([0.3, 0.4], curve, clean=0.9) == 0.3


class TrainModeLies(nn.Module):
    """Right in eval mode, always class 0 in train mode (like dropout or BatchOut gone wild)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.inner(x)
        if self.training:
            return torch.zeros_like(logits).index_fill_(1, torch.tensor([0]), 10.0)
        return logits


def test_robust_grid_scores_in_eval_mode_and_restores_the_callers_mode(tiny):
    """The tune stage scored freshly trained models left in train mode: adversarial points must be
    scored by the model that was attacked (eval mode), and the caller's mode must come back."""
    model = TrainModeLies(tiny[0])
    torch.manual_seed(0)
    reference = robust_grid(model.eval(), tiny[1], tiny[2], {"pgd": {}}, EPS, batch_size=64, device="cpu")
    model.train()
    torch.manual_seed(0)
    got = robust_grid(model, tiny[1], tiny[2], {"pgd": {}}, EPS, batch_size=64, device="cpu")
    assert torch.equal(got.robust["pgd"], reference.robust["pgd"]) and got.clean_acc == reference.clean_acc
    assert model.training


def test_the_ensemble_check_and_the_convergence_reach_mlflow_as_metrics():
    from batchout.stages.attack import _flat_metrics

    conv = {"eps_0.1000": {"converged": False, "factor": 8, "budget": "AutoAttack (...)",
                           "passes": {"forward": 900, "backward": 300}}}
    result = {"clean_acc": 0.9, "eps": [0.1], "robust_acc": {}, "robust_ci": {}, "breakdown": {},
              "converge": {"eps": conv},
              "checks": {"subset": 50.0, "ensemble_converged_ok": False, "ensemble_drop": 0.08,
                         "more_iterations_drop": 0.0}}
    flat = _flat_metrics(result)
    assert flat["check.ensemble_drop"] == 0.08 and flat["check.more_iterations_drop"] == 0.0
    assert flat["converged.eps_0.1000"] == 0.0 and flat["budget.eps_0.1000"] == 8.0
    assert flat["passes.eps_0.1000"] == 1200.0
    assert "check.ensemble_converged_ok" not in flat and "check.subset" not in flat  # tags and sizes are not metrics


class Saturated(nn.Module):
    """The same decisions as ``inner`` with logits x1000: a softmax saturated past fp32, so the cross-entropy's
    input gradient is exactly zero wherever the model is right (a masking that FGSM cannot see through)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1000.0 * self.inner(x)


def test_vanishing_gradients_are_measured_where_fgsm_is_blind(tiny):
    model, x, y = tiny
    assert vanishing_gradient(model, x, y, 64, "cpu") == 0.0
    saturated = Saturated(model)
    assert vanishing_gradient(saturated, x, y, 64, "cpu") > 0.9
    torch.manual_seed(0)
    grid = robust_grid(saturated, x, y, {"fgsm": {}, "square": {"n_queries": 200}}, [0.25], 64, "cpu")
    assert grid.acc(grid.robust["fgsm"]) == [grid.clean_acc]  # FGSM's sign step is zero: it cannot move
    assert grid.acc(grid.robust["square"])[0] < grid.clean_acc - 0.2  # the margin still falls
    assert _checks(saturated, x, y, {"fgsm": {}})["vanishing_gradient"] > 0.9
