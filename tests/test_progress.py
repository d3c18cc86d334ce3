"""Progress of long work: plain lines (fake clock), the rich bar, off, the mode choice, and the
lines that real training, attack-grid, sanity-check and tuning runs print.

Usage: ``.venv/bin/pytest tests/test_progress.py -q``
"""

from __future__ import annotations

import io
import re
import time

import pytest
import torch
from conftest import synthetic_digits, tiny_params
from rich.console import Console
from tiny_models import train_tiny
from tune_toy import make_params

from batchout import progress, tuning
from batchout.config import Checks, parse_params, resolve_run
from batchout.errors import BatchoutError
from batchout.evaluation.checks import sanity_checks
from batchout.evaluation.robust import robust_grid
from batchout.models.build import build_model
from batchout.training.loop import Split, TrainState, fit

pytestmark = pytest.mark.usefixtures("one_thread")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def plain(interval: float, clock: FakeClock | None = None) -> tuple[progress.PlainRenderer, io.StringIO]:
    out = io.StringIO()
    renderer = progress.make_renderer("plain", interval=interval, stream=out, clock=clock or time.monotonic)
    return renderer, out


# ---------------------------------------------------------------- renderers
def test_plain_prints_at_most_one_line_per_interval_plus_a_final_line():
    clock = FakeClock()
    renderer, out = plain(5.0, clock)
    drawn = []  # when the lazy field was evaluated

    def loss() -> float:
        drawn.append(clock.now)
        return 0.41234

    with progress.use(renderer), progress.track("train demo", 100, "batch") as task:
        for _ in range(100):
            clock.now += 0.3  # 100 steps of 0.3 s: 30 s in all
            task.advance(1, loss=loss, img_s=3950.4)
    *lines, final = out.getvalue().splitlines()
    elapsed = [int(re.search(r"elapsed (\d+)s", line)[1]) for line in lines]
    assert 5 <= len(lines) <= 6 and all(b - a >= 5 for a, b in zip(elapsed, elapsed[1:], strict=False))
    assert lines[0] == "train demo: 17/100 batches (17%) loss 0.412 img/s 3,950 elapsed 5s eta 24s"
    assert final == "train demo: 100/100 batches (100%) loss 0.412 img/s 3,950 done in 30s"
    assert len(drawn) == len(lines) + 1  # the callable ran per line, not per step


def test_plain_interval_zero_prints_every_step_and_stopped_work_says_so():
    clock = FakeClock()
    renderer, out = plain(0.0, clock)
    with pytest.raises(RuntimeError), progress.use(renderer), progress.track("job", 4, "trial") as task:
        for _ in range(2):
            clock.now += 1.0
            task.advance(1, best=0.5)
        task.note("halfway")
        raise RuntimeError("killed")
    assert out.getvalue().splitlines() == [
        "job: 1/4 trials (25%) best 0.5 elapsed 1s eta 3s",
        "job: 2/4 trials (50%) best 0.5 elapsed 2s eta 2s",
        "job: halfway",
        "job: stopped at 2/4 trials (50%) best 0.5 after 2s",
    ]


def test_rich_draws_a_bar_with_counts_times_and_fields_then_the_final_line():
    clock, out = FakeClock(), io.StringIO()
    console = Console(file=out, force_terminal=True, width=160, color_system=None)
    with progress.use(progress.make_renderer("rich", console=console, clock=clock)):
        with progress.track("attack demo", 4, "attack") as task:
            for _ in range(3):
                clock.now += 1.0
                task.advance(1, attack="pgd", acc=0.625)
            with progress.track("inner", 2) as inner:  # a second task shares the display
                inner.advance(2)
        with progress.track("again", 1) as task:  # the display restarts after every task ended
            task.advance(1)
    text = out.getvalue()
    bar = re.search(r"attack demo .*━.* 3/4 attacks 0:00:03 eta 0:00:01 attack pgd acc 0.625", text)
    assert bar, text
    assert "inner: 2/2 items (100%) done in 0s" in text
    assert "attack demo: 3/4 attacks (75%) attack pgd acc 0.625 done in 3s" in text
    assert "again: 1/1 items (100%) done in 0s" in text


