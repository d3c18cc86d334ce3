"""User-facing errors: one line, exit code 2, nothing written.

Usage: ``raise BatchoutError("data.subset.train: must be >= 1, got 0")``
"""

from __future__ import annotations


class BatchoutError(Exception):
    """Bad input (params, data, checkpoints). The CLI prints ``str(err)`` on one line and exits 2."""

    exit_code = 2

    def __str__(self) -> str:  # always one line, whatever the caller passed
        return " ".join(super().__str__().split())
