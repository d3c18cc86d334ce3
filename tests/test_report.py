"""Report stage: statistics across seeds, paired verdicts, masking flags, paper numbers, HTML, MLflow, CLI.

Usage: ``.venv/bin/pytest tests/test_report.py``

Fixture metrics (mnist, lenet): standard and batchout with 2 seeds each, adversarial with 1 seed and
flagged for gradient masking, all attacked on the same 50 test points. BatchOut's worst-case accuracy
is far above standard's (significant after Holm); their clean accuracies differ by 0.2 and 0.1 points
(a paired t over two seeds cannot resolve that).
"""

from __future__ import annotations

import base64
import itertools
import json
import math
from fractions import Fraction
from pathlib import Path

import pytest
import yaml
from conftest import converge_doc
from typer.testing import CliRunner

from batchout.config import parse_params
from batchout.errors import BatchoutError
from batchout.io import write_json
from batchout.paths import Paths, split_run
from batchout.reporting import clustered, compare, reference, render, tables
from batchout.reporting import groups as grouping
from batchout.reporting.stats import wilson
from batchout.stages import report as stage

EPS = [0.1, 0.25, 0.3]  # 0.1 and 0.3 are in the paper's figure, 0.25 is not
# run -> (test_acc, clean_acc, pgd per eps, fgsm per eps, failed checks or None)
RUNS = {
    "mnist-lenet-standard-s0": (0.990, 0.992, [0.20, 0.05, 0.02], [0.50, 0.30, 0.20], None),
    "mnist-lenet-standard-s1": (0.986, 0.988, [0.24, 0.07, 0.04], [0.56, 0.34, 0.26], None),
    "mnist-lenet-batchout-s0": (0.988, 0.990, [0.80, 0.60, 0.50], [0.90, 0.85, 0.80], None),
    "mnist-lenet-batchout-s1": (0.985, 0.986, [0.78, 0.62, 0.46], [0.92, 0.83, 0.78], None),
    "mnist-lenet-adversarial-s0": (0.980, 0.982, [0.90, 0.88, 0.87], [0.95, 0.94, 0.93],
                                   ["monotone_ok", "large_eps_ok"]),
}
N_EX = 50
FLAG_START = {"standard": 0, "batchout": 5, "adversarial": 0}  # where each method's robust points begin


def _flags(acc: float, start: int) -> str:
    """Per-example flags with round(acc * N_EX) robust points from ``start`` on (cyclically)."""
    ones = {(start + i) % N_EX for i in range(round(acc * N_EX))}
    return "".join("1" if i in ones else "0" for i in range(N_EX))


def _params(runs: dict[str, tuple]) -> dict:
    """One arm per method, with the seeds its runs name."""
    specs: dict[str, dict] = {}
    for name in runs:
        arm, seed = split_run(name)
        spec = specs.setdefault(arm, {"dataset": "mnist", "model": "lenet", "method": arm.split("-")[2], "seeds": []})
        spec["seeds"].append(seed)
    return {"train": {"runs": specs}, "report": {"title": "Test report", "alpha": 0.05}}


