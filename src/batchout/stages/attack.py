"""Attack stage: robust accuracy of an arm's trained models (one per seed) over the eps grid, with
sanity checks.

Usage: ``results = run(params, "mnist-lenet-standard", Paths())`` -> ``{"mnist-lenet-standard-s0": {...}, ...}``

Refuses (one line, exit 2) a model file that is missing, corrupt, not a plain weights file, or
of another run (name, data set, architecture, method, seed, input shape). Writes
``results/attack/<arm>/<run>.json`` and ``plots/attack/<run>.csv`` and logs the robust metrics
(``robust_acc.pgd.eps_0.0196``), the check tags and the plot into the model's own training run.
Also writes, for the arm's first seed, ``examples/<arm>/<run>.npz``: the first few attacked images,
clean and adversarial per eps (the report's image grid).
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from batchout import tracking
from batchout.attacks.registry import check_settings
from batchout.config import Params, runs_of
from batchout.data.loader import load_meta, load_split, seeded_subset
from batchout.device import channels_last, resolve_device
from batchout.errors import BatchoutError
from batchout.evaluation.checks import sanity_checks
from batchout.evaluation.examples import adversarial_examples
from batchout.evaluation.record import converge_record, grid_record
from batchout.evaluation.robust import converged_grid
from batchout.io import eps_key, read_metrics, write_csv, write_json, write_npz
from batchout.paths import Paths, split_run
from batchout.reporting.plots import plot_robustness
from batchout.reporting.stats import wilson
from batchout.training.checkpoint import check_model_fits, load_model

Loaded = dict[str, tuple[dict[str, Any], tuple[torch.Tensor, ...]]]  # data set -> (meta, attack_subset)


def attack_subset(paths: Paths, dataset: str, size: int | None, seed: int) -> tuple[torch.Tensor, ...]:
    """A fixed, seeded subset of the test split: every model of a data set sees the same images."""
    x, y = load_split(paths.prepared(dataset), "test")
    idx = seeded_subset(len(y), size, seed)
    return x[idx], y[idx], idx


def _inputs(params: Params, dataset: str, paths: Paths, loaded: Loaded | None) -> tuple[dict[str, Any], tuple]:
    """meta.json and the attacked subset, read (and sha256-checked) once per data set and call."""
    if loaded is not None and dataset in loaded:
        return loaded[dataset]
    out = load_meta(paths.prepared(dataset)), attack_subset(paths, dataset, params.attack.subset, params.attack.seed)
    if loaded is not None:
        loaded[dataset] = out
    return out


def run(params: Params, name: str, paths: Paths) -> dict[str, dict[str, Any]]:
    """Attack every run of arm ``name`` (or the one run ``name``): run -> result."""
    check_settings(params.attack.attacks, "attack.attacks.")  # as the validate_attacks stage: before any file
    loaded: Loaded = {}
    return {run_: attack_one(params, run_, paths, loaded) for run_ in runs_of(params.train, name)}


def attack_one(params: Params, name: str, paths: Paths, loaded: Loaded | None = None) -> dict[str, Any]:
    """Attack one run; ``loaded``: the data set's inputs from an earlier seed of the same call."""
    runs_of(params.train, name)  # refuses an unknown name with the allowed ones
    arm, seed = split_run(name)
    spec, a = params.train.all_runs()[arm], params.attack
    if spec.dataset not in a.eps:
        raise BatchoutError(f"attack.eps: no budgets for data set {spec.dataset!r}; add attack.eps.{spec.dataset}")
    eps = sorted(a.eps[spec.dataset])
    device = resolve_device(a.device)
    model_path = paths.model_dir(name) / "model.pt"
    model, cfg, meta = load_model(model_path)
    prepared, (x, y, idx) = _inputs(params, spec.dataset, paths, loaded)
    # A file of another run (copied, or a stale out) would be attacked under this run's name.
    check_model_fits(model_path, cfg, meta, prepared, name=name,
                     dataset=spec.dataset, model=spec.model, method=spec.method, seed=seed)
    tracking.configure(tracking.repo_root(paths.root))  # after the inputs are known good; fails fast on a dead server
    channels_last(model.to(device))
    torch.manual_seed(a.seed)  # random starts and Square's proposals are reproducible
    started = time.perf_counter()
    conv = a.converge
    ev = converged_grid(model, x, y, a.attacks, eps, a.batch_size, device, escalate_attack=conv.attack,
                        tolerance=conv.tolerance, cap=conv.cap.model_dump(), progress=f"attack {name}")
    large = a.checks.large_eps.get(spec.dataset, 2 * max(eps))
    checks = sanity_checks(model, x, y, ev.grid, a.checks, large, a.batch_size, device, escalations=ev.escalations,
                           worst_acc=ev.worst_acc(), progress=f"checks {name}")
    record = grid_record(ev)
    result = {"run": name, "dataset": spec.dataset, "model": spec.model, "method": spec.method, "seed": seed,
              "n_examples": len(y), "examples_sha256": _sha(idx), "eps": ev.grid.eps, **record,
              "robust_ci": _intervals(record["robust_acc"], len(y)),
              "converge": converge_record(ev, conv.attack, conv.tolerance, conv.cap.model_dump()),
              "checks": checks, "seconds": round(time.perf_counter() - started, 2)}
    write_json(paths.attack_metrics(name), result)
    write_csv(paths.attack_curve(name), _curve_rows(result))
    # after the checks, so their random starts (and numbers) are those of a run without examples. The
    # report's image grid shows one run per arm, and the examples cost up to ~1 s of attacks per run on
    # 2 CPU cores: only the arm's first seed makes them.
    if seed == spec.seeds[0]:
        examples = adversarial_examples(model, x, y, a.attacks, eps, device)
        _save_examples(paths.adv_examples(name), examples, prepared)
    _log(paths, name, result)
    return result


