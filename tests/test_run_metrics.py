"""metrics/<run>.json and metrics/arms.json: the numbers DVC shows and diffs, and the width of the
README's `dvc metrics show` / `dvc exp show` commands on the quick profile's run names.

Usage: ``pytest -q tests/test_run_metrics.py``
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import converge_doc
from dvc_project import base_env

from batchout.config import Params
from batchout.io import eps_key
from batchout.paths import run_name
from batchout.reporting.groups import RunRecord
from batchout.reporting.run_metrics import arm_metrics, check_metrics, eps_label, run_metrics
from batchout.reporting.stats import wilson

README = Path(__file__).resolve().parents[1] / "README.md"
N = 150  # attacked test points per run


def _record(arm: str, seed: int, dataset: str, eps: list[float], test_acc: float, robust: list[int]) -> RunRecord:
    """A run whose worst case keeps robust[i] of N points at eps[i] (and FGSM one more)."""
    worst = {eps_key(e): k / N for e, k in zip(eps, robust, strict=True)}
    fgsm = {eps_key(e): (k + 1) / N for e, k in zip(eps, robust, strict=True)}
    ci = {eps_key(e): list(wilson(k, N)) for e, k in zip(eps, robust, strict=True)}
    attack = {"eps": eps, "clean_acc": 0.9, "robust_acc": {"fgsm": fgsm, "worst": worst},
              "robust_ci": {"worst": ci, "fgsm": ci}, "seconds": 12.3,
              "converge": converge_doc(eps, [k / N for k in robust], N, factor=16)}
    return RunRecord(run_name(arm, seed), dataset, "lenet", arm.split("-")[2], arm.split("-")[2],
                     {"test_acc": test_acc, "wall_seconds": 4.2, "mlflow_run_id": "abc"}, attack, seed=seed)


def test_eps_labels_read_like_params_yaml():
    assert [eps_label(e) for e in (0.1, 0.3, 2 / 255, 8 / 255, 0.0312345, 0.05)] == \
        ["0.1", "0.3", "2/255", "8/255", "0.0312", "0.05"]


def test_run_file_holds_numbers_only_at_the_headline_eps():
    eps = [0.1, 0.2]
    records = [_record("mnist-lenet-standard", 0, "mnist", eps, 0.9871, [90, 30]),
               _record("mnist-lenet-standard", 1, "mnist", eps, 0.9801, [84, 21])]
    files = run_metrics(records, {"mnist": 0.2})
    lo, hi = wilson(30, N)
    assert files["mnist-lenet-standard-s0"] == {"clean": 0.9871, "worst": {"0.1": 0.6, "0.2": 0.2},
                                                "lo": round(lo, 4), "hi": round(hi, 4), "converged_at": 16}
    # an escalation that reached its cap still breaking points converged nowhere: 0, an upper bound
    records[1].attack["converge"] = converge_doc(eps, [84 / N, 21 / N], N, factor=16, converged=[True, False])
    assert run_metrics(records, {"mnist": 0.2})["mnist-lenet-standard-s1"]["converged_at"] == 0
    assert run_metrics(records, {"mnist": 0.1})["mnist-lenet-standard-s1"]["converged_at"] == 16
    # no run id, no seconds: the file changes only when a result does
    assert all(isinstance(v, (int, float)) for f in files.values() for v in _leaves(f))
    arms = arm_metrics(records, {"mnist": 0.2})
    assert arms == {"mnist-lenet-standard": {"clean": round((0.9871 + 0.9801) / 2, 4),
                                             "worst": round((30 + 21) / 2 / N, 4)}}


def test_checks_file_holds_the_ensemble_convergence_per_run():
    """metrics/checks.json: the most a doubled escalation round broke, the PGD drop, the budget per eps, whether
    every eps converged, and the flag."""
    ok, bad = (_record("mnist-lenet-standard", s, "mnist", [0.1, 0.2], 0.98, [50, 20]) for s in (0, 1))
    ok.attack["checks"] = {"more_iterations_drop": 0.01, "more_iterations_ok": True, "ensemble_converged_ok": True,
                           "ensemble_drop": 0.0067}
    ok.attack["converge"] = converge_doc([0.1, 0.2], [50 / N, 20 / N], N, factor=4)
    bad.attack["checks"] = {"more_iterations_drop": 0.0, "ensemble_converged_ok": False, "suspected_gradient_masking":
                            True, "ensemble_drop": 0.12345}
    bad.attack["converge"] = converge_doc([0.1, 0.2], [50 / N, 20 / N], N, factor=16, converged=[True, False])
    assert check_metrics([ok, bad]) == {
        "mnist-lenet-standard-s0": {"ensemble_drop": 0.0067, "pgd_drop": 0.01, "budget": {"0.1": 4, "0.2": 4},
                                    "converged": 1, "flagged": 0},
        "mnist-lenet-standard-s1": {"ensemble_drop": 0.1235, "pgd_drop": 0.0, "budget": {"0.1": 16, "0.2": 16},
                                    "converged": 0, "flagged": 1}}
    # the per-run file: whether the headline eps converged, and at which budget
    files = run_metrics([ok, bad], {"mnist": 0.2})
    assert files["mnist-lenet-standard-s0"]["converged_at"] == 4
    assert files["mnist-lenet-standard-s1"]["converged_at"] == 0  # the cap reached, points still falling


def test_without_a_headline_the_interval_is_left_out():
    files = run_metrics([_record("mnist-lenet-standard", 0, "mnist", [0.1], 0.98, [50])], {})
    assert set(files["mnist-lenet-standard-s0"]) == {"clean", "worst"}  # no headline: no interval, no budget


def _leaves(d):
    for v in d.values():
        yield from (_leaves(v) if isinstance(v, dict) else [v])


# ---------------------------------------------------------------- the README's commands, on the quick profile
def readme_commands() -> list[str]:
    """The command lines of the README's "After `dvc repro`" block (comments stripped)."""
    text = README.read_text()
    block = text[text.index("## After `dvc repro`"):]
    block = block[block.index("```bash\n") + 8:block.index("```", block.index("```bash\n") + 8)]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


