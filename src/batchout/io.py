"""File formats on disk, all written atomically (temp name + rename), so a killed stage leaves
either the old file or the new one, never a truncated one.

Usage: ``write_json(path, {"acc": 0.9})``; ``sha256_file(path)``; ``with atomic_dir(out) as tmp: ...``;
``eps_key(8 / 255)`` -> ``"eps_0.0314"``, the budget's name in metrics files, MLflow and reports

A SIGKILL between creating a temp file and renaming it leaves the temp behind (no ``finally`` runs).
Temp names carry their writer (``.<name>.<host>~<pid>.<random>.tmp``), and every atomic write first
removes temps in its folder whose writer on this host is dead, so output folders (DVC outs) never
keep debris from a killed attempt. Temps of live writers, or of other hosts, are never touched.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from batchout.errors import BatchoutError


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems refuse directory fsync; rename is still atomic
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ---------------------------------------------------------------- writers' liveness
_TEMP = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_-]+)~(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of ``pid`` from /proc (Linux), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the command name (field 2) may contain spaces
    return fields[0], int(fields[19])


def process_token() -> str:
    """This process, as ``host~pid~start``: recorded by writers so a later process can tell it died."""
    info = _proc_stat(os.getpid())
    return f"{_host()}~{os.getpid()}~{info[1] if info else 0}"


def process_dead(token: str) -> bool:
    """True only when ``token``'s process ran on this host and is gone; unknown or remote: False."""
    host, _, rest = str(token).partition("~")
    pid_s, _, start_s = rest.partition("~")
    if host != _host() or not pid_s.isdigit() or int(pid_s) == os.getpid():
        return False
    try:
        os.kill(int(pid_s), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        pass
    info = _proc_stat(int(pid_s))
    if info is None:  # no /proc (not Linux): os.kill said it exists
        return False
    state, start = info
    # A zombie has exited; a different start time means the pid now belongs to a newer process.
    return state == "Z" or (start_s.isdigit() and int(start_s) != 0 and int(start_s) != start)


def sweep_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove temps (files or folders) in ``folder`` left by dead writers of this host; return them."""
    folder = Path(folder)
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in folder.iterdir():
            m = _TEMP.match(entry.name)
            if m is None or not process_dead(f"{m['host']}~{m['pid']}"):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{_host()}~{os.getpid()}."


# ---------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


def eps_key(eps: float) -> str:
    """The name of an L-infinity budget in every metrics file, metric key and report: 4 decimals, so
    0.1 and 0.10000001 (8/255 parsed twice) are one key and 1/255 steps stay distinct."""
    return f"eps_{float(eps):.4f}"


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_metrics(path: str | os.PathLike, stage: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A stage's metrics file (``results/<train|attack>/<arm>/<run>.json``, written with ``write_json``),
    refused in one line naming the file and the ``dvc repro`` target that remakes it."""
    path = Path(path)
    if not path.is_file():
        raise BatchoutError(f"metrics file {path} is missing; run `dvc repro {stage}` first")
    try:
        doc = read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BatchoutError(f"metrics file {path} is not valid JSON; rerun `dvc repro {stage}`") from None
    if not isinstance(doc, dict):
        raise BatchoutError(f"metrics file {path} holds a {type(doc).__name__}, expected a JSON object")
    lacking = [key for key in required if key not in doc]
    if lacking:
        raise BatchoutError(f"metrics file {path} has no {lacking[0]!r}; rerun `dvc repro {stage}`")
    return doc


def write_yaml(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, yaml.safe_dump(obj, sort_keys=False))


def write_csv(path: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """Rows of equal keys to CSV (the format ``dvc plots`` reads)."""
    if not rows:
        write_text(path, "")
        return
    keys = list(rows[0])
    lines = [",".join(keys)] + [",".join(str(r[k]) for k in keys) for r in rows]
    write_text(path, "\n".join(lines) + "\n")


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a ``write_csv`` file as dicts of strings (an empty file: no rows)."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_npz(path: str | os.PathLike, arrays: dict[str, Any]) -> None:
    """Named numpy arrays, zip-compressed (``np.load(path)`` reads them back without pickle)."""
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: savez would append ".npz" to a name
        np.savez_compressed(f, **arrays)


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a whole directory under a temporary name, then swap it in for ``path``.

    The old directory (if any) is replaced only once the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(path.parent)
    old = path.parent / f".{path.name}.old"
    if old.exists() and not path.exists():  # killed between the two renames: the old copy is the last whole one
        os.replace(old, path)
    shutil.rmtree(old, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