def _write_metrics(paths: Paths, runs: dict[str, tuple]) -> None:
    for name, (test_acc, clean, pgd, fgsm, failed) in runs.items():
        write_json(paths.train_metrics(name), {"train_acc": 1.0, "val_acc": test_acc, "test_acc": test_acc,
                                               "epochs": 1, "wall_seconds": 1.0, "images_per_s": 10.0,
                                               "mlflow_run_id": "x"})
        worst = list(map(min, pgd, fgsm))
        robust = {a: {f"eps_{e:.4f}": v for e, v in zip(EPS, vals, strict=True)}
                  for a, vals in (("pgd", pgd), ("fgsm", fgsm), ("worst", worst))}
        _, _, method, seed = name.split("-")
        flags = {a: {f"eps_{e:.4f}": _flags(v, FLAG_START[method]) for e, v in zip(EPS, vals, strict=True)}
                 for a, vals in (("pgd", pgd), ("fgsm", fgsm), ("worst", worst))}
        ci = {a: {k: list(wilson(v * N_EX, N_EX)) for k, v in accs.items()} for a, accs in robust.items()}
        # the evaluate module's names; stronger_attack_is_square describes a check, it is not one
        checks = {"monotone_ok": True, "large_eps_ok": True, "pgd_vs_fgsm_ok": True, "stronger_attack_is_square": False}
        checks.update({c: False for c in failed or []})
        checks["suspected_gradient_masking"] = failed is not None
        checks["subset"] = 20.0
        checks["convergence"] = {"eps": 0.1, "restarts": [1, 1, 2], "steps": [5, 10, 10],
                                 "acc": [pgd[0] + 0.02, pgd[0] + 0.01, pgd[0]]}
        write_json(paths.attack_metrics(name), {"run": name, "dataset": "mnist", "model": "lenet", "method": method,
                                                "seed": int(seed[1:]), "n_examples": N_EX, "examples_sha256": "same",
                                                "clean_acc": clean, "eps": EPS, "robust_acc": robust, "robust_ci": ci,
                                                "robust_flags": flags, "clean_flags": _flags(clean, 0),
                                                "budgets": {"fgsm": "FGSM", "pgd": "PGD 10 steps"},
                                                "breakdown": {}, "checks": checks,
                                                "converge": converge_doc(EPS, worst, N_EX), "seconds": 1.0})


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/m.db")
    paths = Paths(tmp_path)
    _write_metrics(paths, RUNS)
    return parse_params(_params(RUNS)), paths


@pytest.fixture
def groups(setup) -> list[grouping.Group]:
    params, paths = setup
    return grouping.make_groups(stage.load_records(params, paths))


def _cell(mean_std: tuple[float, float] | float, n: int) -> str:
    if n == 1:
        return f"{100 * mean_std:.2f} (single run)"
    return f"{100 * mean_std[0]:.2f} ± {100 * mean_std[1]:.2f} (n={n})"


def _two(a: float, b: float) -> tuple[float, float]:
    return (a + b) / 2, abs(a - b) / math.sqrt(2)  # the ddof=1 std of two numbers


def _wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson's bounds as the roots of (k/n - p)^2 = z^2 p (1 - p) / n, a quadratic in p."""
    a, b, c = 1 + z * z / n, -(2 * k / n + z * z / n), (k / n) ** 2
    root = math.sqrt(b * b - 4 * a * c)
    return (-b - root) / (2 * a), (-b + root) / (2 * a)


def _with_ci(cell: str, k: int, n: int) -> str:
    lo, hi = _wilson(k, n)
    return f"{cell} [{100 * lo:.1f}, {100 * hi:.1f}]"


def _with_arm_ci(cell: str, method: str, accs: list[float]) -> str:
    """The cell with the seeds' mean interval: the fixture's flags, the test point as the unit."""
    lo, hi = clustered.arm_interval([_flags(a, FLAG_START[method]) for a in accs])
    return f"{cell} [{100 * lo:.1f}, {100 * hi:.1f}]"


def _exact_p(b: int, c: int) -> float:
    """Two-sided exact binomial p of b among b + c at 1/2, as a fraction."""
    n = b + c
    return float(min(Fraction(1), 2 * Fraction(sum(math.comb(n, i) for i in range(min(b, c) + 1)), 2**n)))


def test_stat_uses_sample_std():
    s = grouping.stat([0.2, 0.4, 0.9])
    var = sum((v - 0.5) ** 2 for v in (0.2, 0.4, 0.9)) / 2
    assert s.mean == pytest.approx(0.5) and s.std == pytest.approx(math.sqrt(var)) and s.n == 3
    assert grouping.stat([0.7]).std is None


