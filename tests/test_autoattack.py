"""The ``autoattack`` ensemble: a cascade of APGD-CE, APGD-T, FAB-T and Square whose per-example worst
case is never above any member's, with a per-member breakdown in the robust grid.

Usage: ``.venv/bin/pytest tests/test_autoattack.py -q``
"""

from __future__ import annotations

import pytest
import torch
from tiny_models import train_tiny

from batchout.attacks.autoattack import MEMBERS, AutoAttack, standard_budget
from batchout.attacks.registry import create_attack
from batchout.errors import BatchoutError
from batchout.evaluation.robust import robust_grid

CHEAP = {"apgd_ce": {"steps": 10}, "apgd_t": {"steps": 10}, "fab_t": {"steps": 10}, "square": {"n_queries": 50}}
EPS = [0.1, 0.2]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny():
    return train_tiny()


def test_standard_version_members_and_budgets():
    attack = create_attack("autoattack", torch.nn.Linear(2, 3))
    assert list(attack.members) == ["apgd_ce", "apgd_t", "fab_t", "square"] == list(MEMBERS)
    assert attack.members["square"].n_queries == 5000 and attack.members["apgd_t"].settings["steps"] == 100
    assert attack.standard and attack.budget() == standard_budget() and attack.describe().startswith("the standard")
    small = create_attack("autoattack", torch.nn.Linear(2, 3), square={"n_queries": 10})
    assert small.members["square"].n_queries == 10 and small.members["square"].p_init == 0.8
    assert not small.standard and small.describe().startswith("a reduced-budget AutoAttack")


def test_the_ensemble_imports_its_members_not_the_registry():
    """A composite imports its parts (no autoattack <-> registry cycle): building it never touches the registry."""
    import ast
    import inspect

    import batchout.attacks.autoattack as module

    imported = {n.module for n in ast.walk(ast.parse(inspect.getsource(module))) if isinstance(n, ast.ImportFrom)}
    assert "batchout.attacks.registry" not in imported
    assert {"batchout.attacks.apgd", "batchout.attacks.fab", "batchout.attacks.square"} <= imported


def test_escalation_doubles_every_member_up_to_the_cap_then_the_restarts():
    cap = {"steps": 40, "n_targets": 9, "n_queries": 300, "restarts": 2}
    quick = AutoAttack(torch.nn.Identity(), apgd_ce={"steps": 10}, apgd_t={"steps": 10, "n_targets": 3}, fab_t=False,
                       square={"n_queries": 100})
    budgets = []
    attack = quick
    while (attack := attack.escalated(cap, classes=10)) is not None:
        b = attack.budget()
        budgets.append((b["apgd_ce"]["steps"], b["apgd_ce"]["restarts"], b["apgd_t"]["n_targets"],
                        b["square"]["n_queries"], b["fab_t"]))
    assert budgets == [(20, 1, 6, 200, False), (40, 1, 9, 300, False), (40, 2, 9, 300, False)]
    # three classes: at most 2 targets, and a setting above the cap is never lowered to it
    three = AutoAttack(torch.nn.Identity(), apgd_ce=False, apgd_t={"steps": 80, "n_targets": 3}, fab_t=False,
                       square=False).escalated(cap, classes=3)
    assert three.budget()["apgd_t"] == {"steps": 80, "restarts": 2, "n_targets": 3}
    assert create_attack("fgsm", torch.nn.Identity()).escalated(cap, classes=10) is None  # no budget to grow
    assert create_attack("deepfool", torch.nn.Identity(), steps=5).escalated(cap, classes=10) is None  # its cap


def test_members_can_be_left_out_but_not_all():
    cheap = create_attack("autoattack", torch.nn.Linear(2, 3), fab_t=False, square={"n_queries": 10})
    assert list(cheap.members) == ["apgd_ce", "apgd_t", "square"]
    with pytest.raises(BatchoutError, match=r"^autoattack: every member is left out"):
        create_attack("autoattack", torch.nn.Linear(2, 3), apgd_ce=False, apgd_t=False, fab_t=False, square=False)


def test_bad_member_settings_are_one_line_errors():
    with pytest.raises(BatchoutError, match=r"^autoattack\.square: got 5; allowed: a mapping"):
        create_attack("autoattack", torch.nn.Linear(2, 3), square=5)
    with pytest.raises(BatchoutError, match=r"^square\.n_querys: unknown setting; did you mean 'n_queries'"):
        create_attack("autoattack", torch.nn.Linear(2, 3), square={"n_querys": 5})


def test_grid_breakdown_and_worst_case_never_above_a_member(tiny):
    model, x, y = tiny
    torch.manual_seed(0)
    grid = robust_grid(model, x, y, {"pgd": {}, "autoattack": CHEAP}, EPS, batch_size=64, device="cpu")
    parts = grid.breakdown("autoattack")
    assert list(parts) == list(MEMBERS)
    ensemble, pgd, worst = (grid.acc(f) for f in (grid.robust["autoattack"], grid.robust["pgd"], grid.worst))
    for i in range(len(EPS)):
        after = [parts[m][i] for m in MEMBERS]
        assert after == sorted(after, reverse=True)  # each member only removes points
        assert ensemble[i] == after[-1] <= grid.clean_acc
        assert worst[i] <= min(ensemble[i], pgd[i])
    assert ensemble[-1] < grid.clean_acc  # it does break points


def test_ensemble_called_directly_matches_the_grids_cascade(tiny):
    model, x, y = tiny
    torch.manual_seed(0)
    grid = robust_grid(model, x, y, {"autoattack": CHEAP}, [0.2], batch_size=500, device="cpu")
    torch.manual_seed(0)
    clean = model(x).argmax(1) == y
    adv = create_attack("autoattack", model, **CHEAP)(x[clean], y[clean], 0.2)
    with torch.no_grad():
        robust = (model(adv).argmax(1) == y[clean]).float().sum().item() / len(y)
    assert robust == grid.acc(grid.robust["autoattack"])[0]  # one cascade: the ensemble's own, run by the grid