def test_off_and_disabled_tasks_print_nothing(capsys):
    assert progress.make_renderer("off") is None
    renderer, out = plain(0.0)
    with progress.use(None), progress.track("off", 3) as task:
        task.advance(3, loss=lambda: pytest.fail("an off task must not evaluate fields"))
        task.note("nothing")
    with progress.use(renderer), progress.track("rank 1", 3, enabled=False) as task:  # a DDP rank other than 0
        task.advance(3)
        task.note("nothing")
    assert out.getvalue() == "" and capsys.readouterr() == ("", "")


# ---------------------------------------------------------------- choosing the mode
def test_mode_follows_the_terminal_unless_the_environment_says_otherwise():
    assert progress.select_mode({}, Stream(tty=True)) == "rich"
    assert progress.select_mode({}, Stream(tty=False)) == "plain"
    assert progress.select_mode({"BATCHOUT_PROGRESS": "plain"}, Stream(tty=True)) == "plain"
    assert progress.select_mode({"BATCHOUT_PROGRESS": " OFF "}, Stream(tty=True)) == "off"
    assert progress.select_mode({"BATCHOUT_PROGRESS": "rich"}, Stream(tty=False)) == "rich"
    with pytest.raises(BatchoutError, match="BATCHOUT_PROGRESS: got 'bars'; allowed: rich, plain, off"):
        progress.select_mode({"BATCHOUT_PROGRESS": "bars"})


def test_interval_comes_from_the_environment():
    assert progress.select_interval({}) == progress.DEFAULT_INTERVAL
    env = {"BATCHOUT_PROGRESS": "plain", "BATCHOUT_PROGRESS_INTERVAL": "0.5"}
    renderer = progress.make_renderer(environ=env)
    assert isinstance(renderer, progress.PlainRenderer) and renderer.interval == 0.5
    for bad in ("soon", "-1", "nan"):
        with pytest.raises(BatchoutError, match="BATCHOUT_PROGRESS_INTERVAL"):
            progress.select_interval({"BATCHOUT_PROGRESS_INTERVAL": bad})


def test_captured_stderr_is_not_a_terminal_so_plain_is_chosen(capsys):
    assert progress.select_mode({}) == "plain"
    assert isinstance(progress.make_renderer(environ={}), progress.PlainRenderer)


def test_an_advance_costs_microseconds():
    renderer, _ = plain(5.0)
    loss = torch.zeros(())
    with progress.use(renderer), progress.track("cost", 10**6) as task:
        start = time.perf_counter()
        for _ in range(100_000):
            task.advance(1, loss=loss.item, img_s=1.0)
        per_call = (time.perf_counter() - start) / 100_000
    # a training batch takes >= 1 ms here; 20 us would be 2 % in the worst case (measured: ~0.5 us)
    assert per_call < 20e-6


# ---------------------------------------------------------------- the real loops
def _tiny_training(epochs: int = 2) -> tuple[torch.nn.Module, Split, object]:
    cfg = resolve_run(parse_params(tiny_params(epochs=epochs)).train, "mnist-lenet-standard-s0")
    x, y = synthetic_digits(128, 0)  # 4 batches of 32
    split = Split(torch.from_numpy(x)[:, None], torch.from_numpy(y).long())
    meta = {"shape": [1, 28, 28], "num_classes": 10, "mean": [0.2], "std": [0.3]}
    return build_model(cfg, meta), split, cfg


def test_training_prints_loss_and_images_per_second_per_batch():
    model, split, cfg = _tiny_training()
    renderer, out = plain(0.0)
    with progress.use(renderer):
        state = fit(model, split, split, cfg, torch.device("cpu"))
    lines = out.getvalue().splitlines()
    name = "train mnist-lenet-standard-s0"
    steps = [line for line in lines if re.match(rf"{name}: \d/8 batches .* eta ", line)]
    assert len(steps) == 7 and steps[0].startswith(f"{name}: 1/8 batches (12%) epoch 1/2 loss ")
    assert all(re.search(r" loss \d\.\d+ img/s [\d,]+ elapsed \d+s eta \d+s$", s) for s in steps)
    notes = [line for line in lines if line.startswith(f"{name}: epoch ")]
    assert len(notes) == 2 and f"val_acc {state.history[-1]['val_acc']:.4f}" in notes[-1]
    assert re.fullmatch(rf"{name}: 8/8 batches \(100%\) epoch 2/2 loss [\d.]+ img/s [\d,]+ done in \d+s", lines[-1])


