"""Wall time of the whole pipeline: a full quick-profile ``dvc repro`` in a fresh clone, and a no-op
``dvc repro`` (everything up to date: DVC only hashes and compares, target < 3 s).

Usage: ``python -m benchmarks.bench_repro [--full [--lock-out dvc.lock.new]] [--root .]``

``--full`` clones the committed repo into a temporary folder and reproduces it from nothing (about
18 minutes on 2 CPU cores); without it only the no-op time of ``--root`` is measured, and only when
``dvc status`` says that workspace is already up to date (otherwise a "no-op" would train models).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NOOP_REPEATS = 3


def _dvc(root: Path, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    # The venv's bin first, so `python -m pipeline.*` in the stage commands is this interpreter, and
    # the clone's own src/ first on the path (an editable install would import the original's code).
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root}"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, proc


def up_to_date(root: Path) -> bool:
    _, proc = _dvc(root, "status", "--json")
    return proc.returncode == 0 and json.loads(proc.stdout or "{}") == {}


def noop_seconds(root: Path) -> float | None:
    """Best of NOOP_REPEATS no-op ``dvc repro`` runs, or None when the workspace is not up to date."""
    if not up_to_date(root):
        return None
    times = []
    for _ in range(NOOP_REPEATS):
        seconds, proc = _dvc(root, "repro")
        if proc.returncode != 0 or "Running stage" in proc.stdout:
            raise RuntimeError(f"no-op dvc repro ran something:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        times.append(seconds)
    return min(times)


def full_repro(source: Path, lock_out: Path | None = None) -> dict[str, Any]:
    """Clone ``source`` (committed state only), ``dvc repro`` it from nothing, then time a no-op.
    ``lock_out`` receives the clone's resulting dvc.lock (to commit the reproduced state)."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-repro-"))
    try:
        clone = workdir / "repo"
        subprocess.run(["git", "clone", "-q", str(source), str(clone)], check=True)
        seconds, proc = _dvc(clone, "repro")
        if proc.returncode != 0:
            raise RuntimeError(f"dvc repro failed:\n{proc.stderr[-3000:]}")
        stages = proc.stdout.count("Running stage")
        if lock_out is not None:
            shutil.copyfile(clone / "dvc.lock", lock_out)
        return {"full_repro_s": round(seconds, 1), "stages": stages, "noop_repro_s": noop_seconds(clone)}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run(root: Path, full: bool, lock_out: Path | None = None) -> dict[str, Any]:
    if full:
        return full_repro(root, lock_out)
    noop = noop_seconds(root)
    return {"full_repro_s": None, "stages": 0, "noop_repro_s": None if noop is None else round(noop, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("."))
    ap.add_argument("--full", action="store_true", help="also time a from-nothing repro in a fresh clone")
    ap.add_argument("--lock-out", type=Path, help="with --full: where to copy the clone's dvc.lock")
    args = ap.parse_args()
    print(json.dumps(run(args.root.resolve(), args.full, args.lock_out)))


if __name__ == "__main__":
    main()
