"""Report stage: every run's train and attack metrics -> reports/ (Markdown, self-contained HTML, PNG
figures, summary.json), logged to MLflow as the run "report" of the experiment "reports".

Usage: ``summary = run(params, Paths())``

The folder is built under a temporary name and swapped in whole, so a failed report (a missing metrics
file, an unreachable tracking server) leaves the previous reports untouched.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from batchout import tracking
from batchout.config import Params
from batchout.errors import BatchoutError
from batchout.io import atomic_dir, read_metrics, write_json, write_text
from batchout.paths import Paths, run_name
from batchout.reporting import compare, render, tables
from batchout.reporting import groups as grouping
from batchout.reporting.plots import plot_robustness

EXPERIMENT = "reports"
RUN_NAME = "report"


def load_records(params: Params, paths: Paths) -> list[grouping.RunRecord]:
    """One record per configured run (every seed of train.runs, then of train.tuned_runs), in params order."""
    specs = params.train.all_runs()
    if not specs:
        raise BatchoutError("report: train.runs and train.tuned_runs are both empty; nothing to report")
    labels = grouping.group_labels(specs, params.train.tuned_runs)
    records = []
    for arm, spec in specs.items():
        suffix = "_tuned" if arm in params.train.tuned_runs else ""
        for seed in spec.seeds:
            name = run_name(arm, seed)
            train = read_metrics(paths.train_metrics(name), f"train{suffix}@{arm}", ("test_acc",))
            attack = read_metrics(paths.attack_metrics(name), f"attack{suffix}@{arm}",
                                  ("clean_acc", "eps", "robust_acc"))
            records.append(grouping.RunRecord(name, spec.dataset, spec.model, spec.method, labels[arm], train, attack,
                                              seed=seed))
    return records


def _figures(groups: list[grouping.Group], out: Path) -> dict[str, str]:
    """One PNG per data set: worst-case accuracy vs eps, one line per group; returns file names."""
    names = {}
    for ds in dict.fromkeys(g.dataset for g in groups):
        curves = grouping.robustness_curves([g for g in groups if g.dataset == ds])
        if any(len(c["eps"]) > 1 for c in curves.values()):
            names[ds] = f"robustness_{ds}.png"
            plot_robustness(curves, out / names[ds], title=f"{ds}: worst-case robust accuracy (all attacks)")
    return names


def _slug(text: str) -> str:
    """MLflow metric names allow letters, digits and _ - . / space only."""
    return re.sub(r"[^\w\-./ ]", "_", text)


def _metrics(doc: dict[str, Any]) -> dict[str, float]:
    """A few numbers for the MLflow run: counts of verdicts, and each group's clean and robust accuracy."""
    counts = doc["counts"]
    out = {"runs": float(sum(len(g["runs"]) for g in doc["groups"])), "groups": float(len(doc["groups"])),
           "flagged_runs": float(sum(len(g["suspected_gradient_masking"]) for g in doc["groups"])),
           **{f"comparisons_{k}": float(v) for k, v in counts.items()}}
    for g in doc["groups"]:
        slug = _slug(f"{g['dataset']}.{g['model']}.{g['label']}")
        out[f"{slug}.clean"] = g["clean"]["mean"]
        for attack, per_eps in g["robust"].items():
            for eps, s in per_eps.items():
                if s is not None:
                    out[f"{slug}.{_slug(attack)}.{eps}"] = s["mean"]
    return out


def _write(groups: list[grouping.Group], params: Params, out: Path) -> dict[str, Any]:
    alpha, title, override = params.report.alpha, params.report.title, params.report.headline_eps
    figures = _figures(groups, out)
    blocks = tables.build_blocks(title, groups, alpha, figures, override)
    images = {name: (out / name).read_bytes() for name in figures.values()}
    write_text(out / "report.md", render.to_markdown(title, blocks))
    write_text(out / "report.html", render.to_html(title, blocks, images))
    return {"title": title, **compare.summary(groups, alpha, compare.headline_eps(groups, override))}


def run(params: Params, paths: Paths) -> dict[str, Any]:
    groups = grouping.make_groups(load_records(params, paths))  # a missing file fails before MLflow starts
    tracking.configure(tracking.repo_root(paths.root))
    with atomic_dir(paths.reports) as tmp, \
            tracking.start_run(EXPERIMENT, RUN_NAME, tags=tracking.run_tags(paths.root)) as log:
        doc = _write(groups, params, tmp)
        doc["mlflow_run_id"] = log.run_id
        write_json(tmp / "summary.json", doc)
        log.log_params({"title": params.report.title, "alpha": params.report.alpha,
                        "headline_eps": json.dumps(doc["headline_eps"], sort_keys=True),
                        "runs": ",".join(params.train.all_runs())})
        log.log_metrics(_metrics(doc))
        for path in sorted(tmp.iterdir()):
            log.log_artifact(path, "report")
    return doc
