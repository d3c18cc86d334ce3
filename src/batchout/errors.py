"""User-facing errors: one line, exit code 2, nothing written.

Usage: ``raise BatchoutError("data.subset.train: must be >= 1, got 0")``
"""

from __future__ import annotations

from typing import Any


class BatchoutError(Exception):
    """Bad input (params, data, checkpoints). The CLI prints ``str(err)`` on one line and exits 2."""

    exit_code = 2

    def __str__(self) -> str:  # always one line, whatever the caller passed
        return " ".join(super().__str__().split())


def choice_msg(key: str, value: Any, allowed: tuple[str, ...] | list[str]) -> str:
    """The one-line refusal of a name that is not among ``allowed``."""
    return f"{key}: unknown value {value!r}; allowed: {', '.join(allowed)}"
