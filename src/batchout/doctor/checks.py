"""Health checks of what the pipeline depends on: Python, packages, device, git/DVC, params.yaml,
data, MLflow store, Optuna storage, free disk. Pure: nothing is printed, written or downloaded.

Usage: ``checks = run(Path("."), quick=True); exit_code(checks)`` (``batchout doctor`` prints them)

Every check is ``ok``, ``warn`` (the pipeline runs, maybe not as intended) or ``fail`` (a stage
will stop), with what was found and what to do. Network probes time out after PROBE_TIMEOUT_S.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from batchout.config import DataParams, Params, load_params
from batchout.doctor.result import FAIL, OK, WARN, Check, rel_path
from batchout.doctor.stores import check_disk, check_optuna, check_tracking
from batchout.errors import BatchoutError
from batchout.io import sha256_file
from batchout.paths import MIRROR_ENV

DIST = "batchout-lab"
PACKAGES = ("torch", "torchvision", "mlflow", "dvc", "optuna", "pydantic", "typer")
INSTALL = "pip install -e '.[dev]' (or `make test`, which recreates .venv)"
QUICK_HASH_MAX_BYTES = 16 * 2**20  # --quick hashes only files up to 16 MiB (MNIST's are 5 MiB)


# ---------------------------------------------------------------- interpreter and packages
def requirements(root: Path) -> tuple[str | None, list[str]]:
    """(requires-python, dependency strings) from ``root/pyproject.toml``, else the installed metadata."""
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8")).get("project", {})
        return project.get("requires-python"), list(project.get("dependencies", []))
    except (OSError, tomllib.TOMLDecodeError):
        pass
    try:
        return metadata.metadata(DIST).get("Requires-Python"), list(metadata.requires(DIST) or [])
    except metadata.PackageNotFoundError:
        return None, []


def check_python(requires: str | None) -> Check:
    from packaging.specifiers import SpecifierSet

    found = f"{platform.python_version()} at {sys.executable}"
    if requires and platform.python_version() not in SpecifierSet(requires):
        return Check("python", FAIL, f"{found}; the project requires {requires}",
                     f"create the venv with a Python {requires} interpreter (python3.11 -m venv .venv)")
    return Check("python", OK, found + (f" (requires {requires})" if requires else ""))


def _package(req: Any) -> Check:
    wanted = str(req.specifier) or "any version"
    try:
        version = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        return Check(req.name, FAIL, f"not installed; requires {wanted}", INSTALL)
    if not req.specifier.contains(version, prereleases=True):
        return Check(req.name, FAIL, f"{version} installed; requires {wanted}", INSTALL)
    return Check(req.name, OK, f"{version} ({wanted})")


def check_packages(deps: list[str]) -> list[Check]:
    """One row per package the stages import by name, one row for every other dependency."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    reqs = {}
    for text in deps:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if req.marker is None or req.marker.evaluate({"extra": ""}):  # dev extras are not needed to run
            reqs[canonicalize_name(req.name)] = req
    checks = [_package(reqs.get(name) or Requirement(name)) for name in PACKAGES]
    others = [_package(req) for name, req in reqs.items() if name not in PACKAGES]
    bad = [f"{c.name}: {c.found}" for c in others if c.status != OK]
    if bad:
        checks.append(Check("other packages", FAIL, "; ".join(bad), INSTALL))
    else:
        checks.append(Check("other packages", OK, ", ".join(f"{c.name} {c.found}" for c in others) or "none"))
    return checks


# ---------------------------------------------------------------- device, tools, params
def _cuda_summary(torch: Any) -> Check:
    if not torch.cuda.is_available():
        return Check("cuda", OK, f"no CUDA device (torch {torch.__version__}); runs use the CPU in fp32")
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    found = f"CUDA {torch.version.cuda}: {len(names)} x {', '.join(sorted(set(names)))}"
    if not torch.cuda.is_bf16_supported():
        return Check("cuda", WARN, f"{found}; no native bf16 (training autocasts to bf16)",
                     "use an Ampere or newer GPU for bf16 speed, or expect slow emulated bf16")
    return Check("cuda", OK, f"{found}; bf16 autocast supported")


