"""Run metadata that needs no MLflow: where the store lives, param flattening, metric names,
provenance tags, and the HTTP health probe (also used by ``batchout doctor``).

Usage: ``tracking_uri(repo_root())``; ``metric_key("robust_acc", "pgd", eps=0.0196)``
"""

from __future__ import annotations

import numbers
import os
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batchout.errors import BatchoutError
from batchout.io import eps_key
from batchout.paths import Paths

_TMP_EXPS = "/.dvc/tmp/"  # `dvc exp run --temp/--queue` execute in <repo>/.dvc/tmp/exps/<id>/

def repo_root(start: Path | None = None) -> Path:
    """The repository root; inside a DVC experiment's temporary copy, the ORIGINAL repository."""
    here = Path(start or Path.cwd()).resolve()
    text = here.as_posix() + "/"
    if _TMP_EXPS in text:
        return Path(text[: text.index(_TMP_EXPS)] or "/")
    for cand in (here, *here.parents):
        if (cand / ".dvc").exists() or (cand / ".git").exists():
            return cand
    return Path.cwd().resolve()


def tracking_uri(root: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the SQLite database under ``<root>/mlruns``."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return env
    return "sqlite:///" + Paths(Path(root or repo_root()).resolve()).mlflow_db.as_posix()


# ---------------------------------------------------------------- pure helpers
def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping -> ``{"a.b.c": "value"}`` with string values (MLflow params are strings)."""
    out: dict[str, str] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)
    return out


def _named_part(key: str, value: Any) -> str:
    # eps as in the metrics files (eps=0 and eps=0.0 must give one key); other ints stay ints (steps_40)
    if key == "eps":
        return eps_key(float(value))
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return f"{key}_{float(value):.4f}"
    return f"{key}_{value}"


def metric_key(*parts: str | float, **named: float | str) -> str:
    """``metric_key("robust_acc", "pgd", eps=0.0196)`` -> ``"robust_acc.pgd.eps_0.0196"``."""
    pieces = [str(p) for p in parts] + [_named_part(k, v) for k, v in named.items()]
    for piece in pieces:
        if not piece or any(not (c.isalnum() or c in "_-./ ") for c in piece):
            raise BatchoutError(
                f"metric key part {piece!r}: must be non-empty letters, digits, '_', '-', '.', '/' or space"
            )
    return ".".join(pieces)


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def run_tags(root: Path | None = None, extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Provenance tags: git commit and dirty flag of ``root`` (default: cwd, i.e. the code that runs,
    which inside a DVC temp copy is that copy), DVC experiment name, host, user, plus ``extra``."""
    where = Path(root or Path.cwd())
    commit = _git(where, "rev-parse", "HEAD")
    status = _git(where, "status", "--porcelain", "--untracked-files=no")
    tags = {
        "git.commit": commit or "unknown",
        "mlflow.source.git.commit": commit or "unknown",
        "git.dirty": "unknown" if status is None else str(bool(status)).lower(),
        "host": socket.gethostname(),
        "mlflow.user": os.environ.get("USER") or os.environ.get("USERNAME") or "unknown",
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    tags.update({k: str(v) for k, v in (extra or {}).items()})
    return tags


def probe_http(url: str, timeout_s: float) -> str | None:
    """None when ``url`` answers 200 within ``timeout_s`` seconds, else why not (one line)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            resp.read(64)
    except urllib.error.HTTPError as err:
        return f"answered HTTP {err.code} (is it an MLflow server?)"
    except (urllib.error.URLError, OSError, ValueError) as err:
        return str(getattr(err, "reason", None) or err)
    return None
