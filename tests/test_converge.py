"""Attack until converged: the escalation finds the points a larger budget breaks, stops where a doubled
round breaks at most the tolerance, says "upper bound" where the cap stops it first; its cost is counted in
forward and backward passes; and the tuner's converged objective cannot be fooled by masked gradients.

Usage: ``.venv/bin/pytest tests/test_converge.py -q``
"""

from __future__ import annotations

import pytest
import torch
from tiny_models import ZeroGradient, train_tiny
from torch import nn

from batchout.attacks.registry import create_attack
from batchout.config import load_params
from batchout.evaluation.converge import escalate
from batchout.evaluation.passes import PassCounter, Passes
from batchout.evaluation.record import converge_record
from batchout.evaluation.robust import converged_grid, robust_grid
from batchout.stages import tune as tune_stage
from batchout.training.loop import Split

CAP = {"steps": 100, "n_targets": 9, "n_queries": 5000, "restarts": 4}
WEAK = {"apgd_ce": {"steps": 1}, "apgd_t": False, "fab_t": False, "square": False}  # one APGD-CE step

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny():
    return train_tiny()


class Unbreakable(nn.Module):
    """Class 0 by 100 logits, which no pixel budget can overturn, with a real (tiny) input gradient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.01 * x.flatten(1)[:, :3] + torch.tensor([100.0, 0.0, 0.0])



def _counted(name: str, **settings) -> Passes:
    counter = PassCounter(Unbreakable())
    x, y = torch.rand(7, 1, 8, 8), torch.zeros(7, dtype=torch.long)
    create_attack(name, counter, **settings)(x, y, 0.1)
    return counter.passes()


def test_the_pass_counter_equals_a_hand_count():
    """7 points no attack can break, so none leaves early: every pass is the schedule's."""
    assert _counted("fgsm") == Passes(7, 7)  # one gradient
    # a clean forward, the random start's gradient, then one gradient per step
    assert _counted("apgd_ce", steps=5) == Passes(7 * (1 + 1 + 5), 7 * (1 + 5))
    # 3 classes: 2 targets whatever n_targets says, each a start and 4 steps, after one clean forward
    assert _counted("apgd_t", steps=4, n_targets=9) == Passes(7 * (1 + 2 * 5), 7 * 2 * 5)
    assert _counted("square", n_queries=20) == Passes(7 * 20, 0)  # n_queries counts the initial query
    # the cascade scores each member's output once: + 1 forward per member and point
    assert _counted("autoattack", apgd_ce={"steps": 5}, apgd_t=False, fab_t=False, square={"n_queries": 20}) == \
        Passes(7 * (7 + 1) + 7 * (20 + 1), 7 * 6)


def test_a_model_whose_points_fall_only_under_a_larger_budget_converges_to_the_lower_number(tiny):
    """One APGD-CE step leaves points that more steps break: the escalation doubles until a round breaks at
    most one point, and lands where a 100-step x 4-restart APGD-CE lands (without escalation the grid's
    number stays at the first budget's)."""
    model, x, y = tiny
    torch.manual_seed(0)
    ev = converged_grid(model, x, y, {"autoattack": WEAK}, [0.2], 64, "cpu", escalate_attack="autoattack",
                        tolerance=1, cap=CAP, progress=None)
    esc = ev.escalations[0]
    first, final = ev.grid.acc(ev.grid.worst)[0], ev.worst_acc()[0]
    torch.manual_seed(0)
    strong = robust_grid(model, x, y, {"apgd_ce": {"steps": 100, "restarts": 4}}, [0.2], 64, "cpu", progress=None)
    assert esc.converged and final < first - 0.05, (first, final)
    assert final <= strong.acc(strong.worst)[0] + 1 / len(y)  # within the tolerance of the strong attack
    assert not (esc.robust & ~ev.grid.worst[0]).any()  # a point once broken stays broken
    assert [r.budget["apgd_ce"]["steps"] for r in esc.rounds] == [2 ** (i + 1) for i in range(len(esc.rounds))]
    assert esc.rounds[-1].broken <= 1 < esc.rounds[0].broken
    assert [r.attacked - r.broken for r in esc.rounds[:-1]] == [r.attacked for r in esc.rounds[1:]]
    assert all(r.passes.backward > 0 for r in esc.rounds) and esc.passes == sum((r.passes for r in esc.rounds),
                                                                              Passes())


def test_a_model_still_falling_at_the_cap_is_an_upper_bound(tiny):
    model, x, y = tiny
    torch.manual_seed(0)
    capped = {"steps": 2, "n_targets": 9, "n_queries": 100, "restarts": 1}
    ev = converged_grid(model, x, y, {"autoattack": WEAK}, [0.2], 64, "cpu", escalate_attack="autoattack",
                        tolerance=1, cap=capped, progress=None)
    esc = ev.escalations[0]
    assert not esc.converged and len(esc.rounds) == 1 and esc.rounds[0].broken > 1
    doc = converge_record(ev, "autoattack", 1, capped)["eps"]["eps_0.2000"]
    assert doc["converged"] is False and doc["factor"] == 2 and "APGD-CE 2 steps" in doc["budget"]
    assert [r["acc"] for r in doc["rounds"]] == [ev.grid.acc(ev.grid.worst)[0], ev.worst_acc()[0]]


