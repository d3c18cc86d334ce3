"""All benchmarks in one table: training and PGD throughput against plain-PyTorch baselines
measured in the same process, BatchOut's cost per training step, attack time against the AutoAttack
authors' code (pyautoattack), per-stage start-up seconds, and pipeline wall times.

Usage: ``python -m benchmarks.run [--device cuda] [--full-repro]`` (``make bench``)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from benchmarks import bench_attack, bench_layout, bench_pgd, bench_repro, bench_startup, bench_train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--images", type=int, default=4096, help="training images per epoch")
    ap.add_argument("--full-repro", action="store_true", help="time a from-nothing dvc repro (~18 min on 2 cores)")
    args = ap.parse_args()
    cpu = f"CPU, {torch.get_num_threads()} threads"
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else cpu
    print(f"device: {where}")
    print(f"{'training setup':<40} {'ours img/s':>10} {'plain img/s':>11} {'x plain':>8} "
          f"{'BatchOut +':>10} {'BO-final +':>10}")
    for r in bench_train.run(args.images, repeats=3, device=args.device):
        print(f"{r['setup']:<40} {r['project_img_s']:>10} {r['plain_img_s']:>11} {r['speedup']:>8.2f} "
              f"{r['batchout_overhead']:>10.1%} {r['batchout_final_overhead']:>10.1%}")
    if args.device == "cpu":  # the layout and compile choice for CPU training (gpu_check.sh covers CUDA)
        print()
        bench_layout.print_table(bench_layout.run(compile_too=True))
    p = bench_pgd.run(images=1000, batch_size=250 if args.device == "cpu" else 1000, device=args.device)
    print(f"\nPGD-{p['steps']} eps {p['eps']} (lenet, batch {p['batch_size']})")
    for name, v in p["images_per_s"].items():
        print(f"{name:<40} {v:>10.1f} img/s {p['ratio_to_plain'][name]:>6.2f}x plain")
    print()
    # Two budgets: at the first most points stay robust (Square's queries on them dominate both
    # sides), at the second most break within a few steps (where early exit pays).
    for eps in bench_attack.EPS_PAIR:
        bench_attack.print_table(bench_attack.run(examples=200, eps=eps, repeats=2, device=args.device))
    print()
    bench_startup.print_table(bench_startup.run(repeats=3))
    _print_repro(bench_repro.run(Path("."), args.full_repro))


def _print_repro(r: dict) -> None:
    full = "not measured (--full-repro)" if r["full_repro_s"] is None else f"{r['full_repro_s']:.0f} s"
    noop = "not measured (workspace not up to date)" if r["noop_repro_s"] is None else f"{r['noop_repro_s']:.2f} s"
    print(f"\n{'quick-profile dvc repro, fresh clone':<40} {full}")
    print(f"{'no-op dvc repro':<40} {noop}  (target < 3 s)")


if __name__ == "__main__":
    main()