def test_groups_and_table_values(groups):
    assert [(g.method, len(g.runs)) for g in groups] == [("standard", 2), ("batchout", 2), ("adversarial", 1)]
    header, *rows = tables.accuracy_table(groups, "pgd").items
    assert header == ("model / method", "clean (test set)", "eps 0.1", "eps 0.25", "eps 0.3")
    std, bo, adv = rows
    assert std[1] == _cell(_two(0.990, 0.986), 2)
    # robust cells: mean ± seed std, then the interval of the seeds' mean on the same 50 points; no longer
    # the Wilson interval of the pooled count (10 + 12 of 2 x 50), which counted each point twice
    assert std[2] == _with_arm_ci(_cell(_two(0.20, 0.24), 2), "standard", [0.20, 0.24])
    assert std[2] != _with_ci(_cell(_two(0.20, 0.24), 2), 22, 100)
    assert std[4] == _with_arm_ci(_cell(_two(0.02, 0.04), 2), "standard", [0.02, 0.04])
    assert bo[3] == _with_arm_ci(_cell(_two(0.60, 0.62), 2), "batchout", [0.60, 0.62])
    assert adv[2] == _with_ci(_cell(0.90, 1), 45, 50) and adv[1] == "98.00 (single run)"  # one seed: Wilson
    fgsm_rows = tables.accuracy_table(groups, "fgsm").items[1:]
    assert fgsm_rows[0][2] == _with_arm_ci(_cell(_two(0.50, 0.56), 2), "standard", [0.50, 0.56])
    assert grouping.attacks_of(groups) == ["worst", "fgsm", "pgd"]  # the verdicts' attack first


def test_paired_verdicts_both_ways(groups):
    """Worst case: significant after Holm; clean: a paired t over two seeds does not resolve 0.15 points."""
    rows = {(r["a"], r["b"], r["quantity"], r["eps"]): r for r in compare.comparisons(groups, 0.05)}
    clean = rows[("batchout", "standard", "clean", None)]
    # diffs -0.002 and -0.001: t = -3 on 1 df; Student t with 1 df is Cauchy, P(|T| > 3) = 1 - 2 atan(3) / pi
    assert clean["diff"] == pytest.approx(-0.0015) and clean["p"] == pytest.approx(1 - 2 * math.atan(3) / math.pi)
    half = 12.7062047 * (0.001 / math.sqrt(2)) / math.sqrt(2)  # t_{0.975, 1} x sd / sqrt(k)
    assert clean["ci"] == pytest.approx([-0.0015 - half, -0.0015 + half], abs=1e-8)
    assert clean["outcome"] == "not resolved" and clean["verdict"].startswith("not resolved at this sample size")
    # eps 0.1: standard robust on points 0..9 / 0..11, batchout on 5..44 / 5..43 (the fixture's flags)
    pgd = rows[("batchout", "standard", "worst", 0.1)]
    assert pgd["discordant"] == {"b": 35 + 32, "c": 5 + 5} and pgd["test_points"] == N_EX
    d = [sum(int(_flags(b, 5)[i]) - int(_flags(a, 0)[i]) for a, b in ((0.20, 0.80), (0.24, 0.78)))
         for i in range(N_EX)]
    assert pgd["diff"] == pytest.approx(0.79 - 0.22) and pgd["p"] == pytest.approx(clustered.sign_flip_p(d), rel=1e-12)
    assert pgd["p"] > 100 * _exact_p(67, 10)  # the pooled McNemar the old code used: 2 seeds are not 2 x 50 points
    assert pgd["ci"][0] < pgd["diff"] < pgd["ci"][1] and pgd["seeds_paired"] == 2
    judged = [r for r in rows.values() if r["p"] is not None]
    assert len(judged) == 4  # clean + 3 eps of batchout vs standard; adversarial is a single run
    ranked = sorted(judged, key=lambda r: r["p"])  # Holm by hand: m = 4, running max of (4 - i) p_(i)
    assert [r["p_holm"] for r in ranked] == pytest.approx(
        list(itertools.accumulate((min(1, (4 - i) * r["p"]) for i, r in enumerate(ranked)), max)))
    assert pgd["outcome"] == "higher" and pgd["verdict"] == "batchout higher"


