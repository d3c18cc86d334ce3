"""The report's adversarial image pairs (``batchout.evaluation.examples``) on a tiny model trained here.

Usage: ``.venv/bin/pytest tests/test_examples.py -q``
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from tiny_models import train_tiny

from batchout.attacks.registry import create_attack
from batchout.evaluation.examples import N_EXAMPLES, adversarial_examples

EPS = [0.0, 0.2, 0.35]  # at 0.2 FGSM fools about a quarter of the blobs, PGD a few more
ATTACKS = {"fgsm": {}, "pgd": {"steps": 10}}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny():
    model, x, y = train_tiny()
    return model, x[:40], y[:40]


@pytest.fixture(scope="module")
def ex(tiny):
    model, x, y = tiny
    model.train()  # the caller's mode: the examples must run in eval mode and give this back
    torch.manual_seed(0)
    return adversarial_examples(model, x, y, ATTACKS, EPS, "cpu", n=len(y))


def test_shapes_and_clean_part(tiny, ex):
    model, x, y = tiny
    assert ex["x_clean"].shape == (40, 1, 8, 8) and np.array_equal(ex["x_clean"], x.numpy())
    assert ex["x_adv"].shape == (3, 40, 1, 8, 8) and ex["x_adv"].dtype == np.float32
    assert ex["pred_adv"].shape == (3, 40) and ex["eps"].tolist() == EPS
    with torch.no_grad():
        pred = model.eval()(x).argmax(1).numpy()
    model.train()
    assert np.array_equal(ex["y"], y.numpy()) and np.array_equal(ex["pred_clean"], pred)
    assert (ex["pred_clean"] == ex["y"]).mean() >= 0.9  # the model is fitted, so most examples are attacked


def test_model_mode_and_flags_come_back(tiny, ex):
    model = tiny[0]
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_fooled_within_budget_and_unfooled_kept(ex):
    clean = ex["x_clean"].astype(np.float32)
    fooled_any = 0
    for i, eps in enumerate(EPS):
        fooled = ex["pred_adv"][i] != ex["y"]
        kept = ~fooled | (ex["pred_clean"] != ex["y"])  # not fooled, or already wrong (not attacked)
        assert np.abs(ex["x_adv"][i] - clean).max() <= eps + 1e-6
        assert ((ex["x_adv"][i] >= 0) & (ex["x_adv"][i] <= 1)).all()
        assert np.array_equal(ex["x_adv"][i][kept], clean[kept])
        assert np.array_equal(ex["pred_adv"][i][kept], ex["pred_clean"][kept])
        fooled_any += int((fooled & (ex["pred_clean"] == ex["y"])).sum())
    assert not (ex["pred_adv"][0] != ex["pred_clean"]).any()  # eps 0: nothing moves
    assert (ex["pred_adv"][2] != ex["y"]).sum() >= 30  # eps 0.35 on 8x8 blobs: most are fooled
    assert fooled_any > 0


def test_first_attack_of_the_grid_that_fools_wins(tiny, ex):
    """Where FGSM (first in the grid, deterministic) already fools an example, its image is FGSM's; the
    rest of the fooled ones come from PGD."""
    model, x, y = tiny
    fgsm = create_attack("fgsm", model)(x, y, EPS[1])
    with torch.no_grad():
        by_fgsm = (model.eval()(fgsm).argmax(1) != y).numpy() & (ex["pred_clean"] == ex["y"])
    model.train()
    assert by_fgsm.sum() >= 5 and np.allclose(ex["x_adv"][1][by_fgsm], fgsm.numpy()[by_fgsm])
    by_pgd = (ex["pred_adv"][1] != ex["y"]) & ~by_fgsm & (ex["pred_clean"] == ex["y"])
    assert by_pgd.any(), "PGD should fool some example FGSM leaves at eps 0.2"
    assert not np.allclose(ex["x_adv"][1][by_pgd], fgsm.numpy()[by_pgd])


def test_uint8_images_and_default_count(tiny):
    model, x, y = tiny
    x8 = (x * 255).round().to(torch.uint8)
    ex = adversarial_examples(model, x8, y, {"fgsm": {}}, [0.1], "cpu")
    assert ex["x_clean"].dtype == np.uint8 and len(ex["y"]) == N_EXAMPLES == 8
    assert np.abs(ex["x_adv"][0] - ex["x_clean"] / 255.0).max() <= 0.1 + 1e-6


def test_cost_is_tiny(tiny):
    """8 images x 3 eps with FGSM + PGD-10 on the tiny MLP: far below a second on one CPU thread."""
    model, x, y = tiny
    started = time.perf_counter()
    adversarial_examples(model, x, y, ATTACKS, [0.05, 0.1, 0.2], "cpu")
    assert time.perf_counter() - started < 1.0
