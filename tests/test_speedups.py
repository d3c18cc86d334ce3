"""The evaluation's shortcuts change no reported number: PGD's per-step early exit, eps-grid reuse
and the ensemble's cascade (the last one: tests/test_evaluate.py, tests/test_autoattack.py).

Each test runs the shortcut and the long way on the same model, examples and random stream and
compares the outputs exactly; each also checks that the shortcut did less work, so a shortcut
that silently stopped working would fail too.
"""

from __future__ import annotations

import pytest
import torch
from tiny_models import blobs, train_tiny
from torch import nn

from batchout.attacks.base import box, cross_entropy, project
from batchout.attacks.registry import create_attack
from batchout.evaluation.robust import robust_grid
from batchout.models import create_model


class RowCounter(nn.Module):
    """Counts the images the wrapped model is run on (forward passes, gradient or not)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.rows = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += len(x)
        return self.model(x)


def full_batch_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int) -> torch.Tensor:
    """PGD as it ran before the early exit: every example stays in the batch for every step and
    keeps its first fooling iterate (seen after at least one step), else its final one."""
    alpha = 2.5 * eps / steps
    lo, hi = box(x, eps)
    adv = project(x + torch.empty_like(x).uniform_(-eps, eps), lo, hi)
    kept, hit = adv, torch.zeros(len(x), dtype=torch.bool)
    for t in range(steps):
        z = adv.detach().requires_grad_(True)
        logits = model(z)
        (grad,) = torch.autograd.grad(cross_entropy(logits, y).sum(), z)
        if t > 0:
            kept = torch.where(hit.view(-1, 1, 1, 1), kept, adv)
            hit = hit | (logits.argmax(1) != y)
        adv = project(adv + alpha * grad.sign(), lo, hi)
    return torch.where(hit.view(-1, 1, 1, 1), kept, adv)


@pytest.fixture(scope="module")
def tiny():
    return train_tiny()


def _lenet_on_blobs() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A convolutional model (batch-size-dependent kernel choices are where exactness could break)."""
    torch.manual_seed(1)
    model = create_model("lenet", num_classes=3, in_channels=1, image_size=8, mean=[0.5], std=[0.25]).eval()
    x, y = blobs(120, seed=3)
    with torch.no_grad():
        y = model(x).argmax(1)  # labels the model gets right: every example is attacked
    return model, x, y


@pytest.mark.parametrize("which", ["mlp", "lenet"])
@pytest.mark.parametrize("eps", [0.05, 0.15])
def test_pgd_early_exit_returns_exactly_what_the_full_batch_loop_returns(tiny, which, eps):
    model, x, y = tiny if which == "mlp" else _lenet_on_blobs()
    model.eval()
    torch.manual_seed(5)
    ref = full_batch_pgd(model, x, y, eps, steps=10)
    counter = RowCounter(model)
    torch.manual_seed(5)
    ours = create_attack("pgd", counter, steps=10)(x, y, eps)
    assert torch.equal(ours, ref)
    fooled_early = int((model(ref).argmax(1) != y).sum())
    assert fooled_early > 0, "no example was fooled: the test would not exercise the exit"
    assert counter.rows < 10 * len(x)  # fooled examples left the batch


class _NonMonotone:
    """An attack that works at eps <= 0.1 and gives up above: a weak spot reuse must not hide."""

    def __init__(self, model: nn.Module) -> None:
        self.pgd, self.settings = create_attack("pgd", model, steps=10), {}

    def __call__(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        return self.pgd(x, y, eps) if eps <= 0.1 else x.clone()

    def describe(self) -> str:
        return "PGD 10 steps up to eps 0.1"


def test_eps_reuse_reports_the_same_numbers_with_less_work(tiny):
    model, x, y = tiny
    # Deterministic attacks: with random starts, attacking fewer examples draws a different random
    # stream for the rest, and the comparison would measure that instead.
    attacks = {"fgsm": {}, "pgd": {"steps": 10, "random_start": False}, "deepfool": {"steps": 5}}
    eps = [0.05, 0.1, 0.15, 0.25]
    runs = {}
    for reuse in (False, True):
        counter = RowCounter(model)
        torch.manual_seed(0)
        runs[reuse] = (robust_grid(counter, x, y, attacks, eps, 64, "cpu", reuse_eps=reuse), counter.rows)
    (ind, rows_ind), (reu, rows_reu) = runs[False], runs[True]
    assert torch.equal(reu.worst, ind.worst) and torch.equal(reu.clean, ind.clean)
    for name in attacks:
        assert torch.equal(reu.robust[name], ind.robust[name]), name
    assert ind.acc(ind.worst)[0] > ind.acc(ind.worst)[-1]  # the budgets span fooled and robust examples
    assert rows_reu < rows_ind
    assert sum(p.forward for p in reu.passes["pgd"]) < sum(p.forward for p in ind.passes["pgd"])  # counted too


def test_eps_reuse_keeps_an_adversarial_example_a_larger_budget_missed(tiny, monkeypatch):
    """Reuse changes a number only where an attack failed at a larger eps on an example it broke at
    a smaller one; that example's adversarial image is inside the larger ball, so the lower
    accuracy is the right one (never a robust example assumed at a smaller eps)."""
    import batchout.evaluation.robust as robust

    model, x, y = tiny
    monkeypatch.setattr(robust, "create_attack", lambda name, m, **kw: _NonMonotone(m))
    torch.manual_seed(0)
    ind = robust.robust_grid(model, x, y, {"flaky": {}}, [0.1, 0.2], 64, "cpu")
    torch.manual_seed(0)
    reu = robust.robust_grid(model, x, y, {"flaky": {}}, [0.1, 0.2], 64, "cpu", reuse_eps=True)
    acc_ind, acc_reu = ind.acc(ind.robust["flaky"]), reu.acc(reu.robust["flaky"])
    assert acc_ind[1] == ind.clean_acc > acc_ind[0]  # gave up at 0.2
    assert acc_reu == [acc_ind[0]] * 2
    assert acc_reu[0] == acc_ind[0]  # the smaller eps is untouched
