"""The README's "After `dvc repro`" views on a real (tiny) pipeline: `dvc metrics show` and
`dvc metrics diff` read the report stage's per-run files from git, and `dvc plots show` writes a page
of the report's figures that a browser draws with no network.

Usage: ``pytest -q tests/test_views.py`` (slow: the shared end-to-end project (conftest's ``e2e_project``), a
copy of it re-attacked, headless Chromium)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from browser import chromium, probe
from dvc_project import E2E_RUNS, Project, copy_project

pytestmark = pytest.mark.slow  # ~1-2 min: a whole tiny pipeline, then its attacks and report again

# After load: how many <img> the page has, how many decoded, and whether any script or remote URL is there.
PROBE = """<script>
addEventListener("load", () => {
  const imgs = [...document.images], ok = imgs.filter(i => i.complete && i.naturalWidth > 0);
  const remote = [...document.querySelectorAll("[src],[href]")]
    .map(e => e.getAttribute("src") || e.getAttribute("href")).filter(u => /^(https?:)?\\/\\//.test(u));
  document.body.dataset.probe = JSON.stringify({images: imgs.length, loaded: ok.length,
                                                scripts: document.scripts.length - 1, remote: remote});
});
</script>"""


@pytest.fixture(scope="module")
def project(e2e_project) -> Project:
    return e2e_project


def _numbers(tree) -> list:
    if isinstance(tree, dict):
        return [v for x in tree.values() for v in _numbers(x)]
    return [tree]


def test_metrics_show_has_one_numeric_file_per_run(project):
    shown = json.loads(project.dvc("metrics", "show", "--json"))
    files = shown[""]["data"]
    # arms.json (per-arm means) and checks.json (per-run evaluation checks) sit beside the per-run files
    per_run = {Path(p).stem: d["data"] for p, d in files.items() if Path(p).stem not in {"arms", "checks"}}
    assert sorted(per_run) == sorted(E2E_RUNS)
    checks = files["metrics/checks.json"]["data"]
    assert sorted(checks) == sorted(E2E_RUNS)
    assert all(set(c) == {"ensemble_drop", "budget", "converged", "flagged"} for c in checks.values()), checks
    assert all(c["flagged"] in (0, 1) and c["converged"] in (0, 1) for c in checks.values())
    assert all(set(c["budget"]) == {"0.1"} and c["budget"]["0.1"] in (1, 2, 4, 8) for c in checks.values())
    for run, numbers in per_run.items():
        assert set(numbers) == {"clean", "worst", "lo", "hi", "converged_at"}
        # the headline budget it converged at, 0 when it did not: the same fact checks.json has per eps
        assert numbers["converged_at"] == (checks[run]["budget"]["0.1"] if checks[run]["converged"] else 0)
        assert set(numbers["worst"]) == {"0.1"} and numbers["lo"] <= numbers["worst"]["0.1"] <= numbers["hi"]
    assert all(isinstance(v, (int, float)) for d in files.values() for v in _numbers(d["data"]))
    arms = files["metrics/arms.json"]["data"]
    assert set(arms) == {"mnist-lenet-standard", "mnist-lenet-batchout", "mnist-lenet-adversarial"}
    # tracked in git, not ignored: a commit carries them and `dvc metrics diff` reads them back
    assert project.sh("git", "check-ignore", "-q", "metrics/arms.json", check=False).returncode == 1
    assert project.sh("git", "check-ignore", "-q", "results/attack", check=False).returncode == 0


def test_metrics_diff_after_a_commit(project, tmp_path):
    project = copy_project(project.root, tmp_path / "repo")  # the shared project stays as reproduced
    project.commit("quick results")
    params = yaml.safe_load((project.root / "params.yaml").read_text())
    params["attack"]["subset"] = 40  # other attacked points: new worst-case numbers, same models
    (project.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = project.dvc("repro", timeout=900)
    assert "Running stage 'train@" not in out  # attack settings re-attack, never retrain
    diff = json.loads(project.dvc("metrics", "diff", "HEAD", "--json"))
    changed = {Path(p).stem: d for p, d in diff.items()}
    assert set(changed) <= {*E2E_RUNS, "arms", "checks"} and any(r in changed for r in E2E_RUNS), diff
    for run in E2E_RUNS:
        if run in changed:
            assert "clean" not in changed[run]  # the test split's accuracy did not move
            assert all(isinstance(v["diff"], float) for v in changed[run].values())
    porcelain = project.git("status", "--porcelain", "metrics")
    assert re.search(r"^ M metrics/mnist-lenet-\w+-s0\.json$", porcelain, flags=re.M), porcelain


def test_plots_show_draws_the_report_figures_offline(project, tmp_path):
    binary = chromium()
    project.dvc("plots", "show")
    page = project.root / "dvc_plots" / "index.html"
    figures = sorted((project.root / "reports" / "figures").glob("*.png"))
    assert len(figures) >= 3  # robustness, examples, training for mnist; tuning
    html = page.read_text()
    assert "<script" not in html and "cdn." not in html
    found = re.search(r'data-probe="([^"]*)"', probe(binary, page, PROBE, tmp_path / "profile"))
    assert found, "the probe did not run"
    result = json.loads(found[1].replace("&quot;", '"'))
    assert result == {"images": len(figures), "loaded": len(figures), "scripts": 0, "remote": []}, result