def test_few_points_left_need_no_round_and_an_unbudgeted_attack_has_none():
    x, y = torch.rand(5, 1, 8, 8), torch.zeros(5, dtype=torch.long)
    counter = PassCounter(Unbreakable())
    aa = create_attack("autoattack", counter, **WEAK)
    one_left = torch.tensor([True, False, False, False, False])
    esc = escalate(aa, counter, x, y, one_left, 0.1, tolerance=1, cap=CAP, classes=3)
    assert esc.converged and esc.rounds == [] and counter.passes() == Passes()  # 1 point cannot fall by more than 1
    fgsm = create_attack("fgsm", counter)
    esc = escalate(fgsm, counter, x, y, torch.ones(5, dtype=torch.bool), 0.1, tolerance=1, cap=CAP, classes=3)
    assert not esc.converged and esc.rounds == []  # FGSM has no budget to double: its number is an upper bound


def test_every_round_says_what_it_attacks_and_what_it_broke(tiny):
    """A long escalation must not be silent: a line before each round, one per member, one after."""
    model, x, y = tiny
    counter, lines = PassCounter(model), []
    aa = create_attack("autoattack", counter, **{**WEAK, "square": {"n_queries": 5}})
    torch.manual_seed(0)
    esc = escalate(aa, counter, x, y, torch.ones(len(y), dtype=torch.bool), 0.2, tolerance=1, cap=CAP, classes=3,
                   note=lines.append)
    assert len(esc.rounds) >= 2 and len(lines) == 4 * len(esc.rounds)  # start, APGD-CE, Square, end
    first = esc.rounds[0]
    assert lines[0] == f"eps 0.2 round 1: {first.attacked:,} points still robust, attacking with {first.words}"
    assert lines[1].startswith(f"eps 0.2 round 1: APGD-CE 2 steps broke {first.parts['apgd_ce']:,} ")
    assert lines[3].startswith(f"eps 0.2 round 1: broke {first.broken:,} of {first.attacked:,} (tolerance 1)")
    assert f"{first.passes.total:,} passes" in lines[3]

# ---------------------------------------------------------------- the tuner and masked gradients
def _trial_score(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, bool]:
    """The tune stage's own trial scoring, with the quick profile's tune settings, at eps 0.15."""
    params = load_params("params.yaml")
    params = params.model_copy(update={"tune": params.tune.model_copy(update={"attack_eps": 0.15})})
    runner = tune_stage.TrialRunner(params, {}, Split(x, y), Split(x, y), torch.device("cpu"), "study", "parent")
    torch.manual_seed(0)
    return runner.evaluate(model)


def test_the_tuner_is_not_fooled_by_a_model_that_masks_its_gradients(tiny, repo_root, monkeypatch, tmp_path):
    """ZeroGradient(model) is the same function as the model (equal true robustness) with no input gradient.
    The old objective (PGD, 5 steps) scored it far above the model, so the search selected for masking. The
    converged objective marks it masked (gradient-free Square broke what the gradient attack could not), the
    sampler treats it as infeasible, and the pick chooses the honest trial although the masked bound is higher."""
    monkeypatch.chdir(repo_root)
    model, x, y = tiny
    honest, masked = _trial_score(model, x, y), _trial_score(ZeroGradient(model), x, y)
    assert honest[2] is False and masked[2] is True
    torch.manual_seed(0)
    old = [robust_grid(m, x, y, {"pgd": {"steps": 5}}, [0.15], 64, "cpu", progress=None)
           for m in (model, ZeroGradient(model))]
    assert old[1].acc(old[1].worst)[0] > old[0].acc(old[0].worst)[0] + 0.05  # what the PGD objective rewarded
    assert masked[1] > honest[1]  # its number is only an upper bound, so it must not be what is picked

    from batchout import tuning

    tune = load_params("params.yaml").tune
    study = tuning.open_study("masking", tuning.storage_spec(None, tmp_path / "optuna.journal"), tune)
    scores = iter([honest, masked])

    def trial(ctx: tuning.TrialContext) -> tuple[float, float]:
        clean, robust, is_masked = next(scores)
        ctx.mark_masked(is_masked)
        return clean, robust

    tuning.optimize(study, tune, trial, quota=2, total=2)
    first, second = study.trials
    best = tuning.summarize(study, tune)
    assert best["trial"] == first.number and best["value"] == honest[1] and "masked" not in best
    assert (first.constraints, second.constraints) == ({"masked": 0.0}, {"masked": 1.0})  # TPE: infeasible
    assert second.value == masked[1] > first.value  # scored by its upper bound, and marked


def test_the_standard_estimate_takes_the_data_sets_targets_and_is_left_out_where_unknown():
    """reporting.cost.standard_at: on CIFAR3 the standard version's targeted members run 2 targets, not 9
    (its estimate is then a third lower per surviving point); an image-folder data set has no estimate."""
    from conftest import converge_doc

    from batchout.reporting.cost import run_passes, standard_at, standard_passes

    record = {"eps": [0.1], "n_examples": 10, "clean_flags": "1" * 8 + "00",
              "converge": converge_doc([0.1], [0.4], 10)}
    assert standard_at({**record, "dataset": "mnist"}, 0.1) == standard_passes(8, 4, 10)
    assert standard_at({**record, "dataset": "cifar3"}, 0.1) == standard_passes(8, 4, 3) < standard_passes(8, 4, 10)
    assert standard_at({**record, "dataset": "my_folders"}, 0.1) is None
    assert run_passes({**record, "dataset": "my_folders"}) == (1500 * 2, 0)  # ours counted, no estimate
