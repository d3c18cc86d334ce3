"""Report stage: every run's train and attack metrics -> reports/ (Markdown, self-contained HTML, PNG
figures, summary.json) and each run's headline numbers -> metrics/<run>.json (the DVC metrics), logged
to MLflow as the run "report" of the experiment "reports".

Usage: ``summary = run(params, Paths())``

The figures also draw the training curves (plots/train/<run>.csv), the attack stage's image pairs
(examples/<run>.npz) and the tuning trials (tune/plots/trials.csv) where those files exist.

The folder is built under a temporary name and swapped in whole, so a failed report (a missing metrics
file, an unreachable tracking server) leaves the previous reports untouched.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from batchout import tracking
from batchout.config import Params
from batchout.errors import BatchoutError
from batchout.io import atomic_dir, read_csv, read_metrics, write_json, write_text
from batchout.paths import Paths, run_name
from batchout.reporting import compare, gallery, registry_pick, render, tables
from batchout.reporting import groups as grouping
from batchout.reporting.run_metrics import arm_metrics, check_metrics, run_metrics

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


def _curve(path: Path) -> list[dict[str, float]]:
    return [{k: float(row[k]) for k in ("epoch", "val_acc", "train_loss")} for row in read_csv(path)]


def _examples(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _trials(path: Path) -> list[dict[str, Any]] | None:
    if not path.is_file():
        return None
    return [{**row, "k": float(row["k"]), "n": float(row["n"]), "best": row["best"] == "1",
             "value": float(row["value"]) if row["value"] else None} for row in read_csv(path)]


def _figure_inputs(params: Params, records: list[grouping.RunRecord], paths: Paths) -> gallery.FigureInputs:
    """What the figures draw besides the metrics; a file not there (an older pipeline's run) is left out."""
    runs = [r.name for r in records]
    return gallery.FigureInputs(
        curves={n: _curve(p) for n in runs if (p := paths.train_curve(n)).is_file()},
        examples={n: _examples(p) for n in runs if (p := paths.adv_examples(n)).is_file()},
        trials=_trials(paths.tune_trials), tune=params.tune)


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


def _write(groups: list[grouping.Group], params: Params, inputs: gallery.FigureInputs, out: Path) -> dict[str, Any]:
    alpha, title, override = params.report.alpha, params.report.title, params.report.headline_eps
    headline = compare.headline_eps(groups, override)
    figures = gallery.figure_blocks(groups, headline, inputs, out)
    blocks = tables.build_blocks(title, groups, alpha, figures, override, params.attack.checks.tolerance)
    images = {b.items[0]: (out / b.items[0]).read_bytes() for b in figures if b.kind == "img"}
    write_text(out / "report.md", render.to_markdown(title, blocks))
    write_text(out / "report.html", render.to_html(title, blocks, images))
    return {"title": title, **compare.summary(groups, alpha, headline)}


def _register(records: list[grouping.RunRecord], headline: dict[str, float], params: Params) -> dict[str, Any]:
    """Move the model registry's aliases (``models:/batchout-<ds>@best-robust``, ``@tuned``) onto the runs
    ``registry_pick`` chooses; returns summary.json's ``registry``: data set -> one row per alias."""
    picks = registry_pick.pick(records, headline, params.train.tuned_runs)
    note = "BatchOut study models; @best-robust: top worst-case robust accuracy at the headline eps, @tuned: tuned arms"
    return {ds: tracking.set_aliases(registry_pick.registered_name(ds),
                                     {a: None if p is None else asdict(p) for a, p in chosen.items()}, note)
            for ds, chosen in picks.items()}


def run(params: Params, paths: Paths) -> dict[str, Any]:
    records = load_records(params, paths)  # a missing file fails before MLflow starts
    groups = grouping.make_groups(records)
    inputs = _figure_inputs(params, records, paths)
    tracking.configure(tracking.repo_root(paths.root))
    with atomic_dir(paths.reports) as tmp, atomic_dir(paths.metrics) as metrics_tmp, \
            tracking.start_run(EXPERIMENT, RUN_NAME, tags=tracking.run_tags(paths.root)) as log:
        doc = _write(groups, params, inputs, tmp)
        for name, numbers in run_metrics(records, doc["headline_eps"]).items():
            write_json(metrics_tmp / f"{name}.json", numbers)
        write_json(metrics_tmp / "arms.json", arm_metrics(records, doc["headline_eps"]))
        write_json(metrics_tmp / "checks.json", check_metrics(records))
        doc["mlflow_run_id"] = log.run_id
        doc["registry"] = _register(records, doc["headline_eps"], params)
        write_json(tmp / "summary.json", doc)
        log.log_params({"title": params.report.title, "alpha": params.report.alpha,
                        "headline_eps": json.dumps(doc["headline_eps"], sort_keys=True),
                        "runs": ",".join(params.train.all_runs())})
        log.log_metrics(_metrics(doc))
        for path in sorted(tmp.iterdir()):
            log.log_artifact(path, "report")
    return doc