def readme_command(prefix: str) -> str:
    found = [c for c in readme_commands() if c.lstrip("(").startswith(prefix) or f"&& {prefix}" in c]
    assert found, f"the README's 'After dvc repro' block has no `{prefix} ...` command"
    return found[0]


def _quick_profile_records(params: Params, bump: float = 0.0) -> list[RunRecord]:
    records = []
    for arm, spec in params.train.all_runs().items():
        eps = sorted(params.attack.eps[spec.dataset])
        for seed in spec.seeds:
            robust = [max(0, round(N * (0.7 - 0.2 * i + bump)) - seed) for i in range(len(eps))]
            records.append(_record(arm, seed, spec.dataset, eps, 0.9 + bump, robust))
    return records


@pytest.fixture
def quick_metrics_repo(tmp_path: Path, real_params: Params):
    """A git + DVC repository whose `metrics` output holds the files the report stage writes for
    params.yaml's runs, in two commits whose numbers differ."""
    env = {**base_env(tmp_path), "COLUMNS": "1000"}  # a wide terminal: rich must not squeeze columns

    def sh(*args: str) -> str:
        return subprocess.run(args, cwd=tmp_path / "r", env=env, check=True, capture_output=True, text=True).stdout

    def write(bump: float) -> None:
        records = _quick_profile_records(real_params, bump)
        headline = {ds: sorted(e)[0] for ds, e in real_params.attack.eps.items()}
        (tmp_path / "r" / "metrics").mkdir(parents=True, exist_ok=True)
        for name, numbers in run_metrics(records, headline).items():
            (tmp_path / "r" / "metrics" / f"{name}.json").write_text(json.dumps(numbers))
        (tmp_path / "r" / "metrics" / "arms.json").write_text(json.dumps(arm_metrics(records, headline)))

    write(0.0)
    (tmp_path / "r" / "dvc.yaml").write_text("stages:\n  report:\n    cmd: 'true'\n    metrics:\n"
                                             "      - metrics:\n          cache: false\n")
    sh("git", "init", "-q")
    sh("dvc", "init", "-q")
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "quick profile")
    write(0.02)  # a second commit: `dvc metrics diff HEAD~1` compares the two
    sh("git", "commit", "-qam", "changed results")
    return sh


def _width(out: str) -> int:
    return max(len(line.rstrip()) for line in out.splitlines())


@pytest.mark.slow  # ~10 s: five DVC commands
def test_readme_views_fit_120_columns_on_the_quick_profile(quick_metrics_repo, real_params):
    sh = quick_metrics_repo
    for ds in real_params.data.datasets:
        cmd = readme_command("dvc metrics show").replace("mnist-*", f"{ds}-*")
        out = sh("bash", "-c", cmd)
        runs = [n for n in real_params.train.run_names() if n.startswith(f"{ds}-")]
        assert _width(out) < 120, out
        assert len(re.findall(rf"^{ds}-\S+\.json", out, flags=re.M)) == len(runs), out
        assert "clean" in out and "worst." in out and re.search(r"\blo\b", out), out
        assert re.search(r"\bconverged_at\b", out), out
    out = sh("bash", "-c", readme_command("dvc exp show"))
    assert _width(out) < 120, out
    assert "mnist-lenet-batchout.clean" in out and "mnist-lenet-batchout.worst" in out, out
    # both rows, workspace and the commit, carry numbers
    assert len(re.findall(r"\b0\.9[0-9]*\b", out)) >= 2, out
    out = sh("bash", "-c", readme_command("dvc metrics diff"))
    assert "metrics/mnist-lenet-batchout-s0.json" in out and "worst.0.1" in out and "0.02" in out, out