def test_single_run_cannot_be_judged(groups):
    rows = [r for r in compare.comparisons(groups, 0.05) if (r["a"], r["b"]) == ("batchout", "adversarial")]
    assert len(rows) == 1 + len(EPS)
    assert all(r["outcome"] == "not judged" and r["p"] is None and r["ci"] is None for r in rows)
    assert all(r["verdict"].startswith("cannot be judged: single run (n=2 vs n=1)") for r in rows)
    assert rows[1]["diff"] == pytest.approx(0.79 - 0.90)  # the difference of means is still shown
    # the adversarial model is flagged, so its robust (not its clean) differences are marked suspect
    assert [r["verdict"].endswith("suspect: gradient masking suspected in mnist-lenet-adversarial-s0")
            for r in rows] == [False] + [True] * len(EPS)


def test_markdown_starts_with_the_answer_table_and_three_sentences(groups):
    rows = compare.comparisons(groups, 0.05)
    p01 = next(r for r in rows if r["quantity"] == "worst" and r["eps"] == 0.1 and r["b"] == "standard")
    text = render.to_markdown("T", tables.build_blocks("T", groups, 0.05, {}))
    head, *parts = text.split("\n\n")
    assert head == "# T" and parts[:2] == ["## Answer: is BatchOut more robust?", "### mnist"]
    table = parts[2].splitlines()
    assert table[0] == "| comparison | eps | budget | difference (points) | 95 % CI | Holm p | verdict |"
    lo, hi = p01["ci"]
    assert (f"| batchout vs standard (lenet) | 0.1 (headline) | 2x | +57.00 | [{100 * lo:+.2f}, {100 * hi:+.2f}] | "
            f"{p01['p_holm']:.3g} | batchout higher |") in table
    assert any(line.startswith("| batchout vs standard (lenet) | clean | – | -0.15 |") for line in table)
    assert ("| batchout vs adversarial (lenet) | 0.1 (headline) | 2x | -11.00 | – | – | cannot be judged (single "
            "run (n=2 vs n=1)) ⚠ checks failed |") in table
    words = parts[3]
    assert words.count(". ") + 1 <= 3 and words.endswith(".")  # at most three sentences
    assert words.startswith("Robust numbers are the worst case per test point over FGSM and PGD 10 steps, the "
                            "ensemble escalated per model and eps (its budget doubled) until a round broke at most 1 "
                            "test point(s) (else an upper bound), on 50 test points attacked under 1/2 seeds per arm; "
                            "the headline eps 0.1 is where standard's")
    assert parts[4] == "Budgets (the worst case rests on every round up to it): 1x: budget 1x; 2x: budget 2x."
    assert "Resolved (Holm, alpha = 0.05): batchout higher than standard at eps 0.1, eps 0.25, eps 0.3;" in words
    assert ("claim about these seeds' trained models on these test points, not about the method in general; runs "
            "that failed an evaluation check (⚠): mnist-lenet-adversarial-s0.") in words
    # the long form, in words, moved below the summary
    rest = text[text.index("## Summary"):]
    assert "## Answer" not in rest and "seeds 2 on the same 50 test points: batchout higher." in rest


def test_markdown_has_masking_flag_and_paper_numbers(groups):
    figure = render.Block("img", "robustness", ("robustness_mnist.png", "caption"))
    text = render.to_markdown("T", tables.build_blocks("T", groups, 0.05, [figure]))
    assert ("mnist-lenet-adversarial-s0: suspected gradient masking; failed checks: "
            "large_eps_ok, monotone_ok") in text  # sorted: the metrics file is written with sorted keys
    assert "lenet adversarial ⚠ suspected gradient masking" in text
    assert "mnist-lenet-standard-s0: suspected" not in text
    assert reference.PAPER_CITATION in text and "![" in text and "(robustness_mnist.png)" in text
    paper = tables.paper_table("mnist", groups).items
    assert paper[0][1:] == ("lenet standard (ours)", "standard (paper)", "lenet batchout (ours)", "BatchOut (paper)",
                            "lenet adversarial (ours)", "FGSM-AT (paper)")
    by_eps = {row[0]: row for row in paper[1:]}
    assert by_eps["clean"][1:3] == (_cell(_two(0.990, 0.986), 2), "99.47")
    assert by_eps["0.1"][1:] == (_cell(_two(0.50, 0.56), 2), "80.2", _cell(_two(0.90, 0.92), 2), "96.5",
                                 _cell(0.95, 1), "96.4")
    assert by_eps["0.3"][3:5] == (_cell(_two(0.80, 0.78), 2), "96.0")
    assert by_eps["0.25"][2] == "–"  # we attacked a budget the paper did not
    assert by_eps["0.5"][1] == "not run" and by_eps["0.5"][2] == "10.9"  # and the other way round


