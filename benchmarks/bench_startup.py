"""Start-up cost per pipeline stage: a fresh interpreter importing its command and code, vs ``import torch``.

Usage: ``python -m benchmarks.bench_startup [--repeats 3]``

Each row is the wall time of a fresh ``python -c`` subprocess (this interpreter, cwd = repo root),
best of ``--repeats``: ``import pipeline.<stage>; import batchout.stages.<stage>`` (what a stage
pays before doing any work), the baseline ``import torch`` measured in the same run (every stage
row is also given as a multiple of it), ``import mlflow`` alone, and ``batchout.tracking``'s
``configure()`` creating a fresh SQLite store in a temporary folder (the call alone, timed inside the
subprocess after MLflow is imported: the ~100 schema migrations a first run pays).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("prepare", "train", "attack", "tune", "report")
CONFIGURE = ("import time; from batchout.tracking import store; t = time.perf_counter(); store.configure(); "
             "print(time.perf_counter() - t)")  # prints the call's seconds; importing store imports mlflow


def _python(code: str, env: dict[str, str] | None = None) -> tuple[float, str]:
    """(wall seconds, stdout) of ``python -c code`` in a fresh process at the repo root."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"python -c {code!r} failed:\n{proc.stderr[-2000:]}")
    return seconds, proc.stdout


def best_wall(code: str, repeats: int) -> float:
    return min(_python(code)[0] for _ in range(repeats))


def best_configure(repeats: int) -> float:
    """Best in-process seconds of ``configure()``, each time on a new, empty store."""
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
            env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}
            times.append(float(_python(CONFIGURE, env)[1].strip().splitlines()[-1]))
    return min(times)


def run(repeats: int = 3) -> dict[str, Any]:
    """Seconds per row (rows in print order) and each stage's multiple of ``import torch``."""
    seconds = {"python (empty)": best_wall("pass", repeats), "import torch": best_wall("import torch", repeats)}
    for stage in STAGES:
        seconds[f"stage {stage}"] = best_wall(f"import pipeline.{stage}; import batchout.stages.{stage}", repeats)
    seconds["import mlflow"] = best_wall("import mlflow", repeats)
    seconds["tracking.configure, fresh SQLite store"] = best_configure(repeats)
    torch_s = seconds["import torch"]
    return {"repeats": repeats, "seconds": seconds,
            "x_torch": {name: s / torch_s for name, s in seconds.items() if name.startswith("stage ")}}


def print_table(r: dict[str, Any]) -> None:
    print(f"start-up, fresh interpreter, best of {r['repeats']}")
    print(f"{'what':<40} {'seconds':>8} {'x torch':>8}")
    for name, s in r["seconds"].items():
        ratio = f"{r['x_torch'][name]:>8.2f}" if name in r["x_torch"] else ""
        print(f"{name:<40} {s:>8.2f} {ratio}".rstrip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    print_table(run(ap.parse_args().repeats))


if __name__ == "__main__":
    main()
