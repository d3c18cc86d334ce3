"""The report's figures: robustness bands, image pairs, training curves, the tuning landscape and its
trials table, and the figure section of the Markdown and HTML (synthetic inputs; no stage run).

Usage: ``.venv/bin/pytest tests/test_report_figures.py -q`` (the report in Chromium: test_report_browser.py)
"""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import converge_doc
from PIL import Image

from batchout import tuning
from batchout.config import TuneParams
from batchout.io import eps_key, read_csv
from batchout.reporting import gallery, render, tables
from batchout.reporting.figures import Pairs, plot_landscape, plot_pairs, plot_training
from batchout.reporting.groups import RunRecord, make_groups, robustness_curves
from batchout.reporting.stats import wilson

EPS = [0.1, 0.3]
N = 40  # attacked test points per run
ACC = {"standard": ([0.30, 0.05], 0.95), "batchout": ([0.60, 0.25], 0.90)}  # worst case per eps, clean


def record(method: str, seed: int) -> RunRecord:
    worst, clean = ACC[method]
    worst = [a + 0.05 * seed for a in worst]
    flags = {eps_key(e): "1" * round(a * N) + "0" * (N - round(a * N)) for e, a in zip(EPS, worst, strict=True)}
    attack = {"eps": EPS, "n_examples": N, "examples_sha256": "same", "clean_acc": clean, "seed": seed,
              "robust_acc": {a: dict(zip(flags, worst, strict=True)) for a in ("worst", "fgsm")},
              "robust_flags": {"worst": flags, "fgsm": flags}, "clean_flags": "1" * round(clean * N) + "0" * round(
                  (1 - clean) * N), "breakdown": {}, "checks": {}, "converge": converge_doc(EPS, worst, N)}
    return RunRecord(f"mnist-lenet-{method}-s{seed}", "mnist", "lenet", method, method, {"test_acc": clean}, attack,
                     seed=seed)


@pytest.fixture
def groups():
    return make_groups([record(m, s) for m in ACC for s in (0, 1)])


def pairs(n: int = 8, fooled: tuple[int, ...] = ()) -> Pairs:
    """Grey 28x28 images; the adversarial prediction differs from the label at ``fooled``."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8)
    y = np.arange(n) % 10
    adv = y.copy()
    adv[list(fooled)] = (y[list(fooled)] + 1) % 10
    return Pairs(x, np.clip(x / 255 + rng.normal(0, 0.05, x.shape), 0, 1).astype(np.float16), y, y.copy(), adv)


def examples(p: Pairs) -> dict[str, np.ndarray]:
    """The arrays of an examples/<run>.npz holding ``p`` at every eps of the grid."""
    return {"x_clean": p.x_clean, "y": p.y, "pred_clean": p.pred_clean, "eps": np.array(EPS),
            "x_adv": np.stack([p.x_adv] * len(EPS)), "pred_adv": np.stack([p.pred_adv] * len(EPS)),
            "classes": np.array([f"digit{i}" for i in range(10)])}


def png(path: Path, min_kb: float = 10) -> tuple[int, int]:
    assert path.is_file() and path.stat().st_size > min_kb * 1024, path
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.load()  # decodes every pixel: a truncated file raises here
        return im.size


def red_pixels(path: Path) -> int:
    """Clearly red pixels (the colour of a wrong prediction's label, anti-aliased): grey images have none."""
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=int)
    return int((rgb[..., 0] - rgb[..., 1:].max(axis=2) > 80).sum())


TRIALS = [{"number": i, "state": "pruned" if i == 3 else "complete", "k": 0.1 + 0.15 * i, "n": 0.01 * 2 ** i,
           "objective": "robust", "value": None if i == 3 else 0.1 * i, "best": i == 5} for i in range(6)]