def check_device(params: Params | None) -> list[Check]:
    """CUDA devices, bf16, and what ``train.device`` / ``attack.device`` resolve to here."""
    try:
        import torch

        from batchout.device import resolve_device
    except ImportError as err:
        return [Check("cuda", FAIL, f"torch is not importable ({err})", INSTALL)]
    checks = [_cuda_summary(torch)]
    for section in ("train", "attack") if params else ():
        name = getattr(params, section).device
        key = f"{section}.device"
        try:
            device = resolve_device(name)
        except BatchoutError as err:
            checks.append(Check(key, FAIL, str(err), f"set {key}: auto (or cpu) in params.yaml"))
            continue
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            checks.append(Check(key, FAIL, f"{name!r}: only {torch.cuda.device_count()} CUDA device(s)",
                                f"set {key}: cuda:0 or auto in params.yaml"))
            continue
        checks.append(Check(key, OK, f"{name} -> {device}"))
    return checks


def _executable(name: str, env: Mapping[str, str]) -> str | None:
    # the venv's own bin folder counts too: `.venv/bin/batchout` runs without an activated venv
    return shutil.which(name, path=env.get("PATH", "")) or shutil.which(name, path=str(Path(sys.executable).parent))


def check_tools(root: Path, env: Mapping[str, str]) -> list[Check]:
    """git and dvc executables, and whether ``root`` is a git and a DVC repository."""
    git, dvc = _executable("git", env), _executable("dvc", env)
    checks = [Check("git executable", OK, git) if git else Check(
        "git executable", WARN, "no git executable: runs are tagged git.commit=unknown", "apt-get install git")]
    checks.append(Check("dvc executable", OK, dvc) if dvc else Check(
        "dvc executable", FAIL, "no dvc executable: `dvc repro` cannot run", f"{INSTALL}; then use .venv/bin/dvc"))
    inside = None
    if git:
        try:
            done = subprocess.run([git, "-C", str(root), "rev-parse", "--show-toplevel"],
                                  capture_output=True, text=True, timeout=10)
            inside = done.stdout.strip() if done.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            inside = None
    checks.append(Check("git repo", OK, inside) if inside else Check(
        "git repo", WARN, f"{root} is not in a git repository (run provenance is unknown)",
        "clone the repository, or `git init` and commit"))
    checks.append(Check("dvc repo", OK, str(root)) if (root / ".dvc").is_dir() else Check(
        "dvc repo", WARN, f"no .dvc folder in {root}: `dvc repro` refuses to run",
        "`dvc init` (add --no-scm outside git), or run from the repository root"))
    return checks


def check_params(path: Path) -> tuple[Check, Params | None]:
    if not path.is_file():
        return Check("params", FAIL, f"{path} not found", "run from the repository root or pass --params FILE"), None
    try:
        params = load_params(path)
    except BatchoutError as err:
        return Check("params", FAIL, str(err), f"fix {path.name} (the message names the key and what is allowed)"), None
    arms, runs = len(params.train.all_runs()), len(params.train.run_names())
    return Check("params", OK, f"{path}: {len(params.data.datasets)} data sets, {arms} arms, {runs} runs"), params


# ---------------------------------------------------------------- data
def check_prepared(root: Path, name: str, data: DataParams, quick: bool) -> Check:
    """``data/prepared/<name>``: present, every file's sha256 as in meta.json, made with these data params."""
    from batchout.data.loader import SPLITS, load_meta
    from batchout.paths import Paths

    folder, label = Paths(root).prepared(name), f"prepared {name}"
    redo = f"run `dvc repro prepare@{name}` (or `batchout prepare {name}`)"
    if not (folder / "meta.json").is_file():
        return Check(label, WARN, f"{rel_path(folder, root)} not prepared yet", redo)
    try:
        meta = load_meta(folder)
    except BatchoutError as err:
        return Check(label, FAIL, str(err), redo)
    sums, missing, bad, skipped = meta["sha256"], [], [], 0
    for fname in [f"{s}_{split}.npy" for split in SPLITS for s in "xy"]:
        path = folder / fname
        if not path.is_file() or fname not in sums:
            missing.append(fname)
        elif quick and path.stat().st_size > QUICK_HASH_MAX_BYTES:
            skipped += 1
        elif sha256_file(path) != sums[fname]:
            bad.append(fname)
    if missing or bad:
        found = "; ".join(filter(None, [
            missing and f"{', '.join(missing)} missing or not in meta.json",
            bad and f"{', '.join(rel_path(folder / f, root) for f in bad)}: sha256 does not match meta.json"]))
        return Check(label, FAIL, found, f"the files were modified or are corrupt; {redo}")
    made_with = {"val_fraction": data.val_fraction, "seed": data.seed, "subset": data.subset.model_dump()}
    counts = "/".join(str(meta["counts"].get(s, "?")) for s in SPLITS)
    found = f"{rel_path(folder, root)}: {counts} train/val/test images, sha256 ok"
    found += f" ({skipped} file(s) over {QUICK_HASH_MAX_BYTES / 2**20:g} MiB not hashed: --quick)" if skipped else ""
    if meta.get("split") != made_with:
        return Check(label, WARN, f"{found}; made with other data params {meta.get('split')}",
                     f"stale: {redo} to match params.yaml")
    return Check(label, OK, found)


