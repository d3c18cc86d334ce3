"""A projection, not a measurement: how long params.paper.yaml would take on one GPU, from the profile's work
(image-epochs per arm, attack passes per model) and throughputs measured on that GPU by this repository's
benchmarks.

Usage: ``python -m benchmarks.project_paper [--params params.paper.yaml] [--robust 0.5]``

Training: image-epochs (training images x epochs x seeds) / the measured training images/s of the model
(FGSM adversarial training: twice the passes per image). Attacks, per model: the grid's passes per
attacked point (``reporting.cost``'s standard AutoAttack schedule for the ensemble: 212 per clean-correct
point, 9,562 more per point that stays robust; PGD and PGD-DLR 2 x steps x restarts; FGSM 2; DeepFool 2 x
steps), with ``--robust`` of the points assumed robust at every eps, over the whole test split, at every
eps, divided by the model's measured attack passes/s. A model without a measured throughput is listed as
such. The escalation's rounds and the checks come on top (at most the grid again per doubling).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from batchout.config import load_params
from batchout.reporting.cost import STANDARD_SCHEDULE

# Measured on an NVIDIA H100 80GB (README, Benchmarks): training images/s (bf16, channels_last, data on the
# GPU) and attack forward+backward passes/s (fp32: PGD-10 at 36,109 images/s on LeNet is 722k passes/s).
TRAIN_IMG_S = {("lenet", "mnist"): 54_512, ("resnet_bottleneck", "cifar"): 3_434}
ATTACK_PASSES_S = {("lenet", "mnist"): 722_000}
SPLITS = {"mnist": (54_000, 10_000), "cifar10": (45_000, 10_000), "cifar3": (13_500, 3_000)}  # (train, test)


def grid_passes(attacks: dict, robust: float) -> float:
    """Forward+backward passes per attacked point per eps of the grid's attacks."""
    every = sum(STANDARD_SCHEDULE["checks"]) + sum(STANDARD_SCHEDULE["apgd_ce"])
    survivors = sum(sum(STANDARD_SCHEDULE[m]) for m in ("apgd_t", "fab_t", "square"))
    per = {"autoattack": every + robust * survivors, "fgsm": 2.0}
    total = 0.0
    for name, cfg in attacks.items():
        if name in per:
            total += per[name]
        else:  # pgd, pgd_dlr, deepfool: a gradient per step and restart
            total += 2.0 * cfg.get("steps", 10) * cfg.get("restarts", 1)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.paper.yaml")
    ap.add_argument("--robust", type=float, default=0.5, help="fraction of points robust at every eps (assumed)")
    args = ap.parse_args()
    params = load_params(Path(args.params))
    per_point = grid_passes(params.attack.attacks, args.robust)
    print(f"PROJECTION for {args.params} on one NVIDIA H100 (throughputs measured there; work from the profile)")
    print("arm | models | train image-epochs | train hours | attack passes per model | attack hours per model")
    for arm, spec in params.train.all_runs().items():
        ds = spec.dataset
        n_train, n_test = SPLITS[ds]
        epochs = spec.epochs or params.train.epochs
        image_epochs = n_train * epochs * len(spec.seeds) * (2 if spec.method == "adversarial" else 1)
        key = (spec.model, "mnist" if ds == "mnist" else "cifar")
        passes = per_point * n_test * len(params.attack.eps[ds])
        train_h = f"{image_epochs / TRAIN_IMG_S[key] / 3600:.2f}" if key in TRAIN_IMG_S else "not measured"
        attack_h = f"{passes / ATTACK_PASSES_S[key] / 3600:.2f}" if key in ATTACK_PASSES_S else "not measured"
        print(f"{arm} | {len(spec.seeds)} | {image_epochs:,} | {train_h} | {passes:,.0f} | {attack_h}")


if __name__ == "__main__":
    main()