# ---------------------------------------------------------------- the figures
def test_robustness_band_is_the_interval_of_the_seeds_mean(groups):
    std = robustness_curves(groups)["lenet standard"]
    assert std["eps"] == [0.0, *EPS] and std["acc"] == pytest.approx([0.95, 0.325, 0.075])
    # eps 0: both seeds correct on the same 38 of the 40 attacked points: one seed's Wilson(38, 40), not the
    # pooled Wilson(76, 80) of the old code, which counted each point twice
    assert (std["lo"][0], std["hi"][0]) == wilson(38, 40) != pytest.approx(wilson(76, 80))
    # eps 0.1: 12 and 14 robust points, nested: the seed spread and the clustering both widen the band
    old_lo, old_hi = wilson(26, 80)
    assert std["hi"][1] - std["lo"][1] > 1.3 * (old_hi - old_lo)
    assert all(lo < acc < hi for lo, acc, hi in zip(std["lo"], std["acc"], std["hi"], strict=True))


def test_pairs_grid_marks_wrong_predictions_red(tmp_path):
    plot_pairs([("lenet standard", pairs()), ("lenet batchout", pairs())], [str(i) for i in range(10)],
               tmp_path / "right.png", "all correct")
    plot_pairs([("lenet standard", pairs(fooled=(0, 3, 5))), ("lenet batchout", pairs())], [str(i) for i in range(10)],
               tmp_path / "fooled.png", "three fooled")
    width, height = png(tmp_path / "right.png")
    assert width > 1000 and height > 200  # 8 pairs of 28x28 images per row, two rows
    assert red_pixels(tmp_path / "right.png") == 0
    assert red_pixels(tmp_path / "fooled.png") > 30  # the three "adv <class>" labels


def test_training_and_landscape_figures_are_readable_pngs(tmp_path):
    rows = [[{"epoch": e, "val_acc": 0.8 + 0.05 * e + s / 100, "train_loss": 1 / e} for e in (1, 2, 3)] for s in (0, 1)]
    plot_training({"lenet standard": rows, "lenet batchout": rows[:1]}, tmp_path / "train.png", "mnist")
    assert png(tmp_path / "train.png")[0] > 800
    plot_landscape(TRIALS, tmp_path / "tune.png", "k vs n", "robust accuracy", log=(False, True))
    assert png(tmp_path / "tune.png")[0] > 500
    assert red_pixels(tmp_path / "tune.png") > 50  # the best trial's ring


# ---------------------------------------------------------------- the trials table of the tune stage
def test_save_plots_writes_the_trials_table(tmp_path):
    from tune_toy import make_params

    params = make_params(n_trials=5, pruner="none")
    study = tuning.open_study("t", tuning.storage_spec(None, tmp_path / "optuna.journal"), params.tune)
    tuning.optimize(study, params.tune, lambda ctx: (1.0 - ctx.k, 1.0 - abs(math.log10(ctx.n) + 1)), quota=5, total=5)
    tuning.save_plots(study, params.tune, tmp_path / "plots")
    rows = read_csv(tmp_path / "plots" / "trials.csv")
    assert [int(r["number"]) for r in rows] == [t.number for t in study.trials]
    assert list(rows[0]) == ["number", "state", "k", "n", "objective", "value", "clean_acc", "robust_acc", "masked",
                             "best"]
    for r, t in zip(rows, study.trials, strict=True):
        assert float(r["k"]) == pytest.approx(t.params["k"]) and float(r["value"]) == pytest.approx(t.value)
        assert r["state"] == "complete" and r["objective"] == "robust"
        assert float(r["robust_acc"]) == pytest.approx(t.value)  # the robust objective is the robust accuracy
    assert [int(r["number"]) for r in rows if r["best"] == "1"] == [tuning.summarize(study, params.tune)["trial"]]


