"""The Optuna search over BatchOut's k and n on cheap synthetic objectives: studies, pruning, resume,
dead workers, storages, the Pareto pick and plots (the real tune stage: test_tune_stage.py).

Usage: ``.venv/bin/pytest tests/test_tune.py``
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import yaml
from optuna.pruners import MedianPruner
from tune_toy import make_params

from batchout import tuning
from batchout.config import parse_params
from batchout.errors import BatchoutError

PNG = b"\x89PNG\r\n\x1a\n"


def synthetic(epochs: int = 2, bad: set[int] = frozenset(), calls: list | None = None):
    """A trial function with a known optimum at k=0.6, n=0.1; trials in ``bad`` report 0 per epoch."""

    def fn(ctx: tuning.TrialContext) -> tuple[float, float]:
        if calls is not None:
            calls.append(ctx.number)
        clean = 1.0 - (ctx.k - 0.6) ** 2
        robust = 1.0 - (math.log10(ctx.n) + 1.0) ** 2 / 4
        for epoch in range(1, epochs + 1):
            ctx.report(epoch, 0.0 if ctx.number in bad else epoch / epochs, can_prune=epoch < epochs)
        return clean, robust

    return fn


def journal(tmp_path: Path) -> str:
    return tuning.storage_spec(None, tmp_path / "tune" / "optuna.journal")


def finished(study) -> list:
    return [t for t in study.get_trials() if t.state in tuning.FINISHED]


# ---------------------------------------------------------------- study plumbing (synthetic objective)
def test_tiny_study_writes_best_inside_ranges(tmp_path):
    params = make_params(n_trials=5, k={"low": 0.2, "high": 0.9}, n={"low": 0.01, "high": 0.5, "log": True},
                         pruner="none")
    study = tuning.open_study("s", journal(tmp_path), params.tune)
    tuning.optimize(study, params.tune, synthetic(), quota=5, total=5)
    best = tuning.summarize(study, params.tune)
    assert 0.2 <= best["k"] <= 0.9 and 0.01 <= best["n"] <= 0.5
    assert best["finished_trials"] == best["complete_trials"] == 5
    assert all(tuning.HEARTBEAT_KEY in t.user_attrs for t in study.trials)  # the journal heartbeat beat
    robust = [t.user_attrs["robust_acc"] for t in study.trials]
    assert best["value"] == pytest.approx(max(robust)) and best["objective"] == "robust"
    assert best["robust_acc"] == pytest.approx(1.0 - (math.log10(best["n"]) + 1.0) ** 2 / 4)
    # the stage writes exactly this dict; it must survive a YAML round trip
    assert yaml.safe_load(yaml.safe_dump(best)) == best


def test_objective_modes_and_mix_weight():
    p = make_params(objective="mix", mix_weight=0.25)
    assert tuning.objective_value(p.tune, 0.8, 0.4) == pytest.approx(0.25 * 0.4 + 0.75 * 0.8)
    assert tuning.objective_value(make_params(objective="clean").tune, 0.8, 0.4) == 0.8
    assert tuning.objective_value(make_params(objective="robust").tune, 0.8, 0.4) == 0.4
    assert tuning.objective_value(make_params(objective="pareto").tune, 0.8, 0.4) == (0.8, 0.4)


def test_median_pruner_prunes_bad_trials(tmp_path):
    params = make_params(n_trials=4, pruner="median", epochs=3)
    pruner = MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    study = tuning.open_study("p", journal(tmp_path), params.tune, pruner=pruner)
    tuning.optimize(study, params.tune, synthetic(epochs=3, bad={1, 3}), quota=4, total=4)
    states = {t.number: t.state.name for t in study.trials}
    assert states == {0: "COMPLETE", 1: "PRUNED", 2: "COMPLETE", 3: "PRUNED"}
    # pruned at the first report: the remaining epochs never ran
    assert list(study.trials[1].intermediate_values) == [1]
    assert list(study.trials[0].intermediate_values) == [1, 2, 3]
    assert tuning.summarize(study, params.tune)["pruned_trials"] == 2


def test_last_epoch_is_never_pruned(tmp_path):
    params = make_params(n_trials=3, pruner="median", epochs=2)
    study = tuning.open_study("l", journal(tmp_path), params.tune,
                              pruner=MedianPruner(n_startup_trials=1, n_warmup_steps=0))

    def late_drop(ctx):  # good at epoch 1, terrible at the last epoch
        ctx.report(1, 1.0)
        ctx.report(2, 0.0 if ctx.number else 1.0, can_prune=False)
        return 0.5, 0.5

    tuning.optimize(study, params.tune, late_drop, quota=3, total=3)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3


def test_pruner_choice_and_pareto_never_prunes():
    assert type(tuning.make_pruner(make_params(pruner="median").tune)).__name__ == "MedianPruner"
    assert type(tuning.make_pruner(make_params(pruner="hyperband").tune)).__name__ == "HyperbandPruner"
    assert type(tuning.make_pruner(make_params(pruner="none").tune)).__name__ == "NopPruner"
    assert type(tuning.make_pruner(make_params(pruner="median", objective="pareto").tune)).__name__ == "NopPruner"


def test_resume_after_interrupt_keeps_finished_trials(tmp_path):
    params = make_params(n_trials=4, pruner="none")
    spec = journal(tmp_path)
    base = synthetic()

    def interrupted(ctx):
        if ctx.number == 2:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the third trial
        return base(ctx)

    study = tuning.open_study("r", spec, params.tune)
    with pytest.raises(KeyboardInterrupt):
        tuning.optimize(study, params.tune, interrupted, quota=4, total=4)
    first = [(t.number, t.params) for t in finished(study)]
    assert [n for n, _ in first] == [0, 1]

    again = tuning.open_study("r", spec, params.tune)  # a new process would do exactly this
    remaining = 4 - tuning.finished_count(again)
    assert remaining == 2
    calls: list[int] = []
    tuning.optimize(again, params.tune, synthetic(calls=calls), quota=remaining, total=4)
    done = finished(again)
    assert len(done) == 4 and calls == [3, 4]
    assert [(t.number, t.params) for t in done[:2]] == first
    assert again.trials[2].state.name == "FAIL"
    # the resumed sampler does not replay the first run's random proposals
    assert {round(t.params["k"], 9) for t in done[2:]}.isdisjoint({round(p["k"], 9) for _, p in first})


def test_stale_running_trial_is_failed_and_requeued(tmp_path):
    params = make_params(n_trials=2, pruner="none")
    study = tuning.open_study("h", journal(tmp_path), params.tune)
    dead = study.ask()  # a worker that was killed mid-trial: RUNNING forever
    k, n = tuning.suggest(dead, params.tune)
    alive = study.ask()
    alive.set_user_attr(tuning.HEARTBEAT_KEY, time.time() + 10 * tuning.GRACE_PERIOD_S)  # beating
    failed = tuning.fail_stale_trials(study, now=time.time() + tuning.GRACE_PERIOD_S + 1)
    assert failed == [dead.number]
    states = {t.number: t.state.name for t in study.trials}
    assert states == {0: "FAIL", 1: "RUNNING", 2: "WAITING"}
    assert study.trials[2].params == {"k": k, "n": n}
    assert tuning.fail_stale_trials(study) == []  # fresh start times: nothing is stale
    tuning.optimize(study, params.tune, synthetic(), quota=1, total=5)
    assert study.trials[2].state.name == "COMPLETE" and study.trials[2].params == {"k": k, "n": n}


def test_sqlalchemy_url_opens_rdb_storage_with_heartbeats(tmp_path):
    params = make_params(n_trials=2, pruner="none")
    spec = tuning.storage_spec(f"sqlite:///{tmp_path / 'optuna.db'}", tmp_path / "unused.journal")
    study = tuning.open_study("rdb", spec, params.tune)
    assert tuning.has_heartbeat(study)  # Optuna's own heartbeat thread replaces ours
    assert not tuning.has_heartbeat(tuning.open_study("j", journal(tmp_path), params.tune))
    tuning.optimize(study, params.tune, synthetic(), quota=2, total=2)
    assert tuning.finished_count(tuning.open_study("rdb", spec, params.tune)) == 2
    assert all(tuning.HEARTBEAT_KEY not in t.user_attrs for t in study.trials)


def test_split_quota_sums_exactly():
    assert tuning.split_quota(5, 2) == [3, 2]
    assert tuning.split_quota(1, 3) == [1, 0, 0]
    assert tuning.split_quota(-2, 2) == [0, 0]
    assert sum(tuning.split_quota(17, 4)) == 17


def test_pareto_pick_prefers_robust_within_two_points():
    points = [(0.99, 0.10), (0.975, 0.40), (0.96, 0.90), (0.985, 0.30)]
    assert tuning.pareto_pick(points) == 1  # 0.96 is 3 points below the best clean accuracy
    assert tuning.pareto_pick(points, slack=0.05) == 2
    with pytest.raises(BatchoutError, match="Pareto front is empty"):
        tuning.pareto_pick([])


def test_pareto_study_lists_front_and_plots_it(tmp_path):
    params = make_params(objective="pareto", n_trials=6)

    def tradeoff(ctx):  # strict trade-off: every trial is on the front
        ctx.report(1, 0.5)  # ignored: multi-objective studies cannot prune
        return 1.0 - 0.5 * ctx.n, 0.2 + ctx.n

    study = tuning.open_study("f", journal(tmp_path), params.tune)
    tuning.optimize(study, params.tune, tradeoff, quota=6, total=6)
    best = tuning.summarize(study, params.tune)
    front = best["front"]
    assert len(front) == 6 and all(not t.intermediate_values for t in study.trials)
    top_clean = max(r["clean_acc"] for r in front)
    eligible = [r for r in front if r["clean_acc"] >= top_clean - 0.02]
    assert best["robust_acc"] == max(r["robust_acc"] for r in eligible) == best["value"]
    written = {p.name for p in tuning.save_plots(study, params.tune, tmp_path / "plots")}
    assert {"pareto_front.png", "optimization_history.png", "contour_k_n.png"} <= written
    assert all((tmp_path / "plots" / name).read_bytes()[:8] == PNG for name in written)


def test_plots_skip_importances_with_one_complete_trial(tmp_path):
    params = make_params(n_trials=1, pruner="none")
    study = tuning.open_study("one", journal(tmp_path), params.tune)
    tuning.optimize(study, params.tune, synthetic(), quota=1, total=1)
    written = {p.name for p in tuning.save_plots(study, params.tune, tmp_path / "plots")}
    assert "optimization_history.png" in written and "param_importances.png" not in written


def test_bad_storage_url_is_one_line_without_password():
    with pytest.raises(BatchoutError) as err:
        tuning.open_storage("nosuchdialect://user:secret@host/db")
    msg = str(err.value)
    assert msg.startswith("tune.storage:") and "\n" not in msg and "secret" not in msg and "***" in msg


def test_storage_spec_defaults_to_journal_file(tmp_path):
    assert tuning.storage_spec(None, tmp_path / "j.journal") == str((tmp_path / "j.journal").resolve())
    assert tuning.storage_spec("postgresql://u@h/db", tmp_path / "x") == "postgresql://u@h/db"
    assert tuning.storage_spec("other.journal", tmp_path / "x") == str(Path("other.journal").resolve())


# ---------------------------------------------------------------- schema
@pytest.mark.parametrize(("tune", "key", "words"), [
    ({"k": {"low": 0.1, "high": 1.5}}, "tune.k", "(0, 1]"),
    ({"k": {"low": 0.0, "high": 0.5}}, "tune.k", "(0, 1]"),
    ({"n": {"low": 0.4, "high": 0.2}}, "tune.n", "low 0.4 > high 0.2"),
    ({"n": {"low": 0.0, "high": 0.5, "log": True}}, "tune.n", "log scale needs low > 0"),
    ({"n": {"low": 0.1, "high": 1.2}}, "tune.n", "[0, 1]"),
    ({"pruner": "asha"}, "tune.pruner", "median"),
])
def test_bad_search_space_rejected_in_one_line(tune, key, words):
    with pytest.raises(BatchoutError) as err:
        parse_params({"tune": tune})
    msg = str(err.value)
    assert msg.startswith(key) and words in msg and "\n" not in msg
