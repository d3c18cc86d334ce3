"""All benchmarks in one table: training and PGD throughput against plain-PyTorch baselines
measured in the same process, and BatchOut's cost per training step.

Usage: ``python -m benchmarks.run [--device cuda]`` (``make bench``)
"""

from __future__ import annotations

import argparse

import torch

from benchmarks import bench_pgd, bench_train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--images", type=int, default=4096, help="training images per epoch")
    args = ap.parse_args()
    cpu = f"CPU, {torch.get_num_threads()} threads"
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else cpu
    print(f"device: {where}")
    print(f"{'training setup':<40} {'ours img/s':>10} {'plain img/s':>11} {'x plain':>8} "
          f"{'BatchOut +':>10} {'BO-final +':>10}")
    for r in bench_train.run(args.images, repeats=3, device=args.device):
        print(f"{r['setup']:<40} {r['project_img_s']:>10} {r['plain_img_s']:>11} {r['speedup']:>8.2f} "
              f"{r['batchout_overhead']:>10.1%} {r['batchout_final_overhead']:>10.1%}")
    p = bench_pgd.run(images=1000, batch_size=250 if args.device == "cpu" else 1000, device=args.device)
    print(f"\nPGD-{p['steps']} eps {p['eps']} (lenet, batch {p['batch_size']})")
    for name, v in p["images_per_s"].items():
        print(f"{name:<40} {v:>10.1f} img/s {p['ratio_to_plain'][name]:>6.2f}x plain")


if __name__ == "__main__":
    main()
