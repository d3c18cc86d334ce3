"""Training throughput: the project's loop vs a plain PyTorch loop, and the cost of BatchOut.

Usage: ``python -m benchmarks.bench_train [--images 4096] [--repeats 3]``

Both loops train the same model on the same images in one process. The plain loop is the usual
recipe: a torchvision-style ``Dataset`` of PIL images, ``transforms.ToTensor`` (+ crop/flip for
CIFAR-shaped data), a ``DataLoader`` (num_workers=0: on 2 cores, workers compete with the model
for the same cores), fp32. Reported: images/s and the ratio project / plain, and each BatchOut
layer's step time as a ratio to the same step without it.
"""

from __future__ import annotations

import argparse
import io
import time
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from batchout import progress
from batchout.config import TrainParams
from batchout.config.run import RunConfig, resolve_run
from batchout.device import channels_last
from batchout.models.build import build_model
from batchout.training.loop import Split, make_optimizer, train_epoch
from batchout.training.schedule import make_scheduler

SETUPS = {  # name -> (model, model_kwargs, shape C x H x W, crop padding, flip)
    "lenet/mnist-shape": ("lenet", {}, (1, 28, 28), 0, False),
    "lenet/cifar-shape (quick profile)": ("lenet", {}, (3, 32, 32), 4, True),
    "resnet_bottleneck(1,1,1)/cifar-shape": ("resnet_bottleneck", {"blocks": [1, 1, 1]}, (3, 32, 32), 4, True),
}


class PilDataset(Dataset):
    """What a plain torchvision pipeline does: one PIL image per item, transformed per sample."""

    def __init__(self, x: np.ndarray, y: np.ndarray, tf: transforms.Compose) -> None:
        mode = "L" if x.shape[1] == 1 else "RGB"
        self.images = [Image.fromarray(img.squeeze(0) if mode == "L" else img.transpose(1, 2, 0), mode) for img in x]
        self.y, self.tf = y, tf

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.tf(self.images[i]), int(self.y[i])


def _config(model: str, kwargs: dict[str, Any], pad: int, flip: bool, method: str = "standard") -> RunConfig:
    spec = {"dataset": "mnist", "model": model, "method": method, "model_kwargs": kwargs,
            "augment": {"crop_padding": pad, "flip": flip}}
    train = TrainParams.model_validate({"batch_size": 128, "epochs": 1, "runs": {"bench": spec}})  # one arm, seed 0
    return resolve_run(train, "bench-s0")


def _meta(shape: tuple[int, int, int]) -> dict[str, Any]:
    c = shape[0]
    return {"shape": list(shape), "num_classes": 10, "mean": [0.5] * c, "std": [0.25] * c}


def project_images_per_s(cfg: RunConfig, x: torch.Tensor, y: torch.Tensor, repeats: int,
                         device: torch.device) -> float:
    torch.manual_seed(0)
    model = channels_last(build_model(cfg, _meta(tuple(x.shape[1:]))).to(device))  # as the train stage does
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg.schedule, len(y) // cfg.batch_size, 1 + repeats)
    split = Split(x.to(device), y.to(device))
    train_epoch(model, split, cfg, opt, sched, device)  # warm-up epoch
    best = 0.0
    # with the train stage's progress, as in a `dvc repro` log: plain lines (to nowhere) every 5 s
    with progress.use(progress.PlainRenderer(io.StringIO())), \
            progress.track("bench", repeats * (len(y) // cfg.batch_size), "batch") as task:
        for _ in range(repeats):
            best = max(best, train_epoch(model, split, cfg, opt, sched, device, task=task)["images_per_s"])
    return best


def plain_images_per_s(cfg: RunConfig, x: np.ndarray, y: np.ndarray, repeats: int, device: torch.device) -> float:
    torch.manual_seed(0)
    c, h, _ = x.shape[1:]
    steps: list[Any] = []
    if cfg.augment.crop_padding:
        steps.append(transforms.RandomCrop(h, padding=cfg.augment.crop_padding))
    if cfg.augment.flip:
        steps.append(transforms.RandomHorizontalFlip())
    tf = transforms.Compose(steps + [transforms.ToTensor()])
    loader = DataLoader(PilDataset(x, y, tf), batch_size=cfg.batch_size, shuffle=True, drop_last=True)
    model = build_model(cfg, _meta((c, h, h))).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
    best = 0.0
    for rep in range(repeats + 1):
        start, seen = time.perf_counter(), 0
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(yb)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if rep:  # the first pass is a warm-up
            best = max(best, seen / (time.perf_counter() - start))
    return best


def run(images: int = 4096, repeats: int = 3, device: str = "cpu") -> list[dict[str, Any]]:
    dev = torch.device(device)
    rng = np.random.default_rng(0)
    rows = []
    setups = dict(SETUPS)
    if dev.type == "cuda":  # the seed's full-size network: only worth timing on a GPU
        setups["resnet_bottleneck(9,9,9)/cifar-shape"] = ("resnet_bottleneck", {}, (3, 32, 32), 4, True)
    for name, (model, kwargs, shape, pad, flip) in setups.items():
        x_np = rng.integers(0, 256, size=(images, *shape), dtype=np.uint8)
        y_np = rng.integers(0, 10, size=images, dtype=np.int64)
        x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
        base = _config(model, kwargs, pad, flip)
        ours = project_images_per_s(base, x, y, repeats, dev)
        plain = plain_images_per_s(base, x_np, y_np, repeats, dev)
        row = {"setup": name, "project_img_s": round(ours), "plain_img_s": round(plain),
               "speedup": round(ours / plain, 2)}
        for method in ("batchout", "batchout_final"):
            with_layer = project_images_per_s(_config(model, kwargs, pad, flip, method), x, y, repeats, dev)
            row[f"{method}_overhead"] = round(ours / with_layer - 1.0, 3)  # extra step time, fraction
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    rows = run(args.images, args.repeats, args.device)
    print(f"torch threads: {torch.get_num_threads()}")
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()
