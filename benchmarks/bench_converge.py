"""Our converged worst case against the standard AutoAttack (the authors' ``pyautoattack`` 0.2.0) on the
default run's own models and test points: robust accuracy and forward+backward passes.

Usage: ``python -m benchmarks.bench_converge [--runs RUN,RUN,...] [--eps-count 2] [--json FILE]``, after
``dvc repro`` (it reads params.yaml, models/, data/prepared/ and results/attack/; pyautoattack is a dev
dependency). About 3 minutes per model and eps on 2 CPU cores, most of it the reference's.

Per run, at the ``--eps-count`` most informative eps of its own converged worst case (furthest from 0 and
from clean accuracy): ours is what the attack stage wrote (the worst case over the grid and every
escalation round, the numbers the report uses, and the passes all of it cost); theirs is
``AutoAttack(version="standard")`` run here on the same attacked test points, the model in eval mode behind
a pass counter. CIFAR3 has 3 classes: the reference's APGD-T and FAB-T get 2 targets, and APGD-T the
targeted CE loss (targeted DLR needs 4 classes). Printed per row: both accuracies over all attacked points
(clean mistakes count as broken), ours - theirs in points (one point of 150 is 0.67), and passes ours /
theirs; ``estimate`` is the report's lower bound for theirs (``reporting.cost``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from batchout.config import load_params
from batchout.device import channels_last
from batchout.evaluation.passes import PassCounter
from batchout.io import eps_key, read_metrics
from batchout.paths import Paths
from batchout.reporting.cost import standard_at
from batchout.stages.attack import attack_subset
from batchout.training.checkpoint import load_model

# the default run's models: MNIST standard, BatchOut, tuned BatchOut, FGSM-trained; two CIFAR models
RUNS = ("mnist-lenet-standard-s0", "mnist-lenet-batchout-s0", "mnist-lenet-batchout_tuned-s0",
        "mnist-lenet-adversarial-s0", "cifar3-lenet-batchout_final-s0", "cifar10-lenet-standard-s0")


def informative(result: dict[str, Any], count: int) -> list[float]:
    """The ``count`` eps whose converged worst case is furthest from 0 and from clean accuracy."""
    clean, worst = result["clean_acc"], result["robust_acc"]["worst"]
    return sorted(result["eps"], key=lambda e: (-min(worst[eps_key(e)], clean - worst[eps_key(e)]), e))[:count]


def standard_autoattack(model: torch.nn.Module, eps: float, classes: int) -> Any:
    from pyautoattack import AutoAttack  # a dev dependency: imported only here
    from pyautoattack.autopgd_base import APGDAttack_targeted

    class TargetedCE(APGDAttack_targeted):
        """The reference's APGD-T on the targeted CE loss: its ``perturb`` admits only targeted DLR (which
        needs 4 classes), while each run it makes already implements ``ce-targeted``."""

        def attack_single_run(self, x: torch.Tensor, y: torch.Tensor, x_init: Any = None) -> Any:
            self.loss = "ce-targeted"
            try:
                return super().attack_single_run(x, y, x_init)
            finally:
                self.loss = "dlr-targeted"  # what perturb asserts on its next call

    aa = AutoAttack(model, norm="Linf", eps=eps, version="standard", device="cpu", seed=0)
    aa.verbose = False
    if classes < 4:  # CIFAR3: at most classes - 1 targets, and targeted DLR is undefined
        aa.apgd_targeted.n_target_classes = aa.fab.n_target_classes = classes - 1
        aa.apgd_targeted.__class__ = TargetedCE
    return aa


def theirs(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> dict[str, Any]:
    counter = PassCounter(model).eval()
    with torch.no_grad():
        classes = model(x[:1]).shape[1]
    start = time.perf_counter()
    adv, _ = standard_autoattack(counter, eps, classes).run_standard_evaluation(x, y, batch_size=len(x))
    seconds = time.perf_counter() - start
    with torch.no_grad():  # scored here, outside the counter: the reference's passes only
        robust = int((model(adv).argmax(1) == y).sum())
    return {"acc": robust / len(y), "passes": counter.passes().total, "seconds": round(seconds, 1)}


def row(paths: Paths, params: Any, run: str, eps: float) -> dict[str, Any]:
    result = read_metrics(paths.attack_metrics(run), f"attack@{run}")
    model, _, _ = load_model(paths.model_dir(run) / "model.pt")
    channels_last(model.eval())
    for p in model.parameters():
        p.requires_grad_(False)
    xs, ys, _ = attack_subset(paths, result["dataset"], params.attack.subset, params.attack.seed)
    x, y = xs.float() / 255, ys.long()
    conv = result["converge"]["eps"][eps_key(eps)]
    ref = theirs(model, x, y, eps)
    ours = conv["passes"]["forward"] + conv["passes"]["backward"]
    return {"run": run, "eps": eps, "ours": conv["acc"], "theirs": ref["acc"],
            "diff_points": 100 * (conv["acc"] - ref["acc"]), "converged": conv["converged"], "budget": conv["factor"],
            "passes_ours": ours, "passes_theirs": ref["passes"], "ratio": ours / ref["passes"],
            "estimate": standard_at(result, eps), "theirs_seconds": ref["seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default=",".join(RUNS))
    ap.add_argument("--eps-count", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    paths, params = Paths(Path.cwd()), load_params("params.yaml")
    rows = []
    print("run | eps | ours % | standard AA % | ours - theirs (points) | budget | passes ours | passes theirs "
          "| ours / theirs | estimate of theirs")
    for run in args.runs.split(","):
        result = read_metrics(paths.attack_metrics(run), f"attack@{run}")
        for eps in informative(result, args.eps_count):
            r = row(paths, params, run, eps)
            rows.append(r)
            print(f"{run} | {eps:.4g} | {100 * r['ours']:.2f} | {100 * r['theirs']:.2f} | {r['diff_points']:+.2f} | "
                  f"{r['budget']}x{'' if r['converged'] else ' (not converged)'} | {r['passes_ours']:,} | "
                  f"{r['passes_theirs']:,} | {r['ratio']:.3f} | {r['estimate']:,}", flush=True)
    total_ours, total_theirs = sum(r["passes_ours"] for r in rows), sum(r["passes_theirs"] for r in rows)
    worst_gap = max(r["diff_points"] for r in rows)
    print(f"total passes ours / theirs: {total_ours:,} / {total_theirs:,} = {total_ours / total_theirs:.3f}; "
          f"largest ours - theirs: {worst_gap:+.2f} points")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
