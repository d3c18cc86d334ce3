"""The report as people read it: a tiny real pipeline (prepare, train and attack two runs, a synthetic
tuning study, report) and reports/report.html opened in headless Chromium.

Usage: ``.venv/bin/pytest tests/test_report_browser.py -q`` (slow: ~1 min on 2 cores; skips without a
``chromium`` binary). Set BATCHOUT_TEST_ARTIFACTS=<dir> to keep the report folder.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser import chromium, probe
from conftest import own_store, tiny_params, write_mnist_raw
from PIL import Image

from batchout import tuning
from batchout.config import Params, parse_params
from batchout.paths import Paths

RUNS = ("mnist-lenet-standard-s0", "mnist-lenet-batchout-s0")
EPS = [0.1, 0.3]
FIGURES = ["figures/robustness_mnist.png", "figures/examples_mnist.png", "figures/training_mnist.png",
           "figures/tuning.png"]
pytestmark = pytest.mark.slow

# Runs in the page after load: how many <img> there are, how many decoded (naturalWidth > 0) and
# their widths, and whether the answer comes first: "Answer" h2, then per data set an h3, its table
# of comparisons and its (at most three-sentence) paragraph, all before the first figure.
PROBE = """<script>
addEventListener("load", () => {
  const imgs = [...document.images], ok = imgs.filter(i => i.complete && i.naturalWidth > 0);
  const h2 = [...document.querySelectorAll("h2")].find(h => h.textContent.startsWith("Answer"));
  const h3 = h2 && h2.nextElementSibling, table = h3 && h3.nextElementSibling;
  const para = table && table.nextElementSibling, fig = document.querySelector("figure");
  const first = !!(h3 && h3.tagName === "H3" && table.tagName === "TABLE" && para && para.tagName === "P"
                   && fig && (para.compareDocumentPosition(fig) & Node.DOCUMENT_POSITION_FOLLOWING));
  document.body.dataset.probe = JSON.stringify({images: imgs.length, loaded: ok.length,
                                                widths: ok.map(i => i.naturalWidth), answerFirst: first});
});
</script>"""


@dataclass
class Built:
    paths: Paths
    params: Params
    summary: dict[str, Any]
    seconds: float  # the report stage's wall time


def _tune(params: Params, paths: Paths) -> None:
    """A 5-trial study with a synthetic objective, plotted as the tune stage does (tune/plots/)."""
    study = tuning.open_study("report-test", tuning.storage_spec(None, paths.tune_journal), params.tune)
    tuning.optimize(study, params.tune, lambda ctx: (1.0 - ctx.k / 4, 1.0 - abs(math.log10(ctx.n) + 1) / 2),
                    quota=5, total=5)
    tuning.save_plots(study, params.tune, paths.tune_dir / "plots")


@pytest.fixture(scope="module")
def built(tmp_path_factory, one_thread) -> Built:

    from batchout.stages import attack, report, train
    from batchout.stages.prepare import run as prepare

    root = tmp_path_factory.mktemp("report").resolve()
    params = parse_params(tiny_params(runs=RUNS, attack_subset=50, eps=EPS, checks_subset=20,
                                      attacks={"fgsm": {}, "pgd": {"steps": 3}}, tune={"n_trials": 5}))
    write_mnist_raw(root / "data" / "raw")
    paths = Paths(root)
    with own_store(root):
        prepare(params.data, "mnist", paths)
        for run in RUNS:
            train.run(params, run, paths)
            attack.run(params, run, paths)
        _tune(params, paths)
        started = time.perf_counter()
        summary = report.run(params, paths)
        seconds = time.perf_counter() - started
    if os.environ.get("BATCHOUT_TEST_ARTIFACTS"):
        shutil.copytree(paths.reports, Path(os.environ["BATCHOUT_TEST_ARTIFACTS"]) / "report", dirs_exist_ok=True)
    return Built(paths, params, summary, seconds)


def test_attack_stage_saves_image_pairs(built):
    for run in RUNS:
        with np.load(built.paths.adv_examples(run), allow_pickle=False) as npz:
            ex = {k: npz[k] for k in npz.files}
        assert ex["x_clean"].shape == (8, 1, 28, 28) and ex["x_clean"].dtype == np.uint8
        assert ex["x_adv"].shape == (2, 8, 1, 28, 28) and ex["x_adv"].dtype == np.float16
        assert ex["eps"].tolist() == EPS and ex["classes"].tolist() == [str(i) for i in range(10)]
        clean = ex["x_clean"] / 255.0
        for i, eps in enumerate(EPS):
            moved = np.abs(ex["x_adv"][i] - clean).reshape(8, -1).max(axis=1)
            assert (moved <= eps + 5e-4).all()  # float16 keeps ~5e-4 near 1
            fooled = ex["pred_adv"][i] != ex["y"]
            assert ((moved > 1e-3) == fooled).all()  # only a fooled example shows an adversarial image
        assert (ex["pred_adv"][-1] != ex["y"]).any()  # eps 0.3 breaks a 2-epoch LeNet somewhere


def test_report_folder_holds_every_figure(built):
    names = {str(p.relative_to(built.paths.reports)) for p in built.paths.reports.rglob("*") if p.is_file()}
    assert set(FIGURES) | {"report.html", "report.md", "summary.json"} <= names
    for name in FIGURES:
        with Image.open(built.paths.reports / name) as im:
            assert im.format == "PNG" and min(im.size) > 200
    md = (built.paths.reports / "report.md").read_text()
    assert all(f"]({name})" in md for name in FIGURES)
    assert built.seconds < 60, f"report stage took {built.seconds:.1f} s"


def test_report_opens_in_chromium_with_every_image(built, tmp_path):
    binary = chromium()
    dom = probe(binary, built.paths.reports / "report.html", PROBE, tmp_path / "profile")
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found, "the probe did not run: " + dom[-1500:]
    result = json.loads(html.unescape(found[1]))
    widths = []
    for name in FIGURES:
        with Image.open(built.paths.reports / name) as im:
            widths.append(im.size[0])
    assert result["images"] == len(FIGURES) and result["loaded"] == len(FIGURES), result
    assert result["widths"] == widths  # the page shows these files, in this order
    assert result["answerFirst"], "the answer (data set, table, paragraph) must come before the first figure"