def test_resumed_training_counts_from_the_resumed_epoch():
    model, split, cfg = _tiny_training(epochs=3)
    renderer, out = plain(0.0)
    first = fit(model, split, split, cfg.model_copy(update={"epochs": 1}), torch.device("cpu"))
    with progress.use(renderer):
        fit(model, split, split, cfg, torch.device("cpu"), TrainState(first.epoch, first.history))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("train mnist-lenet-standard-s0: 5/12 batches (41%) epoch 2/3 loss ")
    assert lines[-1].startswith("train mnist-lenet-standard-s0: 12/12 batches (100%) epoch 3/3 ")


def test_attack_grid_prints_each_attack_and_eps_with_its_accuracy():
    model, x, y = train_tiny()
    renderer, out = plain(0.0)
    with progress.use(renderer):
        grid = robust_grid(model, x, y, {"fgsm": {}, "pgd": {"steps": 3}}, [0.05, 0.1], 64, "cpu", progress="attack m")
        robust_grid(model, x, y, {"fgsm": {}}, [0.1], 64, "cpu", progress=None)
    *lines, final = out.getvalue().splitlines()
    acc = {name: grid.acc(flags) for name, flags in grid.robust.items()}
    worst = {"fgsm": acc["fgsm"], "pgd": grid.acc(grid.worst)}  # the survivors of every attack so far
    assert len(lines) == 3, lines  # a line per (attack, eps) but the last, then the final line
    assert lines[0].startswith(f"attack m: 1/4 attacks (25%) attack fgsm eps 0.05 acc {acc['fgsm'][0]:.3g} "
                               f"worst {worst['fgsm'][0]:.3g} elapsed ")
    assert lines[1].startswith(f"attack m: 2/4 attacks (50%) attack pgd eps 0.05 acc {acc['pgd'][0]:.3g} ")
    assert lines[2].startswith("attack m: 3/4 attacks (75%) attack fgsm eps 0.1 ")
    assert final.startswith(f"attack m: 4/4 attacks (100%) attack pgd eps 0.1 acc {acc['pgd'][1]:.3g} "
                            f"worst {worst['pgd'][1]:.3g} done in ")


def test_sanity_checks_count_every_probe():
    model, x, y = train_tiny()
    grid = robust_grid(model, x, y, {"pgd": {"steps": 3}}, [0.05, 0.1], 64, "cpu", progress=None)
    renderer, out = plain(0.0)
    checks = Checks(subset=30, square_queries=20)
    with progress.use(renderer):
        sanity_checks(model, x, y, grid, checks, 0.5, 64, "cpu")
        sanity_checks(model, x, y, grid, checks, 0.5, 64, "cpu", progress=None)
    lines = out.getvalue().splitlines()
    assert len(lines) == 8  # 7 lines, the final one, and nothing from the silent call
    assert lines[0].startswith("checks: 1/8 probes (12%) attack pgd acc ")  # no fgsm in the grid: one probe more
    assert lines[-1].startswith("checks: 8/8 probes (100%) attack square acc ") and "done in" in lines[-1]


def test_tuning_prints_trials_and_the_best_so_far(tmp_path):
    params = make_params(n_trials=3, pruner="none")
    study = tuning.open_study("s", tuning.storage_spec(None, tmp_path / "optuna.journal"), params.tune)
    renderer, out = plain(0.0)
    with progress.use(renderer):
        tuning.optimize(study, params.tune, lambda ctx: (1 - ctx.k, 1 - ctx.n), quota=3, total=3)
    *lines, final = out.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == ["tune s: 1/3 trials", "tune s: 2/3 trials"]
    best = study.best_trial
    assert final.startswith(f"tune s: 3/3 trials (100%) best {best.value:.3g} k {best.params['k']:.3g} "
                            f"n {best.params['n']:.3g} done in ")
