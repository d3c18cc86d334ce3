"""LR schedules (pure function of the step) and batched on-device augmentation."""

from __future__ import annotations

import pytest
import torch

from batchout.config import Schedule
from batchout.training.augment import crop_flip
from batchout.training.schedule import lr_factor, make_scheduler


def test_warmup_is_linear_then_cosine_reaches_zero():
    s = Schedule(name="cosine", warmup_epochs=1)
    assert [lr_factor(i, 100, 10, s) for i in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert lr_factor(10, 100, 10, s) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, s) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, s) == pytest.approx(0.0, abs=1e-12)


def test_multistep_milestones_are_fractions_of_the_run():
    s = Schedule(name="multistep", milestones=[0.5, 0.75], gamma=0.1)
    assert lr_factor(49, 100, 0, s) == pytest.approx(1.0)
    assert lr_factor(50, 100, 0, s) == pytest.approx(0.1)
    assert lr_factor(80, 100, 0, s) == pytest.approx(0.01)


def test_onecycle_rises_then_falls():
    s = Schedule(name="onecycle")
    values = [lr_factor(i, 100, 0, s) for i in range(100)]
    peak = max(range(100), key=values.__getitem__)
    assert 25 <= peak <= 35 and values[0] < 0.2 and values[-1] < 0.01


def test_scheduler_drives_optimizer_lr():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.2)
    sched = make_scheduler(opt, Schedule(name="constant", warmup_epochs=1), steps_per_epoch=4, epochs=2)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2, 0.2])


def test_crop_is_a_shifted_window_of_the_padded_image():
    torch.manual_seed(1)
    x = torch.rand(64, 3, 8, 8)
    out = crop_flip(x, padding=2, flip=False)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(64):  # each output must equal some 8x8 window of its own padded input
        windows = [padded[i, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    shifted = sum(not torch.equal(out[i], x[i]) for i in range(64))
    assert shifted > 40  # 24 of 25 offsets move the image


def test_flip_flips_about_half_and_nothing_else():
    torch.manual_seed(2)
    x = torch.rand(400, 1, 4, 4)
    out = crop_flip(x, padding=0, flip=True)
    flipped = torch.tensor([torch.equal(out[i], x[i].flip(2)) for i in range(400)])
    same = torch.tensor([torch.equal(out[i], x[i]) for i in range(400)])
    assert bool((flipped | same).all())
    assert 150 < int(flipped.sum()) < 250


def test_no_augmentation_is_identity():
    x = torch.rand(5, 3, 6, 6)
    assert torch.equal(crop_flip(x, 0, False), x)