def test_group_labels_split_tuned_and_differing_configs():
    doc = _params({"mnist-lenet-batchout-s0": (), "mnist-lenet-batchout-s1": ()})
    doc["train"]["runs"]["mnist-lenet-batchoutbig"] = {"dataset": "mnist", "model": "lenet",
                                                       "method": "batchout", "batchout": {"n": 0.4}}
    doc["train"]["tuned_runs"] = {"mnist-lenet-tuned": {"dataset": "mnist", "model": "lenet", "method": "batchout"}}
    params = parse_params(doc)
    labels = grouping.group_labels(params.train.all_runs(), params.train.tuned_runs)
    assert labels["mnist-lenet-batchout"] == "batchout [mnist-lenet-batchout]"
    assert labels["mnist-lenet-batchoutbig"] == "batchout [mnist-lenet-batchoutbig]"
    assert labels["mnist-lenet-tuned"] == "batchout (tuned)"


def test_curves_for_plot(groups):
    curves = grouping.robustness_curves(groups)  # the worst case (here PGD is every run's minimum)
    std = curves["lenet standard"]
    assert std["eps"] == [0.0, *EPS]
    assert std["acc"] == pytest.approx([0.990, 0.22, 0.06, 0.03])
    assert std["std"][1] == pytest.approx(abs(0.20 - 0.24) / math.sqrt(2))
    assert curves["lenet adversarial"]["std"] == []  # a single run has no error bars
    assert curves == grouping.robustness_curves(groups, "worst")
    assert grouping.robustness_curves(groups, "fgsm")["lenet standard"]["acc"][1] == pytest.approx(0.53)