def check_raw(root: Path, name: str, data: DataParams, env: Mapping[str, str], prepared_ok: bool) -> Check:
    """The raw source ``prepare`` would use: raw_dir, then the mirror, then torchvision's download."""
    from batchout.data import sources

    label = f"raw {name}"
    try:
        src = sources.resolve(data, name, root)
    except BatchoutError as err:
        return Check(label, FAIL, str(err), "fix data.image_folders in params.yaml")
    raw_dir = sources.raw_dir_of(data, root)
    for layout in src.layouts:
        if layout.complete(raw_dir / layout.folder) or name in data.image_folders:
            return Check(label, OK, f"{rel_path(raw_dir / layout.folder, root)} ({layout.kind})")
    mirror = env.get(MIRROR_ENV, "")
    entry = sources.mirror_entry(src, Path(mirror)) if mirror and Path(mirror).is_dir() else None
    hit = entry[1] if entry else None
    if hit:
        dest = rel_path(raw_dir, root)
        return Check(label, OK, f"{MIRROR_ENV}: {Path(mirror) / hit} (copied into {dest} on prepare)")
    where = f"not in {MIRROR_ENV}={mirror}" if mirror else f"{MIRROR_ENV} not set"
    fallback = "torchvision download will be attempted (fails offline)" if src.download else "no download exists"
    found = f"not in {rel_path(raw_dir, root)}; {where}; {fallback}" + ("; only to re-prepare" if prepared_ok else "")
    wanted = " or ".join(layout.looks_for for layout in src.layouts)
    advice = f"set {MIRROR_ENV} to a folder with SHA256SUMS or place {wanted} under {rel_path(raw_dir, root)}"
    return Check(label, WARN if src.download or prepared_ok else FAIL, found, advice)


def check_mirror(env: Mapping[str, str]) -> Check:
    from batchout.data.formats import SUMS_FILE, read_sums

    mirror = env.get(MIRROR_ENV, "")
    if not mirror:
        return Check("data mirror", OK, f"{MIRROR_ENV} not set (raw data from data/raw, else torchvision download)")
    if not Path(mirror).is_dir():
        return Check("data mirror", FAIL, f"{MIRROR_ENV}={mirror} is not a folder",
                     f"point {MIRROR_ENV} at the mirror folder, or unset it")
    sums = read_sums(Path(mirror))
    if not sums:
        return Check("data mirror", WARN, f"{mirror} has no {SUMS_FILE}: copies from it are not verified",
                     f"add {SUMS_FILE} (`sha256sum` output, paths relative to the mirror)")
    return Check("data mirror", OK, f"{mirror} ({len(sums)} files listed in {SUMS_FILE})")


def check_data(root: Path, params: Params, env: Mapping[str, str], quick: bool) -> list[Check]:
    checks = []
    for name in params.data.datasets:
        prepared = check_prepared(root, name, params.data, quick)
        checks += [prepared, check_raw(root, name, params.data, env, prepared.status == OK)]
    return checks


# ---------------------------------------------------------------- all of it
def run(root: Path, env: Mapping[str, str] = os.environ, *, params_path: Path | None = None,
        quick: bool = False) -> list[Check]:
    """Every check, in the order a run meets them. ``quick`` skips hashing prepared files over 16 MiB."""
    root = Path(root).resolve()
    requires, deps = requirements(root)
    params_check, params = check_params(params_path or root / "params.yaml")
    checks = [check_python(requires), *check_packages(deps), *check_device(params), *check_tools(root, env),
              params_check]
    checks.append(check_mirror(env))
    if params is not None:
        checks += check_data(root, params, env, quick)
    checks.append(check_tracking(root, env))
    if params is not None:
        checks.append(check_optuna(root, params.tune.storage))
    checks.append(check_disk(root))
    return checks
