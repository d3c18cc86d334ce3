"""The result of one health check (``batchout doctor``) and the small helpers every check uses.

Usage: ``Check("git", OK, "git 2.39"); exit_code(checks)``
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK | WARN | FAIL
    found: str
    advice: str = ""  # what to do; empty when there is nothing to do

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def exit_code(checks: list[Check]) -> int:
    """0 when nothing failed (warnings allowed), 1 when a check failed."""
    return 1 if any(c.status == FAIL for c in checks) else 0


def rel_path(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def writable(path: Path) -> bool:
    """Whether ``path`` exists writable, or could be created (its nearest existing parent is writable)."""
    for cand in (path, *path.parents):
        if cand.exists():
            return os.access(cand, os.W_OK)
    return False