@pytest.mark.slow  # ~15 s: creating a fresh MLflow SQLite store runs its schema migrations
def test_stage_writes_reports_and_mlflow_run(setup):
    import mlflow

    params, paths = setup
    doc = stage.run(params, paths)
    out = paths.reports
    assert sorted(p.name for p in out.iterdir()) == ["figures", "report.html", "report.md", "summary.json"]
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["robustness_mnist.png"]  # no curves, trials
    page = (out / "report.html").read_text()
    start = page.index("data:image/png;base64,") + len("data:image/png;base64,")
    png = base64.b64decode(page[start:page.index("'", start)])
    assert png == (out / "figures" / "robustness_mnist.png").read_bytes() and png[:4] == b"\x89PNG"
    # the DVC metrics: one file per run and the arms' means, numbers only
    assert sorted(p.name for p in paths.metrics.iterdir()) == sorted(["arms.json", "checks.json",
                                                                      *(f"{r}.json" for r in RUNS)])
    checks = json.loads((paths.metrics / "checks.json").read_text())
    budget = {"0.1": 2, "0.25": 2, "0.3": 2}  # the fixture's escalation converged at every eps after one doubling
    assert checks["mnist-lenet-adversarial-s0"] == {"budget": budget, "converged": 1, "flagged": 1}
    assert checks["mnist-lenet-standard-s0"] == {"budget": budget, "converged": 1, "flagged": 0}
    one = json.loads(paths.run_metrics("mnist-lenet-batchout-s0").read_text())
    assert one["clean"] == RUNS["mnist-lenet-batchout-s0"][0] and "eps" not in one
    assert one["worst"]["0.1"] == min(RUNS["mnist-lenet-batchout-s0"][2][0], RUNS["mnist-lenet-batchout-s0"][3][0])
    assert one["lo"] < one["worst"]["0.1"] < one["hi"]
    assert one["converged_at"] == 2  # the budget the headline worst case converged at
    assert "failed checks: large_eps_ok, monotone_ok" in page and "99.47" in page
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mlflow_run_id"] == doc["mlflow_run_id"]
    std = summary["groups"][0]
    assert std["clean"]["mean"] == pytest.approx(0.988) and std["clean"]["n"] == 2
    assert summary["groups"][2]["suspected_gradient_masking"] == {
        "mnist-lenet-adversarial-s0": ["large_eps_ok", "monotone_ok"]}
    client = mlflow.MlflowClient()
    run = client.get_run(doc["mlflow_run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "reports" and run.info.run_name == "report"
    assert run.data.metrics["flagged_runs"] == 1 and run.data.metrics["mnist.lenet.batchout.pgd.eps_0.1000"] == 0.79
    assert run.data.metrics["mnist.lenet.batchout.worst.eps_0.1000"] == 0.79
    # batchout vs standard: 3 worst-case rows significant, clean not resolved; vs adversarial: 4 single-run rows
    assert {k: run.data.metrics[f"comparisons_{k}"] for k in ("significant", "not_resolved", "not_judged", "suspect")} \
        == {"significant": 3, "not_resolved": 1, "not_judged": 4, "suspect": 3}
    assert summary["counts"]["significant"] == 3 and summary["headline_eps"] == {"mnist": 0.1}
    assert summary["groups"][0]["robust"]["worst"]["eps_0.1000"]["ci95"] == pytest.approx(
        clustered.arm_interval([_flags(0.20, 0), _flags(0.24, 0)]))
    assert run.data.params["alpha"] == "0.05"
    assert (out / "report.md").read_text().startswith("# Test report\n\n## Answer: is BatchOut more robust?\n\n"
                                                      "### mnist\n\n| comparison | eps |")
    assert {a.path for a in client.list_artifacts(run.info.run_id, "report")} >= {"report/report.html",
                                                                                 "report/report.md"}


def test_missing_metrics_names_file_and_keeps_old_reports(setup):
    params, paths = setup
    paths.reports.mkdir()
    (paths.reports / "old.md").write_text("previous")
    paths.attack_metrics("mnist-lenet-batchout-s1").unlink()
    with pytest.raises(BatchoutError, match=r"mnist-lenet-batchout-s1\.json is missing.*dvc repro "
                                            r"attack@mnist-lenet-batchout\b"):
        stage.run(params, paths)
    assert (paths.reports / "old.md").read_text() == "previous"


def test_cli_bad_params_exits_2(tmp_path: Path):
    from pipeline.cli import app

    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump({"report": {"alpha": 1.5}}))
    result = CliRunner().invoke(app, ["report", "--params", str(bad)])
    assert result.exit_code == 2
    assert "report.alpha" in result.output
    # the old spread verdict is gone: its parameter is refused, not silently ignored
    bad.write_text(yaml.safe_dump({"report": {"spread_factor": 2.0}}))
    result = CliRunner().invoke(app, ["report", "--params", str(bad)])
    assert result.exit_code == 2 and "report.spread_factor" in result.output


def test_the_papers_claim_beside_ours_with_measured_causes(groups):
    """Per paper arm and eps the paper reports and we attacked (0.1, 0.3 of the fixture's 0.1, 0.25, 0.3): the
    paper's FGSM number, ours under FGSM and under the converged attack with intervals, the verdicts against
    our intervals, and where FGSM stays above the converged attack the cause the attack stage measured."""
    from batchout.reporting import paper

    rows = paper.claim_rows(groups, tolerance=0.05)
    assert [(r["method"], r["eps"]) for r in rows] == [(m, e) for m in ("standard", "batchout", "adversarial")
                                                        for e in (0.1, 0.3)]
    bo = {r["eps"]: r for r in rows if r["method"] == "batchout"}
    assert bo[0.3]["paper"] == 96.0 and bo[0.3]["fgsm"] == pytest.approx(0.79)
    assert bo[0.3]["converged"] == pytest.approx(0.48) and bo[0.3]["budget"] == "2x" and bo[0.3]["all_converged"]
    assert bo[0.3]["fgsm_vs_paper"] == bo[0.3]["converged_vs_paper"] == "ours lower"
    # FGSM 0.79 vs 0.48 converged: no check failed on BatchOut, its FGSM curve falls, no gradient data
    assert bo[0.3]["cause"].startswith("no check failed")
    adv = {r["eps"]: r for r in rows if r["method"] == "adversarial"}
    assert adv[0.3]["cause"].startswith("checks failed on 1 of 1 seeds (large_eps_ok, monotone_ok)")
    assert adv[0.1]["cause"] == ""  # FGSM 95 % vs converged 90 %: not more than the tolerance apart
    std = {r["eps"]: r for r in rows if r["method"] == "standard"}
    assert std[0.1]["fgsm_vs_paper"] == "ours lower" and std[0.3]["fgsm_vs_paper"] == "reproduced"  # 23 % vs 19.4
    words = paper.claim_words(rows)
    assert words.startswith("Under FGSM, the paper's attack, the BatchOut claim (Subramanya")
    assert "is not reproduced (ours lower) at any of them (0.1, 0.3). Against the converged attack it does not " \
           "survive at any of them (0.1, 0.3): at eps 0.3 the paper reports 96.0 %, ours is 79.0 % under FGSM and " \
           "48.0 % under the converged attack (converged, at 2x the profile's budget)." in words
    text = render.to_markdown("T", tables.build_blocks("T", groups, 0.05, []))
    assert text.index("### mnist: the paper's claim") < text.index("## Summary")  # part of the answer



def test_an_arm_the_paper_has_no_number_for_is_a_row_without_verdicts(groups):
    """A tuned BatchOut arm: ours under FGSM and converged at the paper's eps, no paper number, no verdict
    against it, and not part of the sentence about the paper's claim."""
    from dataclasses import replace

    from batchout.reporting import paper

    bo = next(g for g in groups if g.method == "batchout")
    tuned = replace(bo, label="batchout (tuned)")
    rows = paper.claim_rows([*groups, tuned], tolerance=0.05)
    extra = [r for r in rows if r["arm"] == tuned.title]
    assert [r["eps"] for r in extra] == [0.1, 0.3] and all(r["paper"] is None for r in extra)
    assert {r["fgsm_vs_paper"] for r in extra} == {r["converged_vs_paper"] for r in extra} == {"–"}
    assert extra[1]["fgsm"] == pytest.approx(0.79) and extra[1]["cause"].startswith("no check failed")
    cells = [row for row in paper.claim_table(rows).items[1:] if row[0] == tuned.title]
    assert [c[2] for c in cells] == ["–", "–"]
    assert paper.claim_words(rows) == paper.claim_words([r for r in rows if r not in extra])

def test_a_rising_fgsm_curve_and_vanishing_gradients_are_named_as_causes(setup):
    from batchout.reporting import paper

    params, paths = setup
    records = stage.load_records(params, paths)
    for r in records:
        if "batchout" in r.name:
            r.attack["robust_acc"]["fgsm"]["eps_0.3000"] = 0.95  # FGSM higher at 0.3 than at 0.25
            r.attack["checks"]["vanishing_gradient"] = 0.4
    rows = paper.claim_rows(grouping.make_groups(records), tolerance=0.05)
    cause = next(r["cause"] for r in rows if r["method"] == "batchout" and r["eps"] == 0.3)
    assert "the FGSM curve rises with eps (0.25 -> 0.3)" in cause
    assert "exactly zero (fp32) on 40 % of the points" in cause