def _save_examples(path: Path, ex: dict[str, Any], meta: dict[str, Any]) -> None:
    """Adversarial images as float16: uint8 would round the perturbation to 1/255 steps (eps 2/255 is
    two of them); float16 keeps ~5e-4 near 1. Clean images stay as prepared (uint8)."""
    write_npz(path, {**ex, "x_adv": ex["x_adv"].astype("float16"), "classes": [str(c) for c in meta["classes"]]})


def _intervals(robust_acc: dict[str, dict[str, float]], n: int) -> dict[str, dict[str, list[float]]]:
    """Each accuracy's 95 % Wilson interval over the n attacked test points."""
    return {atk: {k: list(wilson(acc * n, n)) for k, acc in accs.items()} for atk, accs in robust_acc.items()}


def _sha(idx: torch.Tensor) -> str:
    """Identity of the attacked test examples: paired comparisons need the same points on both sides."""
    return hashlib.sha256(",".join(map(str, idx.tolist())).encode()).hexdigest()


def _curve_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for e in result["eps"]:
        row: dict[str, Any] = {"eps": round(e, 6)}
        row.update({atk: accs[eps_key(e)] for atk, accs in result["robust_acc"].items()})
        rows.append(row)
    return rows


def _flat_metrics(result: dict[str, Any]) -> dict[str, float]:
    """``robust_acc.<attack>.eps_<eps>`` (``worst``: per-example worst case over every attack), its
    interval ``robust_ci_low/high.<attack>.eps_<eps>``, and ``breakdown.autoattack.<member>.eps_<eps>``."""
    out = {"robust_clean_acc": result["clean_acc"]}
    for atk, accs in result["robust_acc"].items():
        for e in result["eps"]:
            out[tracking.metric_key("robust_acc", atk, eps=e)] = accs[eps_key(e)]
            lo, hi = result["robust_ci"][atk][eps_key(e)]
            out[tracking.metric_key("robust_ci_low", atk, eps=e)] = lo
            out[tracking.metric_key("robust_ci_high", atk, eps=e)] = hi
    for atk, parts in result["breakdown"].items():
        for member, accs in parts.items():
            out.update({tracking.metric_key("breakdown", atk, member, eps=e): accs[eps_key(e)] for e in result["eps"]})
    # per eps: whether the escalated attack converged (1/0), its budget (x the profile's) and every attack's
    # forward+backward passes summed over the attacked points (all rounds)
    for e in result["eps"]:
        conv = result["converge"]["eps"][eps_key(e)]
        out[tracking.metric_key("converged", eps=e)] = float(conv["converged"])
        out[tracking.metric_key("budget", eps=e)] = float(conv["factor"])
        out[tracking.metric_key("passes", eps=e)] = float(conv["passes"]["forward"] + conv["passes"]["backward"])
    # the checks' numbers (accuracy drops and rises, fractions), beside their pass/FAIL tags
    checks = result["checks"]
    out.update({f"check.{k}": float(v) for k, v in checks.items()
                if isinstance(v, int | float) and not isinstance(v, bool) and k != "subset"})
    return out


def _log(paths: Paths, name: str, result: dict[str, Any]) -> None:
    """Into the model's own training run, so the MLflow UI sorts runs by robustness."""
    train_metrics = paths.train_metrics(name)  # absent for a model trained outside the pipeline
    run_id = read_metrics(train_metrics, f"train@{name}").get("mlflow_run_id") if train_metrics.is_file() else None
    # Only "<name>_ok" entries are pass/fail checks; other booleans describe how a check ran.
    tags = {f"check.{k}": ("pass" if v else "FAIL") for k, v in result["checks"].items() if k.endswith("_ok")}
    tags["suspected_gradient_masking"] = str(result["checks"].get("suspected_gradient_masking", False))
    tags.update({tracking.metric_key("budget", eps=e): result["converge"]["eps"][eps_key(e)]["budget"]
                 for e in result["eps"]})  # the budget in words (metric budget.eps_*: its factor)
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / f"robustness-{name}.png"
        curves = {atk: {"eps": result["eps"], "acc": [accs[eps_key(e)] for e in result["eps"]]}
                  for atk, accs in result["robust_acc"].items()}
        plot_robustness(curves, png, title=name)
        context = tracking.log_to_run(run_id) if run_id else tracking.start_run(result["dataset"], f"{name}-attack")
        with context as log:
            log.log_metrics(_flat_metrics(result))
            log.set_tags(tags)
            log.log_artifact(png, "robustness")
            log.log_dict(result, "robustness/attack.json")
