"""The README's Optuna view: `optuna-dashboard tune/optuna.journal` serves the tune stage's study from
its journal file (the default storage), read-only, beside a running study.

Usage: ``pytest -q tests/test_dashboard.py`` (slow: a real dashboard server; skips without the
`dashboard` extra)
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import optuna
import pytest
from servers import free_port, get_json, start_server

from batchout import tuning

pytestmark = pytest.mark.slow  # ~5 s: the dashboard server's start-up


def _dashboard() -> str:
    found = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("optuna-dashboard is not installed (pip install -e '.[dashboard]')")
    return found


def test_dashboard_serves_the_tune_journal(tmp_path: Path):
    binary = _dashboard()
    journal = tmp_path / "tune" / "optuna.journal"
    study = optuna.create_study(study_name="tune-mnist-lenet", direction="maximize",
                                storage=tuning.open_storage(tuning.storage_spec(None, journal)))
    for k, n in ((0.2, 0.5), (0.5, 0.1), (0.8, 0.3)):
        study.enqueue_trial({"k": k, "n": n})
    study.optimize(lambda t: t.suggest_float("k", 0, 1) - abs(t.suggest_float("n", 0, 1) - 0.3), n_trials=3)
    port = free_port()
    argv = [binary, str(journal), "--host", "127.0.0.1", "--port", str(port)]
    with start_server(argv, port, log=tmp_path / "dashboard.log", health="/api/studies") as srv:
        studies = get_json(f"{srv.url}/api/studies")["study_summaries"]
        assert [s["study_name"] for s in studies] == ["tune-mnist-lenet"]
        detail = get_json(f"{srv.url}/api/studies/{studies[0]['study_id']}", {"after": 0})
        assert len(detail["trials"]) == 3 and {t["state"] for t in detail["trials"]} == {"Complete"}
        best = {p["name"]: p["param_internal_value"] for p in detail["best_trials"][0]["params"]}
        assert best == {"k": 0.8, "n": 0.3}  # k - |n - 0.3| is largest there