def test_pruned_trials_have_no_value(tmp_path):
    from tune_toy import make_params

    params = make_params(n_trials=6, pruner="median", epochs=2)

    def fn(ctx):  # trials after the startup ones report 0 after epoch 1: below the median, pruned
        ctx.report(1, 1.0 if ctx.number < 2 else 0.0, can_prune=True)
        ctx.report(2, 1.0, can_prune=False)
        return 0.9, 0.5

    study = tuning.open_study("p", tuning.storage_spec(None, tmp_path / "optuna.journal"), params.tune)
    tuning.optimize(study, params.tune, fn, quota=6, total=6)
    rows = read_csv(tuning.save_plots(study, params.tune, tmp_path / "plots")[0].parent / "trials.csv")
    pruned = [r for r in rows if r["state"] == "pruned"]
    assert pruned and all(r["value"] == "" and r["best"] == "0" for r in pruned)
    assert sum(r["best"] == "1" for r in rows) == 1


# ---------------------------------------------------------------- the figure section in the report
def inputs(**kw) -> gallery.FigureInputs:
    rows = [{"epoch": e, "val_acc": 0.9, "train_loss": 1 / e} for e in (1, 2)]
    doc = {"curves": {f"mnist-lenet-{m}-s{s}": rows for m in ACC for s in (0, 1)},
           "examples": {"mnist-lenet-standard-s0": examples(pairs(fooled=(1,))),
                        "mnist-lenet-batchout-s1": examples(pairs())},  # batchout's first seed has none: its s1 shows
           "trials": TRIALS, "tune": TuneParams()}
    return gallery.FigureInputs(**{**doc, **kw})


def test_html_shows_the_answer_then_every_figure(groups, tmp_path):
    figures = gallery.figure_blocks(groups, {"mnist": 0.1}, inputs(), tmp_path)
    imgs = [b for b in figures if b.kind == "img"]
    assert [b.items[0] for b in imgs] == ["figures/robustness_mnist.png", "figures/examples_mnist.png",
                                         "figures/training_mnist.png", "figures/tuning.png"]
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.png")) == sorted(b.items[0] for b in imgs)
    for b in imgs:
        png(tmp_path / b.items[0])
    assert "Bands: 95 % interval of that mean with the test point as the unit" in imgs[0].items[1]
    assert "eps 0.1" in imgs[1].items[1]
    blocks = tables.build_blocks("T", groups, 0.05, figures)
    page = render.to_html("T", blocks, {b.items[0]: (tmp_path / b.items[0]).read_bytes() for b in imgs})
    srcs = re.findall(r"<img alt='[^']*' src='data:image/png;base64,([^']+)'>", page)
    assert [base64.b64decode(s) for s in srcs] == [(tmp_path / b.items[0]).read_bytes() for b in imgs]
    assert page.index("Answer: is BatchOut more robust?") < page.index("<figure>") < page.index("<h2>Summary")
    assert all(f"<figcaption>{html.escape(b.items[1])}</figcaption>" in page for b in imgs)
    md = render.to_markdown("T", blocks)
    assert all(f"![{b.text}]({b.items[0]})" in md for b in imgs)
    assert md.index("## Answer") < md.index("![") < md.index("## Summary")


def test_missing_inputs_become_notes(groups, tmp_path):
    figures = gallery.figure_blocks(groups, {"mnist": 0.3}, inputs(curves={}, examples={}, trials=None), tmp_path)
    assert [b.items[0] for b in figures if b.kind == "img"] == ["figures/robustness_mnist.png"]
    notes = " ".join(b.text for b in figures if b.kind == "p")
    assert "no adversarial examples at eps 0.3 for lenet standard, lenet batchout" in notes
    assert "no training curves" in notes and "tune/plots/trials.csv is absent" in notes
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["robustness_mnist.png"]


def test_examples_of_another_grid_are_named(groups, tmp_path):
    figures = gallery.figure_blocks(groups, {"mnist": 0.2}, inputs(), tmp_path)  # 0.2 is not in the examples
    assert "examples_mnist.png" not in [b.items[0] for b in figures if b.kind == "img"]
    assert any("no adversarial examples at eps 0.2 for lenet standard, lenet batchout" in b.text for b in figures)
