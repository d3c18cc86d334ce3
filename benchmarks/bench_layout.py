"""Why the train stage uses channels_last and not ``torch.compile`` on the CPU: one training step's
throughput in NCHW, in channels_last, and compiled (channels_last), on the same model and batch.

Usage: ``python -m benchmarks.bench_layout [--seconds 3] [--compile]``

Each setup trains a fresh model (SGD with momentum, batch 128, random images of the shape) for a few
warm-up steps, then as many steps as fit in ``--seconds``; reported: images/s and the ratio to NCHW.
With ``--compile`` the compiled variant is added, with its first step's seconds (the compilation).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from torch import nn

from batchout.device import channels_last
from batchout.models import create_model

SETUPS = {  # name -> (model, kwargs, shape C x H x W)
    "lenet/mnist-shape": ("lenet", {}, (1, 28, 28)),
    "lenet/cifar-shape": ("lenet", {}, (3, 32, 32)),
    "resnet_bottleneck(1,1,1)/cifar-shape": ("resnet_bottleneck", {"blocks": [1, 1, 1]}, (3, 32, 32)),
}
BATCH = 128


def images_per_s(name: str, layout: str, seconds: float) -> tuple[float, float]:
    """(images/s, first step's seconds) of one setup in ``layout``: nchw, channels_last or compiled."""
    model_name, kwargs, shape = SETUPS[name]
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=10, in_channels=shape[0], image_size=shape[1],
                         mean=[0.5] * shape[0], std=[0.25] * shape[0], **kwargs)
    if layout != "nchw":
        model = channels_last(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    net = torch.compile(model) if layout == "compiled" else model
    x, y = torch.rand(BATCH, *shape), torch.randint(0, 10, (BATCH,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    for _ in range(3):
        step()
    start, seen = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        step()
        seen += BATCH
    return seen / (time.perf_counter() - start), first


def run(seconds: float = 3.0, compile_too: bool = False) -> list[dict[str, Any]]:
    layouts = ["nchw", "channels_last"] + (["compiled"] if compile_too else [])
    rows = []
    for name in SETUPS:
        found = {layout: images_per_s(name, layout, seconds) for layout in layouts}
        base = found["nchw"][0]
        rows.append({"setup": name, **{f"{k}_img_s": round(v[0]) for k, v in found.items()},
                     **{f"{k}_x": round(v[0] / base, 2) for k, v in found.items()},
                     **({"compile_first_step_s": round(found["compiled"][1], 1)} if compile_too else {})})
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'training step, layout':<40} {'NCHW img/s':>10} {'NHWC img/s':>10} {'NHWC x':>7} "
          f"{'compiled img/s':>14} {'compile s':>9}")
    for r in rows:
        compiled = f"{r['compiled_img_s']:>14} {r['compile_first_step_s']:>9}" if "compiled_img_s" in r else ""
        print(f"{r['setup']:<40} {r['nchw_img_s']:>10} {r['channels_last_img_s']:>10} "
              f"{r['channels_last_x']:>7.2f} {compiled}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="timed seconds per setup and layout")
    ap.add_argument("--compile", action="store_true", help="add torch.compile (tens of seconds to compile)")
    a = ap.parse_args()
    print_table(run(a.seconds, a.compile))


if __name__ == "__main__":
    main()
